"""The target side: one asyncio protocol per upstream connection, kept alive in its target's pool.

An UpstreamConnection is bound to at most one client exchange at a time. Everything it parses is
handed to that exchange; while idle in the pool, any byte or close from the target retires it.
"""

from __future__ import annotations

import asyncio
from typing import TYPE_CHECKING, Protocol, cast

from proxy import defaults
from proxy.http.flow_control import CLIENT_FULL, FlowControl
from proxy.http.parser import ResponseEvent, ResponseParser

if TYPE_CHECKING:
    from proxy.targets import Target


class UpstreamUser(Protocol):
    """What an upstream connection reports to the client exchange it serves."""

    def upstream_events(self, events: list[ResponseEvent]) -> None: ...

    def upstream_lost(self, conn: UpstreamConnection, events: list[ResponseEvent]) -> None: ...

    def upstream_pause_writing(self) -> None: ...

    def upstream_resume_writing(self) -> None: ...


class UpstreamConnection(asyncio.Protocol):
    __slots__ = ("exchange", "flow", "parser", "reused", "target", "transport", "usable")

    def __init__(self, *, target: Target, parser: ResponseParser) -> None:
        self.target = target
        self.parser = parser
        self.transport: asyncio.Transport | None = None
        self.exchange: UpstreamUser | None = None
        self.usable = True
        self.reused = False
        self.flow = FlowControl()

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = tcp = cast(asyncio.Transport, transport)  # uvloop's are not subclasses
        tcp.set_write_buffer_limits(high=defaults.WRITE_HIGH_WATER, low=defaults.WRITE_LOW_WATER)
        self.flow.transport = tcp

    def bind(self, exchange: UpstreamUser, *, method: bytes, upgrade: bool) -> None:
        self.exchange = exchange
        self.parser.expect_response(method=method, upgrade=upgrade)

    def release(self) -> None:
        """The exchange is over and the connection can serve another request: back to the pool."""
        self.exchange = None
        self.reused = True
        if self.flow.paused:
            self.flow.resume(CLIENT_FULL)
        self.target.give_back(self)

    def data_received(self, data: bytes) -> None:
        exchange = self.exchange
        if exchange is None:  # a target must not speak unasked: this connection is done
            self.close()
            return
        exchange.upstream_events(self.parser.feed(data))

    def eof_received(self) -> bool:
        return False  # close our side too; connection_lost follows

    def connection_lost(self, exc: Exception | None) -> None:
        self.usable = False
        exchange = self.exchange
        if exchange is None:
            self.target.forget_idle(self)
            return
        self.exchange = None
        # Only a clean close (FIN) can end a close-delimited body; after a read error (a reset) the
        # body is cut short, whatever the parser would make of it: the exchange must not complete it.
        exchange.upstream_lost(self, self.parser.feed_eof() if exc is None else [])

    def pause_writing(self) -> None:
        if self.exchange is not None:
            self.exchange.upstream_pause_writing()

    def resume_writing(self) -> None:
        if self.exchange is not None:
            self.exchange.upstream_resume_writing()

    def pause_reading(self) -> None:
        """The client cannot take more: stop reading the target until it can."""
        self.flow.pause(CLIENT_FULL)

    def resume_reading(self) -> None:
        self.flow.resume(CLIENT_FULL)

    def write(self, data: bytes) -> None:
        assert self.transport is not None
        self.transport.write(data)

    def write_lines(self, data: list[bytes]) -> None:
        assert self.transport is not None
        self.transport.writelines(data)

    def close(self) -> None:
        self.usable = False
        self.exchange = None
        if self.transport is not None:
            self.transport.close()

    def abort(self) -> None:
        self.usable = False
        self.exchange = None
        if self.transport is not None:
            self.transport.abort()
