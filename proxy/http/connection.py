"""The HTTP/1 client connection: the transport, the queue of pipelined requests, HTTP/1 framing.

One asyncio protocol per client connection, plain or TLS alike (the listener's ``scheme`` is all
that differs). It parses requests and makes one ``Exchange`` per request head, one at a time:
pipelined requests are parsed as they arrive but queued until the current response is complete;
past PIPELINE_MAX_BUFFERED queued bytes the connection stops reading. It is the exchange's
``ClientSide``: it frames what the exchange sends (chunked for HTTP/1.1 when the length is
unknown, close-delimited for HTTP/1.0, ``Connection`` fields, trailer fields after the last chunk)
and decides keep-alive. Bodies stream both ways: each side stops reading while the other side's
write buffer is above its high-water mark (``FlowControl``). While its own writes are paused the
connection is watched for --write-timeout (``write_stall.py``): no progress for that long, reset.
"""

from __future__ import annotations

import asyncio
from typing import Final, cast

from proxy import defaults
from proxy.http import writer
from proxy.http.exchange import Exchange, ExchangeState
from proxy.http.flow_control import CONNECTING, PIPELINE_FULL, UPSTREAM_FULL, FlowControl
from proxy.http.listener import Listener
from proxy.http.pages import error_page, response_bytes
from proxy.http.parser import (
    UNKNOWN_LENGTH,
    Data,
    EndOfMessage,
    Headers,
    ParseError,
    RequestEvent,
    RequestHead,
    TunnelData,
)
from proxy.http.write_stall import bytes_acked, reset_on_close, unsent_in
from proxy.http.writer import Framing
from proxy.log import quote

# Enum members as module constants (an enum class attribute read is slow on the hot path)
CHUNKED: Final = Framing.CHUNKED
LENGTH: Final = Framing.LENGTH
CLOSE: Final = Framing.CLOSE
HELD: Final = ExchangeState.HELD
ANSWERED: Final = ExchangeState.ANSWERED
# An exchange in these states has sent (part of) a response: a late error can only cut the connection.
RESPONDED: Final = frozenset({ExchangeState.STREAMING, ExchangeState.TUNNEL, ExchangeState.ANSWERED})


