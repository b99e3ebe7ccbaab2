"""One worker process: the data plane on the listening sockets it inherited, routes from the control process.

It serves plain HTTP (``Acceptor`` per inherited socket) and HTTPS (``TlsListener`` on the
inherited HTTPS sockets: HTTP/2 by ALPN, else HTTP/1), over the same routes; certificates come from
its own certificate store, a copy of the control process's (``proxy/worker/certificates.py``).

Start-up: tie its life to the control process (parent-death signal, then a check that the parent is
still the one that started it), read messages until the first routing snapshot (applying the TLS
state and HTTP-01 answers sent before it), apply it, and only then accept connections and
acknowledge (``Applied``): a worker never serves before it has the current routes and certificates. Then it follows the message stream (``proxy/ipc.py``) until:

- ``Shutdown``, SIGTERM or SIGINT: stop accepting, close idle connections, let busy ones finish
  within the timeout, close the rest, exit 0;
- the stream closes (the control process is gone): exit at once, whatever is in flight.
"""

from __future__ import annotations

import asyncio
import ctypes
import errno
import json
import os
import signal
import socket
import sys
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import uvloop

from proxy import defaults, ipc
from proxy.http.connection import ClientConnection
from proxy.http.h2_connection import negotiated
from proxy.http.listener import Listener, serving_listener
from proxy.http.parsers import PARSER_KINDS, ParserKind
from proxy.log import JsonLog
from proxy.metrics import RequestMetrics
from proxy.ratelimit import RateLimited, loop_error_handler
from proxy.tls_listener import TlsListener
from proxy.worker.acceptor import Acceptor
from proxy.worker.certificates import WorkerCertificates
from proxy.worker.routes import WorkerRoutes

RESPONSE_SWEEP = 0.1  # seconds between checks of --target-timeout
IDLE_SWEEP = 1.0  # seconds between checks of header-read, idle and write timeouts (and of free descriptors)
PR_SET_PDEATHSIG = 1
EXIT_ORPHANED = 3  # the control process went away


@dataclass(frozen=True, kw_only=True)
class WorkerConfig:
    """What the control process tells a worker on its command line (one JSON argument)."""

    index: int
    parent: int  # the control process's pid
    channel_fd: int
    listen_fds: tuple[int, ...]
    port: int  # the HTTP port the public sees (for forwarded headers)
    http_parser: ParserKind
    read_header_timeout: float
    idle_timeout: float
    request_body_timeout: float
    write_timeout: float
    backlog: int
    debug: bool
    metrics: bool = False  # count requests and push the table to the control process
    tls_fds: tuple[int, ...] = ()  # the HTTPS listening sockets (none: no HTTPS listener)
    https_port: int = 0  # the HTTPS port the public sees (for forwarded headers)

    def to_json(self) -> str:
        data = {k: getattr(self, k) for k in self.__dataclass_fields__}
        data["listen_fds"] = list(self.listen_fds)
        data["tls_fds"] = list(self.tls_fds)
        return json.dumps(data, separators=(",", ":"))

    @classmethod
    def from_json(cls, text: str) -> WorkerConfig:
        data = json.loads(text)
        if not isinstance(data, dict):
            raise ValueError("worker config must be a JSON object")
        data.setdefault("https_port", 0)
        ints = ("index", "parent", "channel_fd", "port", "backlog", "https_port")
        if any(type(data.get(k)) is not int or data[k] < 0 for k in ints):
            raise ValueError(f"worker config: {', '.join(ints)} must be non-negative integers")
        fds = data.get("listen_fds")
        if not isinstance(fds, list) or not fds or any(type(fd) is not int or fd < 0 for fd in fds):
            raise ValueError("worker config: listen_fds must be a list of descriptors")
        tls_fds = data.get("tls_fds", [])
        if not isinstance(tls_fds, list) or any(type(fd) is not int or fd < 0 for fd in tls_fds):
            raise ValueError("worker config: tls_fds must be a list of descriptors")
        parser = data.get("http_parser")
        if parser not in PARSER_KINDS:
            raise ValueError("worker config: unknown http_parser")
        timeouts = ("read_header_timeout", "idle_timeout", "request_body_timeout", "write_timeout")
        if any(type(data.get(k)) not in (int, float) or data[k] < 0 for k in timeouts):
            raise ValueError("worker config: timeouts must be non-negative numbers")
        return cls(
            index=data["index"],
            parent=data["parent"],
            channel_fd=data["channel_fd"],
            listen_fds=tuple(fds),
            port=data["port"],
            http_parser=parser,
            read_header_timeout=float(data["read_header_timeout"]),
            idle_timeout=float(data["idle_timeout"]),
            request_body_timeout=float(data["request_body_timeout"]),
            write_timeout=float(data["write_timeout"]),
            backlog=data["backlog"],
            debug=bool(data.get("debug")),
            metrics=bool(data.get("metrics")),
            tls_fds=tuple(tls_fds),
            https_port=data["https_port"],
        )


