"""`run`: the daemon. Start-up order (kamal-proxy's): restore state → HTTP + HTTPS listeners → control socket.

Both listeners share one data plane: the HTTPS listener (``proxy/tls_listener.py``) chooses a
certificate per handshake from the certificate store and hands the connection to the same
``ClientConnection``, with its own ``Listener`` (scheme https, its port).

SIGTERM / SIGINT: stop accepting, let requests in flight finish for up to SHUTDOWN_TIMEOUT, then
close every connection and exit 0.

Before anything else, `run` refuses to start while another daemon answers on the control socket
(taking the socket over would leave that daemon unreachable). The soft open-files limit is raised
to the hard one, as Go programs do. Running out of file descriptors is logged, rate-limited: the
event loop's own error reports go to the JSON log (asyncio reports failed accepts there), and
once a second the daemon checks it can still open a descriptor (uvloop's libuv drops connections
it cannot accept without telling anyone).
"""

from __future__ import annotations

import asyncio
import errno
import os
import resource
import signal
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import uvloop

from proxy import defaults
from proxy.access_log import AccessLog
from proxy.acme import AcmeIssuer
from proxy.clock import BoundLoopClock
from proxy.control import ControlServer, DaemonRunning, check_not_running
from proxy.http.connection import ClientConnection
from proxy.http.h2_connection import negotiated
from proxy.http.listener import Listener
from proxy.http.parsers import ParserKind, make_request_parser, make_response_parser
from proxy.http.record import ExchangeObserver
from proxy.lifecycle import ServiceMode, TargetState
from proxy.log import JsonLog
from proxy.metrics import (
    MetricsObserver,
    MetricsServerProtocol,
    ProxyCollector,
    ProxyGauges,
    RequestMetrics,
    make_registry,
)
from proxy.on_demand import OnDemand
from proxy.router import ControlError, Router
from proxy.service import Service
from proxy.service_map import ServiceMap
from proxy.state import StateFile
from proxy.tls import CertificateStore
from proxy.tls_listener import TlsListener

RESPONSE_SWEEP = 0.1  # seconds between checks of --target-timeout
IDLE_SWEEP = 1.0  # seconds between checks of header-read and idle timeouts (and of free descriptors)


class StartupError(Exception):
    """The daemon cannot start; the message is what `run` prints after `Error: `."""


class RateLimited:
    """Log a recurring problem at most once per ``interval`` seconds, with how often it recurred."""

    def __init__(self, *, log: JsonLog, interval: float = defaults.ERROR_LOG_INTERVAL) -> None:
        self._log = log
        self._interval = interval
        self._last: dict[str, float] = {}
        self._suppressed: dict[str, int] = {}

    def error(self, now: float, msg: str, **attrs: Any) -> bool:
        last = self._last.get(msg)
        if last is not None and now - last < self._interval:
            self._suppressed[msg] = self._suppressed.get(msg, 0) + 1
            return False
        self._last[msg] = now
        repeats = self._suppressed.pop(msg, 0)
        if repeats:
            attrs["repeated"] = repeats
        self._log.error(msg, **attrs)
        return True


def raise_open_files_limit() -> None:
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft != hard:
        try:
            resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
        except (ValueError, OSError):
            pass


def descriptors_exhausted() -> bool:
    """Can this process open one more file descriptor? (One open and close, once a second.)"""
    try:
        fd = os.open(os.devnull, os.O_RDONLY | os.O_CLOEXEC)
    except OSError as exc:
        return exc.errno in (errno.EMFILE, errno.ENFILE)
    os.close(fd)
    return False


@dataclass(frozen=True, kw_only=True)
class DaemonConfig:
    http_port: int = defaults.HTTP_PORT
    https_port: int = defaults.HTTPS_PORT
    metrics_port: int = defaults.METRICS_PORT
    debug: bool = False
    http_parser: ParserKind = "httptools"
    bind: str | None = None  # None: all interfaces, as kamal-proxy
    read_header_timeout: float = defaults.READ_HEADER_TIMEOUT
    idle_timeout: float = defaults.IDLE_TIMEOUT
    request_body_timeout: float = defaults.REQUEST_BODY_TIMEOUT
    socket_path: Path
    state_path: Path