class ClientConnection(asyncio.Protocol):
    __slots__ = (
        "client_json",
        "closed",
        "corked",
        "deadline",
        "exchange",
        "flow",
        "framing",
        "in_head",
        "keep_alive",
        "listener",
        "parser",
        "peer_b",
        "peer_ip",
        "peer_port",
        "queue",
        "queued_bytes",
        "receiving",
        "transport",
        "tunnel",
    )

    def __init__(self, listener: Listener) -> None:
        self.listener = listener
        self.parser = listener.request_parser()
        self.transport: asyncio.Transport | None = None
        self.flow = FlowControl()
        self.peer_ip = ""
        self.peer_b = b""
        self.peer_port = 0
        self.client_json = '"client_addr":"","client_port":"0"'
        self.queue: list[RequestEvent] = []
        self.queued_bytes = 0
        self.exchange: Exchange | None = None  # the request being answered
        self.receiving = False  # the current request's body is still arriving
        self.keep_alive = True
        self.framing = LENGTH  # how the current response's body goes to the client
        self.tunnel = False
        self.closed = False
        # header-read, idle or request-body deadline (clock time), 0 = none
        self.deadline = 0.0
        self.in_head = False  # a request head has started: its read-header deadline is set, never moved
        self.corked: list[bytes] | None = None  # client-bound bytes collected while handling one read

    @property
    def busy(self) -> bool:
        return self.exchange is not None

    # ------------------------------------------------------------------ asyncio callbacks
    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = tcp = cast(asyncio.Transport, transport)  # uvloop's are not subclasses
        tcp.set_write_buffer_limits(high=defaults.WRITE_HIGH_WATER, low=defaults.WRITE_LOW_WATER)
        self.flow.transport = tcp
        peer = transport.get_extra_info("peername")
        if peer:
            self.peer_ip, self.peer_port = peer[0], peer[1]
            self.peer_b = self.peer_ip.encode()
            self.client_json = f'"client_addr":{quote(self.peer_ip)},"client_port":"{self.peer_port}"'
        listener = self.listener
        listener.connections.add(self)
        self.in_head = True
        self.deadline = listener.now() + listener.read_header_timeout

    def data_received(self, data: bytes) -> None:
        exchange = self.exchange
        if self.receiving:  # body progress: the request-body timeout starts again
            self.deadline = self.listener.now() + self.listener.request_body_timeout
        elif exchange is None and not self.in_head:
            # The first bytes of a new head: --read-header-timeout bounds the whole head from here
            # (as Go's ReadHeaderTimeout); later reads of the same head do not extend it.
            self.in_head = True
            self.deadline = self.listener.now() + self.listener.read_header_timeout
        events = self.parser.feed(data)
        if self.queue or (exchange is not None and exchange.state is HELD):
            self._enqueue(events, 0)
        else:
            self._dispatch(events)

    def eof_received(self) -> bool:
        exchange = self.exchange
        if self.tunnel and exchange is not None and exchange.client_eof():
            return True  # half-close: the tunnel's other direction may still flow
        # As Go's server: a client that closes while its request is in flight has cancelled it
        # (logged 499); connection_lost follows and cleans up.
        events = self.parser.feed_eof()
        if events and exchange is None and not self.queue:
            self._dispatch(events)
        return False

    def connection_lost(self, exc: Exception | None) -> None:
        self.listener.connections.discard(self)
        self.queue = []
        self.closed = True
        exchange = self.exchange
        if exchange is not None:
            exchange.client_lost()
            self._finish()
        self.transport = None
        self.flow.transport = None

    def pause_writing(self) -> None:
        if not self.tunnel:  # (a tunnel's backpressure stops reading its target; it may idle)
            self.listener.write_stalls.paused(self)  # --write-timeout watches it from now
        if self.exchange is not None:
            self.exchange.client_write_paused()

    def resume_writing(self) -> None:
        self.listener.write_stalls.resumed(self)
        if self.exchange is not None:
            self.exchange.client_write_resumed()

    # ------------------------------------------------------------------ request events
    def _dispatch(self, events: list[RequestEvent]) -> None:
        i = 0
        n = len(events)
        while i < n:
            event = events[i]
            kind = type(event)
            if kind is Data:
                if self.exchange is not None:
                    self.exchange.request_body(cast(Data, event).data)
            elif kind is EndOfMessage:
                self._request_end(cast(EndOfMessage, event).trailers)  # (compiled: a native read)
            elif kind is RequestHead:
                if self.exchange is not None:  # the next pipelined request: wait for this response
                    self._enqueue(events, i)
                    return
                if self._request_head(event) is HELD:  # type: ignore[arg-type]
                    self._enqueue(events, i + 1)  # its body and what follows wait for the resume
                    return
            elif kind is TunnelData:
                if self.exchange is not None:
                    self.exchange.tunnel_in(cast(TunnelData, event).data)
            elif kind is ParseError:
                if self.exchange is not None and not self.receiving:
                    self._enqueue(events, i)
                    return
                self._malformed(event)  # type: ignore[arg-type]
                return
            if self.closed:
                return
            i += 1

    def _enqueue(self, events: list[RequestEvent], start: int) -> None:
        queue = self.queue
        for event in events[start:] if start else events:
            queue.append(event)
            if type(event) is Data or type(event) is TunnelData:
                self.queued_bytes += len(event.data)
        if self.queued_bytes > defaults.PIPELINE_MAX_BUFFERED:
            self.flow.pause(PIPELINE_FULL)

    def _drain_queue(self) -> None:
        queue = self.queue
        self.queue = []
        self.queued_bytes = 0
        self.flow.resume(PIPELINE_FULL)
        if queue:
            self._dispatch(queue)

    def _request_head(self, head: RequestHead) -> ExchangeState:
        self.receiving = True
        self.in_head = False
        listener = self.listener
        self.deadline = listener.now() + listener.request_body_timeout if head.content_length else 0.0
        self.keep_alive = head.keep_alive and not self.listener.closing
        exchange = self.exchange = Exchange(self.listener, self, head)
        exchange.start()
        return exchange.state

    def _request_end(self, trailers: Headers | None) -> None:
        self.receiving = False
        self.deadline = 0.0
        exchange = self.exchange
        if exchange is None:
            return
        exchange.request_end(trailers)
        if exchange.state is ANSWERED and self.exchange is exchange:
            self._response_complete()  # answered before the request was read: now it is

    def _malformed(self, error: ParseError) -> None:
        self.listener.log.info("Malformed request", client_addr=self.peer_ip, error=error.message)
        self.keep_alive = False
        self.receiving = False
        exchange = self.exchange
        if exchange is None:
            self._write(response_bytes(error.status, body=error_page(error.status), keep_alive=False))
            self._close()
        elif exchange.state in RESPONDED:
            self.abort()
        else:
            exchange.reject(error.status)

    # ------------------------------------------------------------------ ClientSide
    def respond(
        self, status: int, body: bytes, *, content_type: str, head_only: bool, location: str = ""
    ) -> None:
        exchange = self.exchange
        assert exchange is not None
        head = exchange.head
        if self.receiving and (head.content_length != 0 or head.chunked):
            # Unread body: answer now, close after (kamal-proxy's net/http does the same).
            self.keep_alive = False
        if self.listener.closing or location:  # kamal-proxy's redirects say Connection: close
            self.keep_alive = False
        self._write(
            response_bytes(
                status,
                body=body,
                keep_alive=self.keep_alive,
                head=head_only,
                content_type=content_type,
                location=location,
            )
        )
        self._response_complete()

    def send_continue(self) -> None:
        self._write(writer.CONTINUE)

    def send_interim(self, status: int, reason: bytes, headers: Headers) -> None:
        exchange = self.exchange
        if exchange is not None and exchange.head.version == b"1.1":
            self._write(writer.interim_response(status, reason, headers))

    def send_head(self, status: int, reason: bytes, lines: list[bytes], *, length: int) -> None:
        if status == 101:
            self.tunnel = True
            self._write(writer.response_head(status, reason, lines))
            return
        exchange = self.exchange
        assert exchange is not None
        head = exchange.head
        if head.upgrade:  # refused upgrade: the client may already be sending tunnel bytes
            self.keep_alive = False
        if length == UNKNOWN_LENGTH and head.method != b"HEAD":
            if head.version == b"1.1":
                lines.append(b"Transfer-Encoding: chunked")
                self.framing = CHUNKED
            else:
                self.framing = CLOSE
                self.keep_alive = False
        if self.listener.closing:
            self.keep_alive = False
        if not self.keep_alive:
            lines.append(b"Connection: close")
        elif head.version == b"1.0":
            lines.append(b"Connection: keep-alive")
        data = writer.response_head(status, reason, lines)
        corked = self.corked
        if corked is not None:
            corked.append(data)
        else:
            self._write(data)

    def send_body(self, data: bytes) -> None:
        if self.framing is CHUNKED:
            data = writer.chunk(data)
        corked = self.corked
        if corked is not None:
            corked.append(data)
        else:
            self._write(data)

    def end(self) -> None:
        if self.framing is CHUNKED:
            self._write(writer.LAST_CHUNK)
        if self.receiving:
            # The target answered before the whole request body arrived: that body cannot be
            # skipped reliably, so this client connection ends with the response.
            self.keep_alive = False
        self._response_complete()

    def end_with_trailers(self, trailers: Headers) -> None:
        if self.framing is CHUNKED:
            self._write(writer.last_chunk(trailers))
            self.framing = LENGTH  # (the body is ended: end() adds nothing)
        self.end()

    def abort(self) -> None:
        self.corked = None
        self.keep_alive = False
        self.closed = True
        transport = self.transport
        if transport is not None:
            transport.abort()

    def close(self) -> None:
        self._close()

    def cork(self) -> bool:
        if self.corked is not None:
            return False
        self.corked = []
        return True

    def uncork(self) -> None:
        corked = self.corked
        self.corked = None
        if corked and self.transport is not None:
            self.transport.write(corked[0] if len(corked) == 1 else b"".join(corked))

    def pause_reading(self, reason: int) -> None:
        self.flow.pause(reason)

    def resume_reading(self, reason: int) -> None:
        self.flow.resume(reason)

    def unhold(self) -> None:
        if self.queue and not self.closed:
            self._drain_queue()

    # ------------------------------------------------------------------ between exchanges
    def _response_complete(self) -> None:
        if not self.keep_alive:
            self._finish()
            self._close()
            return
        if self.receiving:
            return  # the rest of this request's body is read (and dropped) before the next request
        self._finish()
        self.deadline = self.listener.now() + self.listener.idle_timeout
        if self.queue:
            self._drain_queue()

    def _finish(self) -> None:
        """The exchange is over: it reports itself; the connection forgets it."""
        exchange = self.exchange
        if exchange is None:
            return
        self.exchange = None
        self.framing = LENGTH
        exchange.finish()
        flow = self.flow
        if flow.paused:  # paused for this exchange's upstream, which will not say resume_writing any more
            flow.resume(UPSTREAM_FULL | CONNECTING)

    def idle_timed_out(self) -> None:
        if self.exchange is None:
            self._close()

    def deadline_passed(self, now: float) -> None:
        """The sweep found ``deadline`` passed: header-read or idle timeout, or a stalled body."""
        exchange = self.exchange
        if exchange is None:
            self._close()
        elif self.receiving:
            if self.flow.paused or exchange.state is HELD:
                # the proxy is not reading (or not using) this body: the client is not stalling
                self.deadline = now + self.listener.request_body_timeout
                return
            self.listener.log.info("Request body timed out", client_addr=self.peer_ip)
            self.receiving = False
            self.keep_alive = False
            self.deadline = 0.0
            if exchange.state in RESPONDED:
                self.abort()
            else:
                exchange.reject(408)

    # ------------------------------------------------------------------ --write-timeout
    def unsent(self) -> int:
        """Bytes in the transport's write buffer (0 once the connection is gone)."""
        return unsent_in(self.transport)

    def delivered(self) -> int:
        """Bytes the client's TCP acknowledged (the kernel's count; 0 where unknown)."""
        return bytes_acked(self.transport)

    def write_timed_out(self) -> None:
        """Paused with no write progress for --write-timeout: reset the connection (what is
        buffered would never go out). ``connection_lost`` then ends the exchange as any client
        loss: its target connection is closed, not pooled, and it is logged 499."""
        transport = self.transport
        if self.tunnel or transport is None:
            return
        self.listener.log.info("Response write timed out", client_addr=self.peer_ip, unsent=self.unsent())
        reset_on_close(transport)
        self.abort()

    # ------------------------------------------------------------------ transport helpers
    def _write(self, data: bytes) -> None:
        corked = self.corked
        if corked is not None:
            corked.append(data)
            return
        transport = self.transport
        if transport is not None:
            transport.write(data)

    def _close(self) -> None:
        self.uncork()
        self.closed = True
        transport = self.transport
        if transport is not None:
            transport.close()
