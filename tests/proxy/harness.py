"""The data plane in-process: mock transports both ways, a manual clock, real routes and services.

``Harness`` builds a ``Listener`` as the daemon does, but its clock is a ``ManualClock`` and its
upstream connector makes ``MockTransport`` connections to a ``MockTargets`` instead of sockets. A
test opens client connections (``harness.client()``), feeds request bytes, plays the target's part
on the upstream connections the proxy opened, and reads what the client got — no subprocess, no
socket, no sleep. Timeouts are driven with ``harness.advance(seconds)`` (the clock, then the sweeps
the daemon would run).
"""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Awaitable, Callable
from typing import Any, cast

from proxy import defaults
from proxy.access_log import AccessLog
from proxy.error_pages import ErrorPages
from proxy.http.connection import ClientConnection
from proxy.http.listener import Listener
from proxy.http.parsers import PARSER_KINDS, ParserKind, make_request_parser, make_response_parser
from proxy.http.record import ExchangeRecord
from proxy.http.upstream import UpstreamConnection
from proxy.lifecycle import ModeEvent
from proxy.log import JsonLog
from proxy.metrics import MetricsObserver, RequestMetrics
from proxy.options import HealthCheckConfig, ServiceOptions, TargetOptions
from proxy.service import Service
from proxy.service_map import ServiceMap
from proxy.targets import TargetSet
from tests.proxy.manual_clock import ManualClock, settle

__all__ = ["PARSER_KINDS", "CapturedLog", "Harness", "MockTargets", "MockTransport", "settle"]


class MockTransport:
    """An asyncio.Transport that records what is done to it; ``take()`` returns what was written."""

    def __init__(self, *, peer: tuple[str, int] = ("10.0.0.7", 50123)) -> None:
        self.peer = peer
        self.written: list[bytes] = []
        self.closed = False
        self.aborted = False
        self.reading = True
        self.reading_changes: list[str] = []
        self.eof_written = False
        self.limits: tuple[int, int] | None = None
        self.protocol: asyncio.Protocol | None = None
        # backpressure: act as a peer that reads nothing until ``drain``: past the high-water mark
        # the protocol hears pause_writing, as from a real transport
        self.backpressure = False
        self.buffered = 0
        self.write_paused = False

    # --- the transport interface the proxy uses
    def write(self, data: bytes) -> None:
        assert not self.closed, "write after close"
        self.written.append(bytes(data))
        if self.backpressure:
            self.buffered += len(data)
            high = self.limits[0] if self.limits else 0
            if not self.write_paused and self.buffered > high and self.protocol is not None:
                self.write_paused = True
                self.protocol.pause_writing()

    def writelines(self, data: list[bytes]) -> None:
        for piece in data:
            self.write(piece)

    def close(self) -> None:
        self.closed = True

    def abort(self) -> None:
        self.closed = True
        self.aborted = True

    def is_closing(self) -> bool:
        return self.closed

    def get_write_buffer_size(self) -> int:
        return self.buffered

    def pause_reading(self) -> None:
        assert self.reading, "paused twice"
        self.reading = False
        self.reading_changes.append("pause")

    def resume_reading(self) -> None:
        assert not self.reading, "resumed while reading"
        self.reading = True
        self.reading_changes.append("resume")

    def get_extra_info(self, name: str, default: Any = None) -> Any:
        return self.peer if name == "peername" else default

    def set_write_buffer_limits(self, high: int | None = None, low: int | None = None) -> None:
        self.limits = (high or 0, low or 0)

    def can_write_eof(self) -> bool:
        return True

    def write_eof(self) -> None:
        self.eof_written = True

    # --- for the test
    def take(self) -> bytes:
        """Everything written since the last take."""
        data = b"".join(self.written)
        self.written.clear()
        return data

    def drain(self, size: int | None = None) -> None:
        """The peer read ``size`` buffered bytes (None: all of them); once the buffer is at or
        below the low-water mark, a paused protocol hears resume_writing."""
        self.buffered = 0 if size is None else max(0, self.buffered - size)
        low = self.limits[1] if self.limits else 0
        if self.write_paused and self.buffered <= low and self.protocol is not None:
            self.write_paused = False
            self.protocol.resume_writing()

    def lose(self, exc: Exception | None = None) -> None:
        """The peer went away: the protocol hears connection_lost (once); ``exc`` for a read
        error such as a reset (None: a clean close)."""
        if self.protocol is not None:
            protocol, self.protocol = self.protocol, None
            self.closed = True
            protocol.connection_lost(exc)


class MockTargets:
    """Plays every target: connections the proxy opens land in ``connections``.

    ``refuse`` makes connects fail like a closed port; ``hang`` makes them never complete.
    """

    def __init__(self) -> None:
        self.connections: list[tuple[MockTransport, UpstreamConnection]] = []
        self.dialled: list[tuple[str, int]] = []
        self.refuse = False
        self.hang = False
        self.backpressure = False  # the transports it makes pause the proxy past their high-water mark

    async def connect(
        self, factory: Callable[[], UpstreamConnection], host: str, port: int
    ) -> tuple[asyncio.BaseTransport, UpstreamConnection]:
        self.dialled.append((host, port))
        if self.refuse:
            raise ConnectionRefusedError(f"connect to {host}:{port} refused")
        if self.hang:
            await asyncio.get_running_loop().create_future()
        protocol = factory()
        transport = MockTransport(peer=(host, port))
        transport.backpressure = self.backpressure
        transport.protocol = protocol
        protocol.connection_made(transport)  # type: ignore[arg-type]
        self.connections.append((transport, protocol))
        return transport, protocol  # type: ignore[return-value]

    def last(self) -> tuple[MockTransport, UpstreamConnection]:
        assert self.connections, "the proxy opened no upstream connection"
        return self.connections[-1]

    def respond(self, data: bytes, *, index: int = -1) -> bytes:
        """Answer on an upstream connection; returns the request bytes it had received."""
        transport, protocol = self.connections[index]
        request = transport.take()
        protocol.data_received(data)
        return request