class Daemon:
    def __init__(self, *, config: DaemonConfig, log: JsonLog) -> None:
        self.config = config
        self.log = log
        self.tls = CertificateStore(log=log, routes=self._routes)
        self.router = Router(log=log, state=StateFile(path=config.state_path), tls=self.tls)
        self.errors = RateLimited(log=log)
        self._stopping = asyncio.Event()

    def _loop_error(self, loop: asyncio.AbstractEventLoop, context: dict[str, Any]) -> None:
        exc = context.get("exception")
        self.errors.error(
            loop.time(),
            "Event loop error",
            error=str(context.get("message", "")),
            exception=f"{type(exc).__name__}: {exc}" if exc is not None else None,
        )

    def _routes(self) -> ServiceMap[Service]:
        return self.router.routes

    def _on_demand_target(self, name: str) -> str | None:
        """A target of service ``name`` that would take a request now (for on-demand TLS checks)."""
        for service in self.router.routes.owners.values():
            if service.name == name:
                if service.mode is not ServiceMode.RUNNING:
                    return None
                target = service.active.pick()
                return target.address if target is not None else None
        return None

    async def run(self) -> None:
        loop = asyncio.get_running_loop()
        self.log.attach(loop)
        loop.set_exception_handler(self._loop_error)
        config = self.config
        on_demand = OnDemand(loop=loop, log=self.log, local=self._on_demand_target)
        issuer = AcmeIssuer(loop=loop, log=self.log, store=self.tls, on_demand=on_demand)
        self.tls.issuer = issuer
        self.router.restore()
        parser = config.http_parser
        max_head = defaults.MAX_HEAD_SIZE
        clock = BoundLoopClock(loop)
        observers: tuple[ExchangeObserver, ...] = (AccessLog(log=self.log),)
        metrics: RequestMetrics | None = None  # one table for every listener
        metrics_server: asyncio.Server | None = None
        if config.metrics_port:
            metrics = RequestMetrics()
            observers += (MetricsObserver(table=metrics, clock=time.time),)
            metrics_server = await self._serve_metrics(metrics)

        def listener(*, port: int, scheme: str) -> Listener:
            return Listener(
                loop=loop,
                clock=clock,
                log=self.log,
                observers=observers,
                metrics=metrics,
                routes=self.router.current_routes,
                request_parser=lambda: make_request_parser(parser, max_head_size=max_head),
                response_parser=lambda: make_response_parser(parser, max_head_size=max_head),
                port=port,
                scheme=scheme,
                read_header_timeout=config.read_header_timeout,
                idle_timeout=config.idle_timeout,
                request_body_timeout=config.request_body_timeout,
                challenge_tokens=self.tls.http_challenges,
            )

        ctx = listener(port=config.http_port, scheme="http")
        server = await loop.create_server(
            lambda: ClientConnection(ctx),
            host=config.bind,
            port=config.http_port,
            reuse_address=True,
            backlog=2048,
        )
        http_port = server.sockets[0].getsockname()[1]
        ctx.port = http_port if config.http_port == 0 else config.http_port
        tls_ctx = listener(port=config.https_port, scheme="https")
        tls_listener = TlsListener(
            loop=loop,
            store=self.tls,
            protocol_factory=lambda: negotiated(tls_ctx),
            log=self.log,
            hello_timeout=min(config.read_header_timeout, defaults.TLS_HELLO_TIMEOUT),
        )
        try:
            https_port = tls_listener.start(host=config.bind, port=config.https_port)
        except OSError:
            server.close()
            raise
        tls_ctx.port = https_port if config.https_port == 0 else config.https_port
        listeners = (ctx, tls_ctx)
        control = ControlServer(
            path=config.socket_path, handler=self.router.handle, errors=(ControlError,), log=self.log
        )
        await control.start()
        self.router.start_monitoring()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, self._stopping.set)
        sweeper = loop.create_task(self._sweep(listeners))
        self.log.info("Server started", http=http_port, https=https_port, parser=parser)

        await self._stopping.wait()

        server.close()
        tls_listener.close()
        for each in listeners:
            each.closing = True
        if metrics_server is not None:
            metrics_server.close()
        await control.close()
        await self._close_connections(loop, listeners)
        sweeper.cancel()
        issuer.close()
        await self.router.close()
        self.log.info("Server stopped")

    async def _close_connections(
        self, loop: asyncio.AbstractEventLoop, listeners: tuple[Listener, ...]
    ) -> None:
        """Idle keep-alive connections go now; busy ones may finish within SHUTDOWN_TIMEOUT."""
        for conn in [c for each in listeners for c in each.connections]:
            conn.idle_timed_out()
        deadline = loop.time() + defaults.SHUTDOWN_TIMEOUT
        while any(c.busy for each in listeners for c in each.connections) and loop.time() < deadline:
            await asyncio.sleep(0.05)
        if any(each.connections for each in listeners):
            self.log.info("Closing active connections")
            for conn in [c for each in listeners for c in each.connections]:
                if conn.transport is not None:
                    conn.transport.abort()

    async def _serve_metrics(self, table: RequestMetrics) -> asyncio.Server:
        """The Prometheus listener (every path serves the exposition), before the HTTP listener."""
        registry = make_registry(ProxyCollector(tables=lambda: (table,), gauges=lambda: self.gauges(table)))
        server = await asyncio.get_running_loop().create_server(
            lambda: MetricsServerProtocol(registry),
            host=self.config.bind,
            port=self.config.metrics_port,
            reuse_address=True,
        )
        port = server.sockets[0].getsockname()[1]
        self.log.info("Metrics enabled", address=f"{self.config.bind or ''}:{port}")
        return server

    def gauges(self, table: RequestMetrics) -> ProxyGauges:
        """What the Router's services and targets look like now (at scrape time)."""
        targets: dict[tuple[str, str], int] = {}
        held: dict[str, int] = {}
        idle: dict[str, int] = {}
        for name, service in self.router.services().items():
            for state in (TargetState.ADDING, TargetState.HEALTHY, TargetState.UNHEALTHY):
                targets[(name, state.value)] = 0
            for target_set in service.target_sets():
                for target in target_set.targets:
                    key = (name, target.state.value)
                    targets[key] = targets.get(key, 0) + 1
                    idle[name] = idle.get(name, 0) + len(target.idle)
            held[name] = len(service.held)
        return ProxyGauges(
            targets=targets,
            held_requests=held,
            idle_upstream_connections=idle,
            upstream_connect_errors=dict(table.connect_errors),
        )

    async def _sweep(self, listeners: tuple[Listener, ...]) -> None:
        ticks_per_idle = max(1, round(IDLE_SWEEP / RESPONSE_SWEEP))
        tick = 0
        while True:
            await asyncio.sleep(RESPONSE_SWEEP)
            for each in listeners:
                each.sweep_responses()
            tick += 1
            if tick >= ticks_per_idle:
                tick = 0
                for each in listeners:
                    each.sweep_idle()
                if descriptors_exhausted():
                    self.errors.error(
                        asyncio.get_running_loop().time(),
                        "Unable to accept connections: too many open files",
                        connections=sum(len(each.connections) for each in listeners),
                    )


def run_daemon(config: DaemonConfig) -> int:
    """Run until SIGTERM / SIGINT; raises StartupError when another daemon owns the socket."""
    try:
        check_not_running(config.socket_path)
    except DaemonRunning as exc:
        raise StartupError(str(exc)) from None
    raise_open_files_limit()
    log = JsonLog(debug=config.debug)
    daemon = Daemon(config=config, log=log)
    try:
        uvloop.run(daemon.run())
    except (OSError, DaemonRunning) as exc:
        log.error("Unable to start server", error=str(exc))
        log.close()
        return 1
    log.close()
    return 0
