"""What every connection and exchange of one listener shares: routes, parsers, clock, timeouts, observers.

Read on the hot path, never awaited. The daemon makes one per listening socket (plain HTTP
and HTTPS: ``scheme`` is all the data plane needs to know about TLS) and calls the two sweeps.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable, Mapping
from typing import TYPE_CHECKING

from proxy import defaults
from proxy.access_log import AccessLog
from proxy.clock import BoundLoopClock
from proxy.http.parser import RequestParser, ResponseParser
from proxy.http.parsers import ParserKind, make_request_parser, make_response_parser
from proxy.http.record import ExchangeObserver
from proxy.http.upstream import UpstreamConnection
from proxy.http.write_stall import WriteStalls
from proxy.log import JsonLog
from proxy.metrics import MetricsObserver, RequestMetrics

if TYPE_CHECKING:
    from proxy.clock import Clock
    from proxy.http.connection import ClientConnection
    from proxy.http.exchange import Exchange
    from proxy.http.h2_connection import H2Connection
    from proxy.service import Service
    from proxy.service_map import ServiceMap

# How an upstream connection is opened: loop.create_connection, or a mock in tests.
Connector = Callable[
    [Callable[[], UpstreamConnection], str, int],
    Awaitable[tuple[asyncio.BaseTransport, UpstreamConnection]],
]


class Listener:
    def __init__(
        self,
        *,
        loop: asyncio.AbstractEventLoop,
        clock: Clock,
        log: JsonLog,
        observers: tuple[ExchangeObserver, ...],
        routes: Callable[[], ServiceMap[Service]],
        request_parser: Callable[[], RequestParser],
        response_parser: Callable[[], ResponseParser],
        port: int,
        scheme: str,
        read_header_timeout: float = defaults.READ_HEADER_TIMEOUT,
        idle_timeout: float = defaults.IDLE_TIMEOUT,
        request_body_timeout: float = defaults.REQUEST_BODY_TIMEOUT,
        write_timeout: float = defaults.WRITE_TIMEOUT,
        connect_timeout: float = defaults.UPSTREAM_CONNECT_TIMEOUT,
        connect: Connector | None = None,
        metrics: RequestMetrics | None = None,
        challenge_tokens: Mapping[str, str] | None = None,
    ) -> None:
        self.loop = loop
        self.clock = clock
        self.now = clock.time
        self.log = log
        self.observers = observers
        self.routes = routes
        self.request_parser = request_parser
        self.response_parser = response_parser
        self.port = port  # (the property also sets port_b)
        self.scheme = scheme
        self.scheme_b = scheme.encode()
        self.is_tls = scheme == "https"
        # ACME HTTP-01 answers by token: the certificate store's, read by the exchanges
        self.challenge_tokens: Mapping[str, str] = challenge_tokens if challenge_tokens is not None else {}
        self.read_header_timeout = read_header_timeout
        self.idle_timeout = idle_timeout
        self.request_body_timeout = request_body_timeout
        # --write-timeout: connections and HTTP/2 streams whose writes are paused, swept with the idle sweep
        self.write_stalls = WriteStalls(timeout=write_timeout, clock=clock.time)
        self.connect_timeout = connect_timeout
        self.connect: Connector = connect or loop.create_connection
        self.connections: set[ClientConnection | H2Connection] = set()
        self.awaiting: set[Exchange] = (
            set()
        )  # exchanges with a deadline: held, or waiting for a response head
        self.closing = False
        # --metrics-port: this process's request table; None when metrics are off (the data plane
        # then only tests this attribute)
        self.metrics = metrics

    @property
    def port(self) -> int:
        """The port clients use (the configured one), for the access log and X-Forwarded-Port."""
        return self.client_port

    @port.setter
    def port(self, port: int) -> None:
        # plain attributes for the hot path (a property read per request costs a call)
        self.client_port = port
        self.port_b = b"%d" % port

    def sweep_responses(self) -> None:
        """Time out exchanges past their deadline: --max-pause, the connect timeout, --target-timeout."""
        now = self.now()
        for exchange in [e for e in self.awaiting if e.deadline <= now]:
            exchange.timed_out(now)

    def sweep_idle(self) -> None:
        """Close connections past their header-read or idle deadline; 408 stalled request bodies;
        give up writers that made no write progress for --write-timeout."""
        now = self.now()
        for conn in [c for c in self.connections if 0 < c.deadline <= now]:
            conn.deadline_passed(now)
        if self.write_stalls:
            self.write_stalls.sweep(now)


def serving_listener(
    *,
    loop: asyncio.AbstractEventLoop,
    log: JsonLog,
    metrics: RequestMetrics | None,
    routes: Callable[[], ServiceMap[Service]],
    http_parser: ParserKind,
    port: int,
    scheme: str,
    read_header_timeout: float,
    idle_timeout: float,
    request_body_timeout: float,
    write_timeout: float,
    challenge_tokens: Mapping[str, str],
) -> Listener:
    """A listener as the daemon and its workers serve with: the loop's clock, the access log (and the
    metrics observer when metrics are on), the configured parser."""
    observers: tuple[ExchangeObserver, ...] = (AccessLog(log=log),)
    if metrics is not None:
        observers += (MetricsObserver(table=metrics, clock=time.time),)
    max_head = defaults.MAX_HEAD_SIZE
    return Listener(
        loop=loop,
        clock=BoundLoopClock(loop),
        log=log,
        observers=observers,
        metrics=metrics,
        routes=routes,
        request_parser=lambda: make_request_parser(http_parser, max_head_size=max_head),
        response_parser=lambda: make_response_parser(http_parser, max_head_size=max_head),
        port=port,
        scheme=scheme,
        read_header_timeout=read_header_timeout,
        idle_timeout=idle_timeout,
        request_body_timeout=request_body_timeout,
        write_timeout=write_timeout,
        challenge_tokens=challenge_tokens,
    )