class CapturedLog(JsonLog):
    """The daemon's log, its lines kept as parsed JSON instead of written."""

    def __init__(self) -> None:
        super().__init__(fd=-1)
        self.entries: list[dict[str, Any]] = []

    def line(self, text: str) -> None:
        self.entries.append(json.loads(text))

    def messages(self) -> list[str]:
        return [str(e.get("msg")) for e in self.entries]

    def requests(self) -> list[dict[str, Any]]:
        return [e for e in self.entries if e.get("msg") == "Request"]


class Recorder:
    """An exchange observer keeping the finished records."""

    def __init__(self) -> None:
        self.records: list[ExchangeRecord] = []

    def exchange_finished(self, record: ExchangeRecord) -> None:
        self.records.append(record)


class Harness:
    def __init__(
        self,
        *,
        parser: ParserKind = "httptools",
        scheme: str = "http",
        metrics: bool = False,
        write_timeout: float = defaults.WRITE_TIMEOUT,
    ) -> None:
        self.clock = ManualClock()
        self.log = CapturedLog()
        self.recorder = Recorder()
        self.targets = MockTargets()
        self.services: list[tuple[str, str, Service]] = []
        self._routes: ServiceMap[Service] = ServiceMap()
        # --metrics-port: the table the data plane counts into (None: metrics off, as by default)
        self.metrics = RequestMetrics() if metrics else None
        observers: tuple[Any, ...] = (self.recorder, AccessLog(log=self.log))
        if self.metrics is not None:
            observers += (MetricsObserver(table=self.metrics, clock=time.time),)
        self.listener = Listener(
            loop=asyncio.get_running_loop(),
            clock=self.clock,
            log=self.log,
            observers=observers,
            metrics=self.metrics,
            routes=lambda: self._routes,
            request_parser=lambda: make_request_parser(parser, max_head_size=65536),
            response_parser=lambda: make_response_parser(parser, max_head_size=65536),
            port=8080,
            scheme=scheme,
            write_timeout=write_timeout,
            connect=self.targets.connect,
        )

    # --- routes
    def deploy(
        self,
        name: str,
        *addresses: str,
        hosts: tuple[str, ...] = ("",),
        prefixes: tuple[str, ...] = ("/",),
        readers: tuple[str, ...] = (),
        service_options: dict[str, Any] | None = None,
        error_pages: ErrorPages | None = None,
        **target_options: Any,
    ) -> Service:
        """A running service whose targets are healthy at once (no health checks run)."""
        active = self.target_set(name, addresses or ("app:3000",), readers)
        service = Service(
            name=name,
            options=ServiceOptions(hosts=hosts, path_prefixes=prefixes, **(service_options or {})),
            target_options=TargetOptions(**target_options),
            active=active,
            error_pages=error_pages,
        )
        self.services += [(h, p, service) for h in hosts for p in prefixes]
        self._routes = ServiceMap(self.services)
        return service

    def target_set(self, name: str, addresses: tuple[str, ...], readers: tuple[str, ...] = ()) -> TargetSet:
        """Targets (writers and readers) that are healthy at once."""
        targets = TargetSet(
            addresses=addresses, readers=readers, health=HealthCheckConfig(), log=self.log, service=name
        )
        targets.mark_all_healthy()
        return targets

    def pause(self, service: Service, *, max_pause: float = 30.0) -> None:
        service.change_mode(ModeEvent.PAUSE, pause_timeout=max_pause)

    # --- clients
    def client(
        self, *, peer: tuple[str, int] = ("10.0.0.7", 50123)
    ) -> tuple[ClientConnection, MockTransport]:
        conn = ClientConnection(self.listener)
        transport = MockTransport(peer=peer)
        transport.protocol = conn
        conn.connection_made(transport)  # type: ignore[arg-type]
        return conn, transport

    async def advance(self, seconds: float) -> None:
        """Move the clock and run the sweeps the daemon runs (target/pause/connect, then idle)."""
        await self.clock.advance(seconds)
        self.listener.sweep_responses()
        self.listener.sweep_idle()
        await settle()

    def close(self) -> None:
        self.log.close()


def get(path: str = "/", *, host: bytes = b"app.test", extra: bytes = b"") -> bytes:
    return b"GET " + path.encode() + b" HTTP/1.1\r\nHost: " + host + b"\r\n" + extra + b"\r\n"


def ok(body: bytes = b"hi", *, extra: bytes = b"") -> bytes:
    return b"HTTP/1.1 200 OK\r\nContent-Length: %d\r\n%b\r\n%b" % (len(body), extra, body)


def status_of(response: bytes) -> int:
    return int(response.split(b" ", 2)[1])


def run(
    parser: str,
    scenario: Callable[[Harness], Awaitable[None]],
    *,
    scheme: str = "http",
    metrics: bool = False,
    write_timeout: float = defaults.WRITE_TIMEOUT,
) -> None:
    """Run ``scenario`` on a fresh event loop with a fresh harness for ``parser``."""

    async def main() -> None:
        harness = Harness(
            parser=cast(ParserKind, parser), scheme=scheme, metrics=metrics, write_timeout=write_timeout
        )
        try:
            await scenario(harness)
        finally:
            harness.close()

    asyncio.run(main())
