"""`run`: the control process. Start-up order (kamal-proxy's): restore state → HTTP listener → control socket.

The control process owns what exists once: the control socket, the Router (services, target sets,
one health checker per target), the state file, and the listening sockets, which it opens before
the workers start and keeps open until it exits. The data plane runs in ``--workers`` worker
processes (``proxy/worker/``), started, fed and replaced by ``proxy/controller/fleet.py``; with
``--workers 1`` it is the same, with one worker. "Server started" is logged once every worker
serves the restored routes.

HTTPS is served by the workers too, on HTTPS listening sockets opened here like the HTTP ones. This
process keeps the certificate store that is the source of truth (the Router sets each service's TLS
settings, the ACME issuer installs certificates and challenge answers, on-demand checks run here);
the store mirrors every change into the workers' stores through the fleet (README, "Architecture":
"TLS and ACME"), and a worker's handshake that needs an ACME certificate asks this process
(``_obtain``), which issues once for every worker.

SIGTERM / SIGINT: every worker stops accepting, lets requests in flight finish for up to
SHUTDOWN_TIMEOUT, then closes every connection and exits; then the control process exits 0.

Before anything else, `run` takes the daemon lock beside the control socket (``claim_socket``) and
refuses to start while another daemon holds it or answers on the socket (taking the socket over
would leave that daemon unreachable; two `run`s started at once cannot both pass). The soft
open-files limit is raised to the hard one, as Go programs do (workers inherit it). Running out of
file descriptors is logged by the worker that ran out, rate-limited.
"""

from __future__ import annotations

import asyncio
import os
import resource
import signal
from dataclasses import dataclass
from pathlib import Path

import uvloop

from proxy import defaults
from proxy.acme import AcmeIssuer
from proxy.control import ControlServer, DaemonRunning, check_not_running, claim_socket
from proxy.controller.fleet import WorkerFleet
from proxy.controller.sockets import Listeners, open_listeners
from proxy.http.parsers import ParserKind
from proxy.lifecycle import ServiceMode, TargetState
from proxy.log import JsonLog
from proxy.metrics import (
    MetricsServerProtocol,
    ProxyCollector,
    ProxyGauges,
    RequestMetrics,
    make_registry,
)
from proxy.on_demand import OnDemand
from proxy.ratelimit import RateLimited, loop_error_handler
from proxy.router import ControlError, Router
from proxy.service import Service
from proxy.service_map import ServiceMap
from proxy.state import StateFile
from proxy.tls import CertificateStore
from proxy.worker.process import WorkerConfig


class StartupError(Exception):
    """The daemon cannot start; the message is what `run` prints after `Error: `."""


def raise_open_files_limit() -> None:
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft != hard:
        try:
            resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
        except (ValueError, OSError):
            pass