def die_with_parent(parent: int) -> bool:
    """Ask the kernel for SIGKILL when the control process dies; False if it already has."""
    if sys.platform.startswith("linux"):
        try:
            libc = ctypes.CDLL(None, use_errno=True)
            libc.prctl(PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0)
        except (OSError, AttributeError):
            pass
    return os.getppid() == parent  # it may have died before prctl: then we were re-parented


def descriptors_exhausted() -> bool:
    """Can this process open one more file descriptor? (One open and close, once a second.)"""
    try:
        fd = os.open(os.devnull, os.O_RDONLY | os.O_CLOEXEC)
    except OSError as exc:
        return exc.errno in (errno.EMFILE, errno.ENFILE)
    os.close(fd)
    return False


class Worker:
    def __init__(self, *, config: WorkerConfig, log: JsonLog) -> None:
        self.config = config
        self.log = log
        self.routes = WorkerRoutes(log=log)
        self.errors = RateLimited(log=log)
        self._stop: asyncio.Future[float] | None = None
        self._tasks: set[asyncio.Task[None]] = set()
        self._writer: asyncio.StreamWriter | None = None
        self.challenges: dict[str, str] = {}  # ACME HTTP-01: token → key authorization
        self.metrics = RequestMetrics() if config.metrics else None
        self.certificates = WorkerCertificates(log=log, routes=self.routes.current, send=self._send)

    async def run(self) -> int:
        loop = asyncio.get_running_loop()
        self.log.attach(loop)
        loop.set_exception_handler(loop_error_handler(self.errors))
        config = self.config
        channel = socket.socket(fileno=config.channel_fd)
        reader, self._writer = await asyncio.open_unix_connection(sock=channel)
        self._stop = loop.create_future()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, self._request_stop, defaults.SHUTDOWN_TIMEOUT)

        first = await self._read(reader)  # the TLS state and HTTP-01 answers come before the snapshot
        while first is not None and not isinstance(first, ipc.Snapshot):
            self._handle(first)
            first = await self._read(reader)
        if first is None:
            return EXIT_ORPHANED
        self.routes.apply(first)

        ctx = self._context(loop, scheme="http", port=config.port)
        servers = [
            Acceptor(loop=loop, sock=socket.socket(fileno=fd), protocol_factory=lambda: ClientConnection(ctx))
            for fd in config.listen_fds
        ]
        contexts = [ctx]
        tls_listener = None
        if config.tls_fds:
            https = self._context(loop, scheme="https", port=config.https_port)
            contexts.append(https)
            tls_listener = TlsListener(
                loop=loop,
                store=self.certificates.store,
                protocol_factory=lambda: negotiated(https),  # HTTP/2 by ALPN, else HTTP/1
                log=self.log,
                hello_timeout=min(config.read_header_timeout, defaults.TLS_HELLO_TIMEOUT),
            )
            for fd in config.tls_fds:
                tls_listener.adopt(socket.socket(fileno=fd))
        self._send(ipc.Applied(version=self.routes.version))
        sweeper = loop.create_task(self._sweep(contexts))
        if self.metrics is not None:
            self._spawn(self._push_metrics(self.metrics))
        follower = loop.create_task(self._follow(reader))
        self.log.debug("Worker started", worker=config.index, pid=os.getpid())
        await asyncio.wait((self._stop, follower), return_when=asyncio.FIRST_COMPLETED)
        if not self._stop.done():  # the control process is gone: nothing to finish for
            return EXIT_ORPHANED
        follower.cancel()
        for server in servers:
            server.close()
        if tls_listener is not None:
            tls_listener.close()
        await asyncio.gather(*(self._finish(each, self._stop.result()) for each in contexts))
        sweeper.cancel()
        return 0

    def _context(self, loop: asyncio.AbstractEventLoop, *, scheme: str, port: int) -> Listener:
        config = self.config
        return serving_listener(
            loop=loop,
            log=self.log,
            metrics=self.metrics,
            routes=self.routes.current,
            http_parser=config.http_parser,
            port=port,
            scheme=scheme,
            read_header_timeout=config.read_header_timeout,
            idle_timeout=config.idle_timeout,
            request_body_timeout=config.request_body_timeout,
            write_timeout=config.write_timeout,
            challenge_tokens=self.challenges,
        )

    async def _finish(self, ctx: Listener, timeout: float) -> None:
        loop = asyncio.get_running_loop()
        ctx.closing = True
        for conn in list(ctx.connections):
            conn.idle_timed_out()  # idle keep-alive connections go now; busy ones finish first
        deadline = loop.time() + timeout
        while any(c.busy for c in ctx.connections) and loop.time() < deadline:
            await asyncio.sleep(0.05)
        if ctx.connections:
            self.log.info("Closing active connections", worker=self.config.index)
            for conn in list(ctx.connections):
                if conn.transport is not None:
                    conn.transport.abort()

    def _request_stop(self, timeout: float) -> None:
        if self._stop is not None and not self._stop.done():
            self._stop.set_result(timeout)

    # ------------------------------------------------------------------ messages
    async def _read(self, reader: asyncio.StreamReader) -> ipc.Message | None:
        """The next message, or None when the stream closed."""
        try:
            header = await reader.readexactly(ipc.HEADER.size)
            return ipc.decode(await reader.readexactly(ipc.frame_length(header)))
        except (asyncio.IncompleteReadError, ConnectionError):
            return None

    def _send(self, message: ipc.ToControl) -> None:
        if self._writer is not None and not self._writer.is_closing():
            self._writer.write(ipc.encode(message))

    async def _follow(self, reader: asyncio.StreamReader) -> None:
        """Apply messages until the stream closes; a bad one ends the worker (the control process
        starts another, which gets the whole current state)."""
        try:
            await self._follow_messages(reader)
        except ipc.MessageError as exc:
            self.log.error("Bad message from the control process", worker=self.config.index, error=str(exc))
        except Exception as exc:  # a bug applying one: this worker ends and a fresh one gets the whole state
            self.log.error(
                "Unable to apply a message from the control process",
                worker=self.config.index,
                error=f"{type(exc).__name__}: {exc}",
            )

    async def _follow_messages(self, reader: asyncio.StreamReader) -> None:
        while (message := await self._read(reader)) is not None:
            if isinstance(message, ipc.Snapshot):
                self.routes.apply(message)
                self._send(ipc.Applied(version=self.routes.version))
            else:
                self._handle(message)

    def _handle(self, message: ipc.Message) -> None:
        """Any message but a snapshot (these may also come before the first one)."""
        if isinstance(message, ipc.Drain | ipc.Settle):
            self._spawn(self._drain(message))
        elif isinstance(message, ipc.TlsService | ipc.Certificate | ipc.AlpnChallenge | ipc.Obtained):
            self.certificates.apply(message)
        elif isinstance(message, ipc.Challenges):
            self._set_challenges(message)
        elif isinstance(message, ipc.CollectMetrics):
            self._send(ipc.MetricsTable(request=message.request, table=self._table()))
        elif isinstance(message, ipc.Shutdown):
            self._request_stop(message.timeout)
        elif isinstance(message, ipc.Sync):
            self._send(ipc.Synced(request=message.request))

    def _set_challenges(self, message: ipc.Challenges) -> None:
        self.challenges.clear()  # (the listeners hold this dict)
        self.challenges.update(message.tokens)

    async def _push_metrics(self, table: RequestMetrics) -> None:
        """The request table, every METRICS_PUSH_INTERVAL, for the control process's scrapes."""
        while True:
            await asyncio.sleep(defaults.METRICS_PUSH_INTERVAL)
            self._send(ipc.MetricsTable(request=0, table=self._table()))

    def _table(self) -> dict[str, Any]:
        """The request table plus this worker's gauges: held requests and idle upstream
        connections per service (what only the data plane knows)."""
        table = self.metrics.snapshot() if self.metrics is not None else RequestMetrics().snapshot()
        held: dict[str, int] = {}
        idle: dict[str, int] = {}
        for name, service in self.routes.services().items():
            held[name] = len(service.held)
            idle[name] = sum(len(t.idle) for s in service.target_sets() for t in s.targets)
        table["held"], table["idle"] = held, idle
        return table

    def _spawn(self, work: Any) -> None:
        task = asyncio.get_running_loop().create_task(work)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _drain(self, message: ipc.Drain | ipc.Settle) -> None:
        inflight = cancelled = 0
        if isinstance(message, ipc.Drain):
            target_set = self.routes.replaced.pop(message.target_set, None)
            if target_set is not None:
                inflight = target_set.inflight
                cancelled = await target_set.drain(message.timeout)
        else:
            service = self.routes.service(message.service)
            if service is not None:
                sets = service.target_sets()
                inflight = sum(s.inflight for s in sets)
                cancelled = sum(await asyncio.gather(*(s.settle(message.timeout) for s in sets)))
        self._send(ipc.Drained(request=message.request, inflight=inflight, cancelled=cancelled))

    def _swept(self, sweep: Callable[[], None]) -> None:
        """One sweep; a bug in it is logged (rate-limited) and the next tick sweeps again: every
        timeout of this worker depends on this loop going on."""
        try:
            sweep()
        except Exception as exc:
            self.errors.error(
                asyncio.get_running_loop().time(),
                "Timeout sweep failed",
                worker=self.config.index,
                error=f"{type(exc).__name__}: {exc}",
            )

    async def _sweep(self, contexts: list[Listener]) -> None:
        ticks_per_idle = max(1, round(IDLE_SWEEP / RESPONSE_SWEEP))
        tick = 0
        while True:
            await asyncio.sleep(RESPONSE_SWEEP)
            for ctx in contexts:
                self._swept(ctx.sweep_responses)
            tick += 1
            if tick >= ticks_per_idle:
                tick = 0
                for ctx in contexts:
                    self._swept(ctx.sweep_idle)
                if descriptors_exhausted():
                    self.errors.error(
                        asyncio.get_running_loop().time(),
                        "Unable to accept connections: too many open files",
                        connections=sum(len(ctx.connections) for ctx in contexts),
                        worker=self.config.index,
                    )


def main(argv: list[str]) -> int:
    if len(argv) != 1:
        print("usage: python -m proxy.worker CONFIG_JSON (started by `proxyctl run`)", file=sys.stderr)
        return 2
    try:
        config = WorkerConfig.from_json(argv[0])
    except ValueError as exc:
        print(f"Error: {exc}", file=sys.stderr)
        return 2
    if not die_with_parent(config.parent):
        return EXIT_ORPHANED
    log = JsonLog(debug=config.debug)
    try:
        return uvloop.run(Worker(config=config, log=log).run())
    finally:
        log.close()
