"""Health checks: GET <target><path> with `User-Agent: kamal-proxy`; any 2xx is healthy.

One checker task per target. The first check runs at once (or, for targets restored from the state
file, at a random point of the first interval, so a restart with many services does not check them
all in the same instant), then one per interval, each with its own timeout. At most
``slots`` checks run at the same moment across the daemon. Redirects are followed (up to 10), as
Go's default client does; the body is read and discarded. Each check uses a fresh connection.
The checker only reports results; the target's transition table decides what they mean.
"""

from __future__ import annotations

import asyncio
import random
from collections.abc import Awaitable, Callable
from typing import TypeVar
from urllib.parse import urljoin, urlsplit

import h11

from proxy import defaults
from proxy.clock import LOOP_CLOCK, Clock
from proxy.log import JsonLog
from proxy.options import HealthCheckConfig

CheckResult = Callable[[bool], None]
# GET url with this Host header → the final status (after redirects); raises on failure.
Probe = Callable[[str, str], Awaitable[int]]

MIN_INTERVAL = 0.01  # seconds; a zero interval must not spin
MAX_REDIRECTS = 10
MAX_BODY = 1 << 20  # bytes of a health-check response body read before giving up on it
REDIRECTS = frozenset({301, 302, 303, 307, 308})


class CheckFailed(Exception):
    pass


def health_check_url(*, host: str, port: int, config: HealthCheckConfig) -> str:
    path = config.path if config.path.startswith("/") else "/" + config.path
    return f"http://{host}:{config.port or port}{path}"


async def probe(url: str, host_header: str) -> int:
    """The final status of GET ``url`` after following redirects."""
    for _ in range(MAX_REDIRECTS + 1):
        status, location = await _get(url, host_header)
        if status in REDIRECTS and location:
            url = urljoin(url, location)
            if urlsplit(location).netloc:  # another site; a relative redirect keeps the Host
                host_header = urlsplit(url).netloc
            continue
        return status
    raise CheckFailed(f"stopped after {MAX_REDIRECTS} redirects")


async def _get(url: str, host_header: str) -> tuple[int, str]:
    parts = urlsplit(url)
    if parts.scheme != "http" or not parts.hostname:
        raise CheckFailed(f"unsupported URL {url}")
    target = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
    reader, writer = await asyncio.open_connection(parts.hostname, parts.port or 80)
    try:
        conn = h11.Connection(h11.CLIENT)
        writer.write(
            conn.send(
                h11.Request(
                    method="GET",
                    target=target,
                    headers=[
                        ("Host", host_header),
                        ("User-Agent", defaults.HEALTH_CHECK_USER_AGENT),
                        ("Connection", "close"),
                    ],
                )
            )
            + conn.send(h11.EndOfMessage())
        )
        status, location, read = 0, "", 0
        while True:
            event = conn.next_event()
            if event is h11.NEED_DATA:
                data = await reader.read(65536)
                conn.receive_data(data)
                continue
            if isinstance(event, h11.Response):
                status = event.status_code
                location = next((v.decode("latin-1") for n, v in event.headers if n == b"location"), "")
            elif isinstance(event, h11.Data):
                read += len(event.data)
                if read > MAX_BODY:
                    return status, location
            elif isinstance(event, h11.EndOfMessage | h11.ConnectionClosed):
                return status, location
    except h11.RemoteProtocolError as exc:
        raise CheckFailed(f"malformed response: {exc}") from None
    finally:
        writer.close()


class HealthChecker:
    """Checks one target until stopped (or, with ``stop_when_healthy``, until it first passes)."""

    def __init__(
        self,
        *,
        log: JsonLog,
        url: str,
        host_header: str,
        config: HealthCheckConfig,
        report: CheckResult,
        stop_when_healthy: bool,
        slots: asyncio.Semaphore,
        stagger: bool = False,
        clock: Clock = LOOP_CLOCK,
        probe: Probe = probe,
        rng: random.Random | None = None,
    ) -> None:
        self._log = log
        self._url = url
        self._host_header = host_header
        self._config = config
        self._report = report
        self._stop_when_healthy = stop_when_healthy
        self._slots = slots
        self._stagger = stagger
        self._clock = clock
        self._probe = probe
        self._rng = rng or random.Random()
        self._task: asyncio.Task[None] | None = None

    def start(self) -> None:
        self._task = asyncio.get_running_loop().create_task(self._run())

    def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            self._task = None

    async def check_once(self) -> bool:
        try:
            async with self._slots:
                status = await within(
                    self._clock, self._config.timeout, self._probe(self._url, self._host_header)
                )
        except TimeoutError:
            self._log.info("Healthcheck failed", url=self._url, error="request timed out")
            return False
        except (CheckFailed, OSError, ValueError, h11.LocalProtocolError) as exc:
            self._log.info("Healthcheck failed", url=self._url, error=str(exc) or type(exc).__name__)
            return False
        if 200 <= status < 300:
            return True
        self._log.info("Healthcheck failed", url=self._url, error=f"unexpected status ({status})")
        return False

    async def _run(self) -> None:
        clock = self._clock
        interval = max(self._config.interval, MIN_INTERVAL)
        if self._stagger:
            await clock.sleep(self._rng.uniform(0, interval))
        next_at = clock.time()
        while True:
            healthy = await self.check_once()
            self._report(healthy)
            if healthy and self._stop_when_healthy:
                self._task = None
                return
            next_at += interval
            delay = next_at - clock.time()
            if delay < 0:  # a slow check: skip the missed ticks, as a ticker does
                next_at = clock.time() + interval
                delay = interval
            await clock.sleep(delay)


T = TypeVar("T")


async def within(clock: Clock, timeout: float, work: Awaitable[T]) -> T:
    """``work``'s result, or TimeoutError once ``timeout`` of ``clock``'s time passed (work cancelled)."""
    task = asyncio.ensure_future(work)
    timer = asyncio.ensure_future(clock.sleep(timeout))
    try:
        await asyncio.wait((task, timer), return_when=asyncio.FIRST_COMPLETED)
    finally:
        timer.cancel()
        if not task.done():
            task.cancel()
    if task.cancelled() or not task.done():
        raise TimeoutError
    return task.result()
