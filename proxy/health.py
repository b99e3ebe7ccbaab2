"""Health checks: GET <target><path> with `User-Agent: kamal-proxy`; any 2xx is healthy.

One checker task per target. The first check runs at once, then one per interval, each with its
own timeout. The checker only reports results; the target's transition table decides what they mean.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable

import httpx

from proxy import defaults
from proxy.log import JsonLog
from proxy.options import HealthCheckConfig

CheckResult = Callable[[bool], None]


def health_check_url(*, host: str, port: int, config: HealthCheckConfig) -> str:
    path = config.path if config.path.startswith("/") else "/" + config.path
    return f"http://{host}:{config.port or port}{path}"


class HealthChecker:
    """Checks one target until stopped (or, with ``stop_when_healthy``, until it first passes)."""

    def __init__(
        self,
        *,
        client: httpx.AsyncClient,
        log: JsonLog,
        url: str,
        host_header: str,
        config: HealthCheckConfig,
        report: CheckResult,
        stop_when_healthy: bool,
    ) -> None:
        self._client = client
        self._log = log
        self._url = url
        self._headers = {"User-Agent": defaults.HEALTH_CHECK_USER_AGENT, "Host": host_header}
        self._config = config
        self._report = report
        self._stop_when_healthy = stop_when_healthy
        self._task: asyncio.Task[None] | None = None

    def start(self) -> None:
        self._task = asyncio.get_running_loop().create_task(self._run())

    def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            self._task = None

    async def check_once(self) -> bool:
        try:
            response = await self._client.get(
                self._url, headers=self._headers, timeout=self._config.timeout, follow_redirects=True
            )
        except httpx.TimeoutException:
            self._log.info("Healthcheck failed", url=self._url, error="request timed out")
            return False
        except (httpx.HTTPError, OSError, ValueError) as exc:
            self._log.info("Healthcheck failed", url=self._url, error=str(exc) or type(exc).__name__)
            return False
        if 200 <= response.status_code < 300:
            return True
        self._log.info(
            "Healthcheck failed", url=self._url, error=f"unexpected status ({response.status_code})"
        )
        return False

    async def _run(self) -> None:
        loop = asyncio.get_running_loop()
        interval = max(self._config.interval, 0.01)
        next_at = loop.time()
        while True:
            healthy = await self.check_once()
            self._report(healthy)
            if healthy and self._stop_when_healthy:
                self._task = None
                return
            next_at += interval
            delay = next_at - loop.time()
            if delay < 0:  # a slow check: skip the missed ticks, as a ticker does
                next_at = loop.time() + interval
                delay = interval
            await asyncio.sleep(delay)
