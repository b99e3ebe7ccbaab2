"""The HTTP/2 client connection: one TLS transport, one ``H2Session``, one ``Exchange`` per stream.

The TLS listener's protocol is ``negotiated``: after the handshake it looks at the ALPN the client
chose and hands the transport to an ``H2Connection`` (``h2``) or the HTTP/1 ``ClientConnection``.

Each request stream drives an ordinary ``Exchange`` through an ``H2Stream``, its ``ClientSide``: the
exchange logic (routing, modes, buffering, forwarded headers, timeouts, the access log) is the one
HTTP/1.1 uses; only the framing differs. Streams are multiplexed onto the targets' pooled HTTP/1.1
connections.

Flow control, both ways, per stream:
- request bodies: DATA is acknowledged to the client (``H2Session.consumed``) only while the
  stream's exchange is not holding its reading (the upstream is full or still connecting, or the
  request is held by a pause), so a slow upstream stops its own client stream and no other;
- response bodies: when the client's window for a stream is full (``send_body`` returns False) that
  stream's upstream is no longer read until the window opens (``StreamWritable``); when the TLS
  transport's buffer is full (``pause_writing``) every stream's upstream stops.

Lifecycle: the read-header timeout runs until the first request; ``--idle-timeout`` runs while no
stream is open and ends the connection with GOAWAY; a request body that makes no progress for
``--request-body-timeout`` gets 408 on its stream (the connection and other streams go on); shutdown (``listener.closing``) sends GOAWAY and
lets the streams in flight finish (the daemon's drain rules bound them). ``--write-timeout``
(``WriteStalls``): a stream whose response waits behind a closed flow-control window with no
progress for that long is reset (CANCEL: the client broke no rule, the proxy just no longer wants
the stream) and its exchange and target connection let go, the other streams going on; a
connection whose transport stays paused with no progress for that long is reset.
"""

from __future__ import annotations

import asyncio
import ssl
from typing import cast

from proxy import defaults
from proxy.http.connection import ClientConnection
from proxy.http.exchange import Exchange, ExchangeState
from proxy.http.flow_control import FlowControl
from proxy.http.h2_session import (
    ConnectionEnded,
    H2Session,
    StreamData,
    StreamEnd,
    StreamHead,
    StreamReset,
    StreamWritable,
)
from proxy.http.listener import Listener
from proxy.http.parser import UNKNOWN_LENGTH, Headers, RequestHead
from proxy.http.write_stall import bytes_acked, reset_on_close, unsent_in
from proxy.log import quote

H2_VERSION = b"2.0"  # the access log's "HTTP/2.0"
HELD = ExchangeState.HELD
RESPONDED = frozenset({ExchangeState.STREAMING, ExchangeState.TUNNEL, ExchangeState.ANSWERED})
NO_ERROR, INTERNAL_ERROR, CANCEL = 0, 2, 8
# Interim responses a stream forwards (RFC 9113 §8.1 allows any 1xx; these are the useful ones).
FORWARDED_INTERIM = frozenset({100, 103})
# Why a stream's upstream is not read (bits)
WINDOW_FULL = 1  # the client's flow-control window for the stream is full
TRANSPORT_FULL = 2  # the TLS transport's write buffer is above its high-water mark


def negotiated(listener: Listener) -> asyncio.Protocol:
    """The TLS listener's protocol: HTTP/2 or HTTP/1.1, by the ALPN the handshake chose."""
    return _Negotiating(listener)


class _Negotiating(asyncio.Protocol):
    """Lives only for ``connection_made`` (called after the handshake): picks and installs the protocol."""

    def __init__(self, listener: Listener) -> None:
        self.listener = listener

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        ssl_object = cast(ssl.SSLObject | None, transport.get_extra_info("ssl_object"))
        alpn = ssl_object.selected_alpn_protocol() if ssl_object is not None else None
        protocol: asyncio.Protocol
        if alpn == "h2":
            protocol = H2Connection(self.listener)
        else:
            protocol = ClientConnection(self.listener)
        transport.set_protocol(protocol)
        protocol.connection_made(transport)