def default_workers() -> int:
    """As nginx's ``worker_processes auto``: the CPUs this process may run on."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except AttributeError:  # not Linux
        return max(1, os.cpu_count() or 1)


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
    write_timeout: float = defaults.WRITE_TIMEOUT
    workers: int = 1
    reuse_port: bool = defaults.REUSE_PORT
    backlog: int = defaults.LISTEN_BACKLOG
    socket_path: Path
    state_path: Path


class Daemon:
    def __init__(self, *, config: DaemonConfig, log: JsonLog) -> None:
        self.config = config
        self.log = log
        self.fleet = WorkerFleet(
            count=config.workers, log=log, worker_config=self._worker_config, obtain=self._obtain
        )
        self.tls = CertificateStore(log=log, routes=self._routes)
        self.tls.on_http_challenges = self.fleet.set_challenges
        self.tls.mirror = self.fleet  # every worker's store follows this one
        self.router = Router(
            log=log, state=StateFile(path=config.state_path), dataplane=self.fleet, tls=self.tls
        )
        self.errors = RateLimited(log=log)
        self._stopping = asyncio.Event()
        self._port = config.http_port
        self._https_port = config.https_port
        self._issuer: AcmeIssuer | None = None
        self._metrics_server: asyncio.Server | None = None

    def _worker_config(
        self, index: int, channel_fd: int, listen_fds: tuple[int, ...], tls_fds: tuple[int, ...]
    ) -> WorkerConfig:
        config = self.config
        return WorkerConfig(
            index=index,
            parent=os.getpid(),
            channel_fd=channel_fd,
            listen_fds=listen_fds,
            tls_fds=tls_fds,
            https_port=self._https_port,
            port=self._port,
            http_parser=config.http_parser,
            read_header_timeout=config.read_header_timeout,
            idle_timeout=config.idle_timeout,
            request_body_timeout=config.request_body_timeout,
            write_timeout=config.write_timeout,
            backlog=config.backlog,
            debug=config.debug,
            metrics=bool(config.metrics_port),
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

    async def _obtain(self, service: str, host: str) -> str:
        """A worker's handshake needs ``host``'s certificate: issue it here (once for every worker;
        the issuer's ``install`` sends it to all of them). "" when obtained, else why not."""
        tls = self.tls.service(service)
        if tls is None or tls.acme is None:
            return f"service {service} has no automatic TLS"
        if self.tls.has_certificate(cache_dir=tls.acme.cache_dir, host=host):
            return ""
        if self._issuer is None:
            return "no ACME issuer"
        try:
            await self._issuer.obtain(tls, host)
        except Exception as exc:  # the issuer logged the cause
            return str(exc) or type(exc).__name__
        return ""

    async def run(self) -> None:
        loop = asyncio.get_running_loop()
        self.log.attach(loop)
        loop.set_exception_handler(loop_error_handler(self.errors))
        config = self.config
        on_demand = OnDemand(loop=loop, log=self.log, local=self._on_demand_target)
        issuer = AcmeIssuer(loop=loop, log=self.log, store=self.tls, on_demand=on_demand)
        self.tls.issuer = self._issuer = issuer
        self.router.restore()
        self._metrics_server = await self._serve_metrics() if config.metrics_port else None
        listeners: Listeners = open_listeners(
            host=config.bind,
            port=config.http_port,
            slots=config.workers,
            reuse_port=config.reuse_port,
            backlog=config.backlog,
        )
        try:
            tls_listeners = open_listeners(
                host=config.bind,
                port=config.https_port,
                slots=config.workers,
                reuse_port=config.reuse_port,
                backlog=config.backlog,
            )
        except OSError:
            listeners.close()
            raise
        try:
            await self._serve(loop, listeners, tls_listeners)
        finally:
            issuer.close()
            listeners.close()
            tls_listeners.close()
        await self.router.close()
        self.log.info("Server stopped")

    async def _serve(
        self, loop: asyncio.AbstractEventLoop, listeners: Listeners, tls_listeners: Listeners
    ) -> None:
        config = self.config
        self._port = listeners.port if config.http_port == 0 else config.http_port
        self._https_port = tls_listeners.port if config.https_port == 0 else config.https_port
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, self._stopping.set)
        try:
            await self.fleet.start(listeners, tls_listeners)
        except BaseException:
            await self.fleet.shutdown(0)
            raise
        control = ControlServer(
            path=config.socket_path, handler=self.router.handle, errors=(ControlError,), log=self.log
        )
        await control.start()
        self.router.start_monitoring()
        self.log.info(
            "Server started",
            http=listeners.port,
            https=tls_listeners.port,
            parser=config.http_parser,
            workers=config.workers,
            pids=self.fleet.pids(),
        )

        await self._stopping.wait()

        await control.close()
        if self._metrics_server is not None:
            self._metrics_server.close()
        await self.fleet.shutdown(defaults.SHUTDOWN_TIMEOUT)

    async def _serve_metrics(self) -> asyncio.Server:
        """The Prometheus listener (every path serves the exposition), before the HTTP listener.

        A scrape asks every worker for a fresh table (or takes the one it last pushed, every
        METRICS_PUSH_INTERVAL) and sums them; this process serves no requests."""
        registry = make_registry(ProxyCollector(tables=self.fleet.metrics_tables, gauges=self.gauges))
        server = await asyncio.get_running_loop().create_server(
            lambda: MetricsServerProtocol(registry, refresh=self.fleet.refresh_metrics),
            host=self.config.bind,
            port=self.config.metrics_port,
            reuse_address=True,
        )
        port = server.sockets[0].getsockname()[1]
        self.log.info("Metrics enabled", address=f"{self.config.bind or ''}:{port}")
        return server

    def gauges(self) -> ProxyGauges:
        """What the Router's services and targets look like now (at scrape time); held requests and
        idle upstream connections are what the workers last reported."""
        targets: dict[tuple[str, str], int] = {}
        held, idle = self.fleet.worker_gauges()
        for name, service in self.router.services().items():
            for state in (TargetState.ADDING, TargetState.HEALTHY, TargetState.UNHEALTHY):
                targets[(name, state.value)] = 0
            for target_set in service.target_sets():
                for target in target_set.targets:
                    key = (name, target.state.value)
                    targets[key] = targets.get(key, 0) + 1
            held.setdefault(name, 0)
            idle.setdefault(name, 0)
        errors = RequestMetrics()
        for each in self.fleet.metrics_tables():
            for name, n in each.connect_errors.items():
                errors.connect_errors[name] = errors.connect_errors.get(name, 0) + n
        return ProxyGauges(
            targets=targets,
            held_requests=held,
            idle_upstream_connections=idle,
            upstream_connect_errors=dict(errors.connect_errors),
        )


def run_daemon(config: DaemonConfig) -> int:
    """Run until SIGTERM / SIGINT; raises StartupError when another daemon owns the socket (holds
    its lock, or answers on it)."""
    try:
        lock = claim_socket(config.socket_path)
    except DaemonRunning as exc:
        raise StartupError(str(exc)) from None
    except OSError as exc:
        raise StartupError(f"unable to lock {config.socket_path}: {exc}") from None
    try:
        check_not_running(config.socket_path)  # a daemon that predates the lock
    except DaemonRunning as exc:
        os.close(lock)
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
    finally:
        os.close(lock)  # after the socket is gone: the next daemon may start
    log.close()
    return 0
