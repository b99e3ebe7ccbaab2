"""On-demand TLS (``--tls-on-demand-url``, spec §3.10): may this host get a certificate?

Before ordering for a host not yet in the cache, the issuer asks ``URL?host=H`` (the URL's other
query parameters kept, ``host`` set). Only a 200 approves; a denial is a WARN line with the status
and at most 256 bytes of the body. Approved hosts are remembered per service (and cached hosts
never ask), so the endpoint stays off the handshake path.

- An absolute ``http(s)://`` URL is asked directly: GET, 2 s timeout, redirects not followed.
- A path ``/…`` is asked of the service itself with ``Host: H`` (no redirects, so it sees
  ``X-Forwarded-Proto: http``): here, a GET to one of the service's healthy targets; a stopped or
  paused service, or one without a target, answers 503 (denied).

Both kinds of request run in the issuer's thread pool (``requests``, which the acme package
already brings), never on the event loop.
"""

from __future__ import annotations

import asyncio
import os
import re
from collections.abc import Callable
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

from proxy import defaults
from proxy.log import JsonLog

_SCHEME = re.compile(r"^([A-Za-z][A-Za-z0-9+.\-]*):(.*)$", re.DOTALL)
_BAD_ESCAPE = re.compile(r"%(?![0-9A-Fa-f]{2})")


class OnDemandUrlError(ValueError):
    """The URL is not usable; the message is kamal-proxy's."""


def check_on_demand_url(url: str) -> bool:
    """Validate as kamal-proxy does; True when the URL is a path served by the service itself."""
    if url.startswith("//"):
        raise OnDemandUrlError("tls-on-demand-url must be a path or an absolute http(s) URL")
    bad = _BAD_ESCAPE.search(url)
    if bad is not None:
        escape = url[bad.start() : bad.start() + 3]
        raise OnDemandUrlError(
            f'unable to parse tls-on-demand-url: parse "{url}": invalid URL escape "{escape}"'
        )
    if url.startswith("/"):
        return True
    match = _SCHEME.match(url)
    if match is None or not match.group(2).startswith("/"):
        raise OnDemandUrlError(f'unable to parse tls-on-demand-url: parse "{url}": invalid URI for request')
    scheme = match.group(1).lower()
    if scheme not in ("http", "https"):
        raise OnDemandUrlError(f'unsupported scheme "{scheme}" in tls-on-demand-url')
    if not urlsplit(url).hostname:
        raise OnDemandUrlError("missing host in tls-on-demand-url")
    return False


def check_url(url: str, host: str) -> str:
    """``url`` with its ``host`` query parameter set to ``host`` (others kept, sorted as Go encodes)."""
    parts = urlsplit(url)
    query = [(k, v) for k, v in parse_qsl(parts.query, keep_blank_values=True) if k != "host"]
    query.append(("host", host))
    query.sort(key=lambda kv: kv[0])
    return urlunsplit(parts._replace(query=urlencode(query)))


class Denied(Exception):
    pass


# service name → the address of one of its targets able to answer now, or None (stopped, paused,
# no healthy target: the service itself would answer 503). Called on the event loop.
LocalTarget = Callable[[str], str | None]


class OnDemand:
    def __init__(self, *, loop: asyncio.AbstractEventLoop, log: JsonLog, local: LocalTarget) -> None:
        self._loop = loop
        self._log = log
        self._local = local
        self._approved: dict[tuple[str, str], set[str]] = {}  # (service, URL) → approved hosts

    async def approve(self, service: str, url: str, host: str) -> None:
        """Return when ``host`` may get a certificate; raise ``Denied`` otherwise."""
        approved = self._approved.setdefault((service, url), set())  # a new URL asks again
        if host in approved:
            return
        target = check_url(url, host)
        try:
            if url.startswith("/"):
                address = self._local(service)
                if address is None:
                    status, body = 503, b""
                else:
                    status, body = await self._loop.run_in_executor(None, ask_target, address, target, host)
            else:
                status, body = await self._loop.run_in_executor(None, ask_external, target)
        except Exception as exc:
            self._log.warn("TLS on-demand check failed", host=host, error=str(exc) or type(exc).__name__)
            raise Denied(f"{host}: on-demand check failed: {exc}") from None
        if status != 200:
            text = body[: defaults.ON_DEMAND_BODY_LOG].decode("utf-8", "replace")
            self._log.warn("TLS on-demand check denied host", host=host, status=status, body=text)
            raise Denied(f"{host} is not allowed to get a certificate (status: {status}, body: {text!r})")
        approved.add(host)


def ask_external(url: str) -> tuple[int, bytes]:
    """GET the endpoint (blocking; run in a thread): no redirects, 2 s, the first 256 bytes of the body."""
    import requests  # here: the CLI imports this module for validation only

    verify: str | bool = os.environ.get("SSL_CERT_FILE") or True
    with requests.get(
        url, timeout=defaults.ON_DEMAND_CHECK_TIMEOUT, allow_redirects=False, stream=True, verify=verify
    ) as response:
        body = response.raw.read(defaults.ON_DEMAND_BODY_LOG)
        return int(response.status_code), bytes(body or b"")


def ask_target(address: str, path: str, host: str) -> tuple[int, bytes]:
    """GET ``path`` from one of the service's targets as the service would send it (blocking)."""
    import requests

    headers = {
        "Host": host,
        "X-Forwarded-Proto": "http",
        "X-Forwarded-Host": host,
        "User-Agent": "kamal-proxy",
    }
    with requests.get(
        f"http://{address}{path}",
        headers=headers,
        timeout=defaults.ON_DEMAND_CHECK_TIMEOUT,
        allow_redirects=False,
        stream=True,
    ) as response:
        body = response.raw.read(defaults.ON_DEMAND_BODY_LOG)
        return int(response.status_code), bytes(body or b"")