class H2Stream:
    """One request stream: the ``ClientSide`` of its exchange."""

    __slots__ = (
        "blocked",
        "body_deadline",
        "client_json",
        "conn",
        "ended",
        "exchange",
        "finished",
        "flow",
        "held",
        "owed",
        "peer_b",
        "peer_ip",
        "receiving",
        "stream_id",
        "tail",
    )

    def __init__(self, conn: H2Connection, stream_id: int) -> None:
        self.conn = conn
        self.stream_id = stream_id
        self.peer_ip = conn.peer_ip
        self.peer_b = conn.peer_b
        self.client_json = conn.client_json
        self.exchange: Exchange | None = None
        self.receiving = True  # the request body is still arriving
        self.ended = False  # the response is complete (or the stream was reset)
        self.finished = False  # the exchange reported itself
        # why the request body is not acknowledged; made on the first pause (most requests see none)
        self.flow: FlowControl | None = None
        self.owed = 0  # request-body bytes received but not yet acknowledged to the client
        self.held: list[StreamData | StreamEnd] | None = None  # body events while the exchange is held
        self.blocked = 0  # why the upstream is not read (WINDOW_FULL | TRANSPORT_FULL)
        self.tail = b""  # the latest response-body piece, not yet given to the session
        self.body_deadline = 0.0  # while the request body arrives: --request-body-timeout from its last DATA

    # ------------------------------------------------------------------ from the client
    def start(self, head: StreamHead) -> None:
        content_length, chunked = _body_framing(head)
        request = RequestHead(
            method=head.method,
            target=head.target,
            version=H2_VERSION,
            headers=head.headers,
            keep_alive=True,
            upgrade=False,  # no extended CONNECT: WebSockets stay on HTTP/1.1
            expect_continue=head.expect_continue and content_length != 0,
            content_length=content_length,
            chunked=chunked,
        )
        self.receiving = receiving = not head.end_stream
        if receiving:
            self.conn.watch_body(self)
        exchange = self.exchange = Exchange(self.conn.listener, self, request)
        exchange.start()
        if exchange.state is HELD:
            self.held = []  # the body and its end (a StreamEnd, even for END_STREAM on the HEADERS) wait

    def data(self, event: StreamData) -> None:
        listener = self.conn.listener
        self.body_deadline = listener.now() + listener.request_body_timeout  # progress
        if self.held is not None:
            self.held.append(event)
            self.owed += event.flow_length  # acknowledged once the request goes on
            return
        exchange = self.exchange
        if exchange is not None and not self.finished:
            exchange.request_body(event.data)
        flow = self.flow
        if flow is not None and flow.paused:
            self.owed += event.flow_length
        else:
            self.conn.session.consumed(self.stream_id, event.flow_length)

    def end_of_request(self, event: StreamEnd) -> None:
        if self.held is not None:
            self.held.append(event)
            return
        self._request_end(event.trailers)

    def _request_end(self, trailers: Headers | None) -> None:
        self.receiving = False
        exchange = self.exchange
        if exchange is not None and not self.finished:
            exchange.request_end(trailers)
        if self.ended:
            self.conn.stream_done(self)

    def reset_by_client(self) -> None:
        """RST_STREAM from the client: its request is cancelled (499)."""
        self.receiving = False
        self.tail = b""
        exchange = self.exchange
        if exchange is not None and not self.finished:
            exchange.client_lost()
            self._finish()
        self.ended = True
        self._acknowledge_owed()
        self.conn.stream_done(self)

    def connection_lost(self) -> None:
        exchange = self.exchange
        if exchange is not None and not self.finished:
            exchange.client_lost()
            self._finish()

    def _finish(self) -> None:
        if self.finished:
            return
        self.finished = True
        exchange = self.exchange
        if exchange is not None:
            # The stream and its exchange refer to each other: let go here, so reference counting
            # frees both when the stream is done instead of the cyclic GC, which would otherwise
            # run every few hundred requests and walk every live object.
            self.exchange = None
            exchange.finish()

    def waiting_for_proxy(self) -> bool:
        """The proxy is not reading (or not using) this body yet: the client is not the one stalling."""
        return self.held is not None or (self.flow is not None and bool(self.flow.paused))

    def body_timed_out(self) -> None:
        """No request DATA for --request-body-timeout: 408 (the stream is then reset with NO_ERROR,
        as for any early answer), or a reset when the response has already started."""
        self.body_deadline = 0.0
        if self.ended:
            # Answered already, the rest of the body only read and dropped; the stream is still
            # here because its response waits for the client's window, or because the client has
            # not ended its body. Nothing else times it out: reset it and let it go.
            self._drop_answered()
            return
        self.conn.listener.log.info("Request body timed out", client_addr=self.peer_ip)
        exchange = self.exchange
        if exchange is None or self.finished or exchange.state in RESPONDED:
            self.abort()
        else:
            exchange.reject(408)

    def _drop_answered(self) -> None:
        """Reset a stream whose response is complete (what it still queued is dropped) and forget it."""
        conn = self.conn
        conn.session.reset(self.stream_id, code=CANCEL if conn.session.queued(self.stream_id) else NO_ERROR)
        self.receiving = False
        self.held = None
        self.owed = 0  # (a reset stream's window is the connection's concern no more)
        if conn.streams.get(self.stream_id) is self:
            conn.stream_done(self)
        conn.flush()

    # ------------------------------------------------------------------ --write-timeout
    def unsent(self) -> int:
        """Response bytes queued behind the client's window (0 once the connection is gone)."""
        conn = self.conn
        return 0 if conn.closed else conn.session.queued_bytes(self.stream_id)

    def delivered(self) -> int:
        """Not measured for a stream: its queue (``unsent``) shrinks exactly as its window opens,
        while the socket's count would also grow with its siblings' bytes."""
        return 0

    def write_timed_out(self) -> None:
        """Its window stayed closed with bytes waiting for --write-timeout: RST_STREAM CANCEL. An
        exchange still streaming is cancelled as by a client reset (its target connection is
        closed, not pooled; logged 499); the connection and its other streams go on."""
        self.conn.listener.log.info(
            "Response write timed out", client_addr=self.peer_ip, stream=self.stream_id, unsent=self.unsent()
        )
        if self.ended:  # the response is complete, only its last bytes wait for the window
            self._drop_answered()
            return
        exchange = self.exchange
        if exchange is not None and not self.finished:
            exchange.client_lost()
        self.abort(code=CANCEL)

    def _window_full(self) -> None:
        """A response piece waits for the client's window: --write-timeout watches this stream."""
        self.conn.listener.write_stalls.paused(self)

    def _acknowledge_owed(self) -> None:
        owed = self.owed
        if owed:
            self.owed = 0
            self.conn.session.consumed(self.stream_id, owed)

    # ------------------------------------------------------------------ ClientSide
    def respond(
        self, status: int, body: bytes, *, content_type: str, head_only: bool, location: str = ""
    ) -> None:
        fields: Headers = []
        if content_type:
            fields.append((b"content-type", content_type.encode("latin-1")))
        if location:
            fields.append((b"location", location.encode("latin-1")))
        fields.append((b"content-length", b"%d" % len(body)))
        session = self.conn.session
        if head_only or not body:
            session.send_head(self.stream_id, status, fields, end=True)
        else:
            session.send_head(self.stream_id, status, fields, end=False)
            if not session.send_body(self.stream_id, body, end=True):
                self._window_full()
        self._response_complete()

    def send_continue(self) -> None:
        self.conn.session.send_head(self.stream_id, 100, (), end=False)
        self.conn.flush()

    def send_interim(self, status: int, reason: bytes, headers: Headers) -> None:
        if status in FORWARDED_INTERIM:
            self.conn.session.send_head(self.stream_id, status, headers, end=False)
            self.conn.flush()

    def send_head(self, status: int, reason: bytes, lines: list[bytes], *, length: int) -> None:
        # 101 cannot happen (no upgrade is forwarded from a stream)
        self.conn.session.send_head_lines(self.stream_id, status, lines, end=False)
        self.conn.flush()

    def send_body(self, data: bytes) -> None:
        # The latest piece is held until the next one, the end (then it carries END_STREAM: one
        # DATA frame fewer per response) or the connection's write in this loop turn.
        tail = self.tail
        self.tail = data
        if tail:
            self._send(tail)
        else:
            self.conn.tails.append(self)
            self.conn.flush()

    def release_tail(self) -> None:
        tail = self.tail
        if tail:
            self.tail = b""
            self._send(tail)

    def _send(self, data: bytes) -> None:
        conn = self.conn
        if not conn.session.send_body(self.stream_id, data):
            self._block(WINDOW_FULL)
            self._window_full()
        if conn.write_paused:
            self._block(TRANSPORT_FULL)

    def end(self) -> None:
        tail = self.tail
        self.tail = b""
        if not self.conn.session.send_body(self.stream_id, tail, end=True):
            self._window_full()
        self._response_complete()

    def end_with_trailers(self, trailers: Headers) -> None:
        if not trailers:
            self.end()
            return
        tail = self.tail
        self.tail = b""
        session = self.conn.session
        if tail:
            session.send_body(self.stream_id, tail)  # (what the window does not take waits, trailers too)
        if not session.send_trailers(self.stream_id, trailers):
            self._window_full()
        self._response_complete()

    def abort(self, code: int = INTERNAL_ERROR) -> None:
        """The response cannot be completed: reset the stream (the connection and other streams go on)."""
        if self.ended:
            return
        self.tail = b""
        self.conn.session.reset(self.stream_id, code=code)
        self.receiving = False
        self.ended = True
        self._finish()
        self._acknowledge_owed()
        self.conn.stream_done(self)
        self.conn.flush()  # the RST_STREAM goes out now, not with whatever is written next

    def close(self) -> None:
        self.abort()  # only tunnels are closed this way, and a stream never becomes one

    def cork(self) -> bool:
        return False  # the connection writes once per event-loop turn anyway (H2Connection.flush)

    def uncork(self) -> None:
        pass

    def pause_reading(self, reason: int) -> None:
        flow = self.flow
        if flow is None:
            flow = self.flow = FlowControl(_Acks(self))
        flow.pause(reason)

    def resume_reading(self, reason: int) -> None:
        if self.flow is not None:
            self.flow.resume(reason)

    def unhold(self) -> None:
        held = self.held
        self.held = None
        if held is None or self.finished:
            return
        owed = self.owed
        self.owed = 0
        for event in held:
            if isinstance(event, StreamData):
                self.data(StreamData(event.stream_id, event.data, 0))
            else:
                self._request_end(event.trailers)
        if self.flow is not None and self.flow.paused:
            self.owed += owed
        elif owed:
            self.conn.session.consumed(self.stream_id, owed)

    # ------------------------------------------------------------------ response flow
    def _response_complete(self) -> None:
        self.ended = True
        self._finish()
        conn = self.conn
        if self.receiving and not conn.session.queued(self.stream_id):
            # The response came before the whole request body (an error page, an early answer): as
            # RFC 9113 §8.1 allows, the stream is reset with NO_ERROR so the client stops sending.
            conn.session.reset(self.stream_id, code=NO_ERROR)
            self.receiving = False
            self.held = None
            self._acknowledge_owed()
        if not self.receiving:
            conn.stream_done(self)
        conn.flush()
        # Otherwise the rest of the body is read and dropped; the client's END_STREAM ends the stream.

    def _block(self, reason: int) -> None:
        was = self.blocked
        self.blocked = was | reason
        if not was and self.exchange is not None and not self.finished:
            self.exchange.client_write_paused()

    def unblock(self, reason: int) -> None:
        was = self.blocked
        if not was & reason:
            return
        self.blocked = now = was & ~reason
        if reason & WINDOW_FULL:
            self.conn.listener.write_stalls.resumed(self)
        if not now and self.exchange is not None and not self.finished:
            self.exchange.client_write_resumed()


class _Acks:
    """The ``FlowControl`` transport of a stream's request body: pausing withholds acknowledgements."""

    __slots__ = ("stream",)

    def __init__(self, stream: H2Stream) -> None:
        self.stream = stream

    def pause_reading(self) -> None:
        pass  # bytes received from now on are owed, not acknowledged

    def resume_reading(self) -> None:
        self.stream._acknowledge_owed()
        self.stream.conn.flush()


class H2Connection(asyncio.Protocol):
    """The server side of one HTTP/2 connection over TLS."""

    def __init__(self, listener: Listener) -> None:
        self.listener = listener
        self.session = H2Session(clock=listener.now)
        self.transport: asyncio.Transport | None = None
        self.streams: dict[int, H2Stream] = {}
        self.peer_ip = ""
        self.peer_b = b""
        self.client_json = '"client_addr":"","client_port":"0"'
        self.deadline = 0.0  # read-header (until the first request) or idle deadline, 0 = none
        self.flush_scheduled = False
        self.tails: list[H2Stream] = []  # streams holding a response-body piece until the write
        self.write_paused = False
        self.closed = False
        self.going_away = False

    @property
    def busy(self) -> bool:
        return bool(self.streams)

    # ------------------------------------------------------------------ asyncio callbacks
    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = tcp = cast(asyncio.Transport, transport)
        tcp.set_write_buffer_limits(high=defaults.WRITE_HIGH_WATER, low=defaults.WRITE_LOW_WATER)
        peer = transport.get_extra_info("peername")
        if peer:
            self.peer_ip = peer[0]
            self.peer_b = self.peer_ip.encode()
            self.client_json = f'"client_addr":{quote(self.peer_ip)},"client_port":"{peer[1]}"'
        listener = self.listener
        listener.connections.add(self)
        self.deadline = listener.now() + listener.read_header_timeout
        self.session.initiate()
        if listener.closing:
            self.session.goaway()
        self.flush()

    def data_received(self, data: bytes) -> None:
        for event in self.session.receive_data(data):
            self._event(event)
        self.flush()

    def _event(self, event: object) -> None:
        kind = type(event)
        if kind is StreamData:
            stream = self.streams.get(event.stream_id)  # type: ignore[attr-defined]
            if stream is not None:
                stream.data(event)  # type: ignore[arg-type]
            else:  # a stream already answered and forgotten: its window is still the connection's
                self.session.consumed(event.stream_id, event.flow_length)  # type: ignore[attr-defined]
        elif kind is StreamHead:
            self._stream_head(event)  # type: ignore[arg-type]
        elif kind is StreamEnd:
            stream = self.streams.get(event.stream_id)  # type: ignore[attr-defined]
            if stream is not None:
                stream.end_of_request(event)  # type: ignore[arg-type]
        elif kind is StreamWritable:
            stream = self.streams.get(event.stream_id)  # type: ignore[attr-defined]
            if stream is not None:
                stream.unblock(WINDOW_FULL)
        elif kind is StreamReset:
            stream = self.streams.get(event.stream_id)  # type: ignore[attr-defined]
            if stream is not None:
                stream.reset_by_client()
        elif kind is ConnectionEnded:
            self._ended(event)  # type: ignore[arg-type]

    def _stream_head(self, head: StreamHead) -> None:
        if not self.streams:
            self.deadline = 0.0  # the read-header or idle timeout; with streams open it is theirs
        stream = H2Stream(self, head.stream_id)
        self.streams[head.stream_id] = stream
        stream.start(head)

    def _ended(self, event: ConnectionEnded) -> None:
        if event.error_code:
            self.listener.log.info("HTTP/2 connection ended", client_addr=self.peer_ip, reason=event.reason)
        self._close()

    def eof_received(self) -> bool:
        return False  # the client is gone: cancel what is in flight (connection_lost follows)

    def connection_lost(self, exc: Exception | None) -> None:
        self.listener.connections.discard(self)
        self.closed = True
        streams = list(self.streams.values())
        self.streams = {}
        for stream in streams:
            stream.connection_lost()
        self.transport = None

    def pause_writing(self) -> None:
        self.write_paused = True
        self.listener.write_stalls.paused(self)  # --write-timeout watches it from now
        for stream in list(self.streams.values()):
            stream._block(TRANSPORT_FULL)

    def resume_writing(self) -> None:
        self.write_paused = False
        self.listener.write_stalls.resumed(self)
        for stream in list(self.streams.values()):
            stream.unblock(TRANSPORT_FULL)

    def unsent(self) -> int:
        """Bytes in the TLS transport's write buffer (0 once the connection is gone)."""
        return unsent_in(self.transport)

    def delivered(self) -> int:
        """Bytes the client's TCP acknowledged (the kernel's count, under TLS; 0 where unknown)."""
        return bytes_acked(self.transport)

    def write_timed_out(self) -> None:
        """Paused with no write progress for --write-timeout: reset the connection. No GOAWAY: it
        would only queue behind the bytes the client does not read. ``connection_lost`` then
        cancels every stream's exchange (their target connections are closed, logged 499)."""
        self.listener.log.info("Response write timed out", client_addr=self.peer_ip, unsent=self.unsent())
        self.closed = True
        transport = self.transport
        if transport is not None:
            reset_on_close(transport)
            transport.abort()

    # ------------------------------------------------------------------ streams
    def stream_done(self, stream: H2Stream) -> None:
        if self.streams.get(stream.stream_id) is stream:
            del self.streams[stream.stream_id]
        if not self.streams:
            if self.going_away or self.listener.closing:
                self._close()
            else:
                self.deadline = self.listener.now() + self.listener.idle_timeout

    def watch_body(self, stream: H2Stream) -> None:
        """``stream``'s request body is arriving: check it for progress (``deadline`` is then the
        earliest body deadline; a later one is found when that one is checked)."""
        stream.body_deadline = deadline = self.listener.now() + self.listener.request_body_timeout
        if not self.deadline:
            self.deadline = deadline

    def deadline_passed(self, now: float) -> None:
        """The sweep found ``deadline`` passed: with streams open, a request body's; otherwise the
        read-header or idle timeout."""
        if self.streams:
            self._check_bodies(now)
        else:
            self.idle_timed_out()

    def _check_bodies(self, now: float) -> None:
        timeout = self.listener.request_body_timeout
        earliest = 0.0
        for stream in list(self.streams.values()):
            if not stream.receiving or not stream.body_deadline:
                continue
            if stream.body_deadline <= now:
                if not stream.waiting_for_proxy():
                    stream.body_timed_out()
                    continue
                stream.body_deadline = now + timeout
            if not earliest or stream.body_deadline < earliest:
                earliest = stream.body_deadline
        if self.streams:  # (a timed-out stream may have been the last: then the idle timeout runs)
            self.deadline = earliest

    def idle_timed_out(self) -> None:
        """Past the read-header or idle timeout, or shutting down: GOAWAY; close once no stream is open."""
        self.going_away = True
        self.session.goaway()
        self.flush()
        if not self.streams:
            self._close()

    # ------------------------------------------------------------------ writing
    def flush(self) -> None:
        """Write what the session queued, once per event-loop turn: everything the streams of this
        connection send in one turn (many responses, under load) goes out in one TLS write."""
        if not self.flush_scheduled and not self.closed:
            self.flush_scheduled = True
            self.listener.loop.call_soon(self._write_out)

    def _write_out(self) -> None:
        self.flush_scheduled = False
        tails = self.tails
        if tails:
            self.tails = []
            for stream in tails:
                stream.release_tail()
        data = self.session.data_to_send()
        transport = self.transport
        if data and transport is not None and not self.closed:
            transport.write(data)

    def _close(self) -> None:
        """Close after what is queued (a GOAWAY included) went out."""
        self._write_out()
        self.closed = True
        transport = self.transport
        if transport is not None:
            transport.close()


def _body_framing(head: StreamHead) -> tuple[int, bool]:
    """The request body's length as the exchange sees it: 0, the content-length, or chunked upstream."""
    if head.end_stream:
        return 0, False
    if head.content_length:
        return int(head.content_length), False  # a number (request_head checked), the DATA agrees (h2)
    return UNKNOWN_LENGTH, True
