"""HTTP/2 framing for the TLS listener: the ``h2`` package's connection, bounded and translated.

Sans-IO, like the HTTP/1 parsers: bytes go in through ``receive_data``, events come out, and what to
write is taken with ``data_to_send``. The connection layer (transport, timeouts) drives it; each
request stream drives the same exchange logic an HTTP/1.1 request does.

What this layer adds to ``h2``:
- **Translation to HTTP/1 semantics**: a request head with ``:authority`` as ``Host``, cookies split
  across fields joined with ``; ``, the origin-form target, request trailer fields on the stream's
  ``StreamEnd``; response heads with connection-specific fields dropped and names lower-cased, and
  response trailer fields as a last HEADERS frame (``send_trailers``).
- **Validation** (where h2→h1 translation is where smuggling hides): ``request_head`` rejects
  names that are not lower-case tokens, NUL/CR/LF or surrounding whitespace in values,
  connection-specific fields, ``te`` other than ``trailers``, pseudo-header misuse, two different
  hosts and a malformed or repeated ``content-length``; ``h2`` rejects a ``content-length`` that
  disagrees with the DATA sent. A failed request is a stream error (RST_STREAM), never forwarded.
- **Bounds**: ``SETTINGS_MAX_CONCURRENT_STREAMS`` (100, as Go), a header-list size limit, CONTINUATION
  backlog (``h2``'s own, 64 frames), rapid reset (CVE-2023-44487: a peer that cancels most of the
  streams it opens, past a floor, gets GOAWAY), and SETTINGS / PING floods (a rate limit; past it,
  GOAWAY ENHANCE_YOUR_CALM). Every limit ends in ``ConnectionEnded``; memory does not grow.
- **Cheap response heads**: HPACK as nginx encodes it (static-table indexes and literals without
  indexing, no Huffman), so a field's bytes never depend on the connection and each field is
  encoded once per process (``_Encoder``); HTTP/1 field lines become h2 fields once each
  (``response_fields``). h2's outbound normalisation and validation are off: these guarantee it.
- **Flow control tied to the other side's pace**: request-body bytes are acknowledged to the client
  only when the exchange says they were consumed upstream (``consumed``), and response bytes beyond
  the client's window wait in a per-stream queue; ``send_body`` returns False while anything waits,
  so the exchange stops reading its upstream until ``StreamWritable``.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any

import h2.config
import h2.connection
import h2.errors
import h2.events
import h2.exceptions
import h2.settings
import hpack
from hyperframe.frame import DataFrame, Frame, GoAwayFrame

MAX_CONCURRENT_STREAMS = 100  # Go's http2 server default
MAX_HEADER_LIST_SIZE = 64 * 1024  # the HTTP/1 head limit, for the same request
INITIAL_WINDOW_SIZE = 256 * 1024  # per stream: how much request body a client may send ahead
# The connection's window: what all streams together may send ahead. Larger than one stream's, so a
# stream whose upstream is slow (its bytes not yet acknowledged) does not stop the others.
CONNECTION_WINDOW_SIZE = 16 * INITIAL_WINDOW_SIZE
RAPID_RESET_FLOOR = 200  # resets a connection may always make
CONTROL_FRAME_BURST = 200  # SETTINGS + PING frames allowed in a burst...
CONTROL_FRAMES_PER_SECOND = 50.0  # ...and refilled at this rate

# Hop-by-hop / connection-specific response fields that HTTP/2 forbids (RFC 9113 §8.2.2).
_CONNECTION_SPECIFIC = frozenset(
    {b"connection", b"keep-alive", b"proxy-connection", b"transfer-encoding", b"upgrade", b"te"}
)


@dataclass(slots=True)
class StreamHead:
    """A request's head, in HTTP/1 terms: ``headers`` carries ``host`` and no pseudo-headers."""

    stream_id: int
    method: bytes
    target: bytes
    scheme: bytes
    host: bytes
    headers: list[tuple[bytes, bytes]]
    end_stream: bool
    content_length: bytes = b""  # the (one, decimal) content-length field's value; b"": none
    expect_continue: bool = False  # ``expect: 100-continue``


@dataclass(slots=True)
class StreamData:
    stream_id: int
    data: bytes
    flow_length: int  # what to pass to ``consumed`` once the bytes went upstream (padding included)


@dataclass(slots=True)
class StreamEnd:
    stream_id: int
    # the request's trailer fields (checked by ``trailer_problem``), when its end came with them
    trailers: list[tuple[bytes, bytes]] | None = None


@dataclass(slots=True)
class StreamReset:
    """The client cancelled the stream (or it failed validation): its exchange is cancelled (499)."""

    stream_id: int
    error_code: int


@dataclass(slots=True)
class StreamWritable:
    """The client's window opened and everything queued for this stream went out."""

    stream_id: int


@dataclass(slots=True)
class ConnectionEnded:
    """The connection is over: the peer sent GOAWAY, broke the protocol, or crossed a limit."""

    reason: str
    error_code: int


H2Event = StreamHead | StreamData | StreamEnd | StreamReset | StreamWritable | ConnectionEnded


class _RateLimit:
    """A token bucket over the given clock."""

    __slots__ = ("_clock", "_rate", "_stamp", "_tokens", "burst")

    def __init__(self, *, burst: int, rate: float, clock: Callable[[], float]) -> None:
        self.burst = burst
        self._rate = rate
        self._clock = clock
        self._tokens = float(burst)
        self._stamp = clock()

    def take(self, n: int = 1) -> bool:
        now = self._clock()
        self._tokens = min(float(self.burst), self._tokens + (now - self._stamp) * self._rate)
        self._stamp = now
        self._tokens -= n
        return self._tokens >= 0


class H2Session:
    """The server side of one HTTP/2 connection."""

    def __init__(
        self,
        *,
        clock: Callable[[], float],
        max_concurrent_streams: int = MAX_CONCURRENT_STREAMS,
        max_header_list_size: int = MAX_HEADER_LIST_SIZE,
    ) -> None:
        # Outbound heads are made here from parsed, validated upstream fields (names lower-cased,
        # connection-specific ones dropped): h2's own outbound checks would only repeat that.
        config = h2.config.H2Configuration(
            client_side=False,
            header_encoding=None,
            validate_outbound_headers=False,
            normalize_outbound_headers=False,
            validate_inbound_headers=False,  # request_head() validates, as stream errors
            normalize_inbound_headers=False,  # request_head() joins split cookies itself
        )
        self._conn = _Connection(config=config)
        self._conn.encoder = _Encoder()
        self._conn.local_settings = h2.settings.Settings(
            client=False,
            initial_values={
                h2.settings.SettingCodes.MAX_CONCURRENT_STREAMS: max_concurrent_streams,
                h2.settings.SettingCodes.MAX_HEADER_LIST_SIZE: max_header_list_size,
                h2.settings.SettingCodes.INITIAL_WINDOW_SIZE: INITIAL_WINDOW_SIZE,
                h2.settings.SettingCodes.ENABLE_PUSH: 0,
            },
        )
        self._pending: dict[int, list[tuple[memoryview, bool]]] = {}
        # response trailer fields waiting behind the stream's queued DATA (``send_trailers``)
        self._pending_trailers: dict[int, list[tuple[bytes, bytes]]] = {}
        # request trailer fields received, until the StreamEnded h2 reports right after them
        self._trailers: dict[int, list[tuple[bytes, bytes]]] = {}
        self._writable: list[StreamWritable] = []  # made by the current event, handed out after it
        self._control = _RateLimit(burst=CONTROL_FRAME_BURST, rate=CONTROL_FRAMES_PER_SECOND, clock=clock)
        self.streams_opened = 0
        self.resets_by_peer = 0
        self.ended: ConnectionEnded | None = None
        self._goaway: bytes = b""  # a graceful GOAWAY waiting to be written
        self._last_stream_id: int | None = None  # set by a graceful GOAWAY: no streams past it

    # -- input -------------------------------------------------------------------------------

    def initiate(self) -> None:
        """Queue the server preface (our SETTINGS and the connection window)."""
        self._conn.initiate_connection()
        self._conn.increment_flow_control_window(
            CONNECTION_WINDOW_SIZE - self._conn.inbound_flow_control_window
        )

    def receive_data(self, data: bytes) -> list[H2Event]:
        if self.ended is not None:
            return []
        try:
            raw = self._conn.receive_data(data)
        except h2.exceptions.ProtocolError as exc:
            return [self._end(f"protocol error: {exc}", _error_code(exc))]
        events: list[H2Event] = []
        for event in raw:
            translated = self._translate(event)
            if translated is not None:
                events.append(translated)
            if self._writable:
                events += self._writable
                self._writable = []
            if self.ended is not None:
                events.append(self.ended)
                break
        return events

    def _translate(self, event: h2.events.Event) -> H2Event | None:
        if isinstance(event, h2.events.RequestReceived):
            self.streams_opened += 1
            if self._last_stream_id is not None and (event.stream_id or 0) > self._last_stream_id:
                self._refuse(event.stream_id or 0, h2.errors.ErrorCodes.REFUSED_STREAM)
                return None
            return self._request(event)
        if isinstance(event, h2.events.DataReceived):
            assert event.stream_id is not None and event.data is not None
            return StreamData(event.stream_id, event.data, event.flow_controlled_length or 0)
        if isinstance(event, h2.events.StreamEnded):
            assert event.stream_id is not None
            if self._trailers:
                return StreamEnd(event.stream_id, self._trailers.pop(event.stream_id, None))
            return StreamEnd(event.stream_id)
        if isinstance(event, h2.events.StreamReset):
            assert event.stream_id is not None
            self._forget(event.stream_id)
            if event.remote_reset:
                self.resets_by_peer += 1
                if self.resets_by_peer > RAPID_RESET_FLOOR and self.resets_by_peer * 2 > self.streams_opened:
                    self._end("rapid reset: the client cancels most streams it opens", _CALM)
            return StreamReset(event.stream_id, int(event.error_code or 0))
        if isinstance(event, h2.events.WindowUpdated):
            self._window_opened(event.stream_id or 0)
            return None
        if isinstance(event, h2.events.RemoteSettingsChanged | h2.events.PingReceived):
            if not self._control.take():
                self._end("SETTINGS/PING flood", _CALM)
            elif self._pending and isinstance(event, h2.events.RemoteSettingsChanged):
                self._window_opened(0)  # a larger SETTINGS_INITIAL_WINDOW_SIZE opens every stream
            return None
        if isinstance(event, h2.events.ConnectionTerminated):
            self.ended = ConnectionEnded("the client sent GOAWAY", int(event.error_code or 0))
            return None
        if isinstance(event, h2.events.TrailersReceived):
            return self._request_trailers(event)
        return None

    def _request_trailers(self, event: h2.events.TrailersReceived) -> StreamReset | None:
        """Request trailer fields ride on the stream's StreamEnd (h2 reports it next: trailers
        carry END_STREAM); malformed ones are a stream error, as a malformed head."""
        sid = event.stream_id
        assert sid is not None and event.headers is not None
        fields = list(event.headers)  # bytes (header_encoding=None)
        if trailer_problem(fields):
            self._refuse(sid)
            self._forget(sid)
            return StreamReset(sid, int(h2.errors.ErrorCodes.PROTOCOL_ERROR))
        self._trailers[sid] = fields
        return None

    def _forget(self, stream_id: int) -> None:
        """What waits for a stream that was reset."""
        self._pending.pop(stream_id, None)
        if self._pending_trailers:
            self._pending_trailers.pop(stream_id, None)
        if self._trailers:
            self._trailers.pop(stream_id, None)

    def _request(self, event: h2.events.RequestReceived) -> StreamHead | None:
        assert event.stream_id is not None and event.headers is not None
        head = request_head(
            event.stream_id,
            event.headers,  # bytes (header_encoding=None)
            end_stream=event.stream_ended is not None,
        )
        if head is None:
            self._refuse(event.stream_id)  # a stream error: the connection and its other streams go on
        return head

    def _refuse(self, stream_id: int, code: int = h2.errors.ErrorCodes.PROTOCOL_ERROR) -> None:
        self._conn.reset_stream(stream_id, code)

    def _window_opened(self, stream_id: int) -> None:
        """Flush what waited for the window: one stream's, or (the connection's window, or a new
        initial window in SETTINGS) every stream's; each stream whose queue emptied is writable."""
        ids = list(self._pending) if stream_id == 0 else [stream_id]
        for sid in ids:
            if sid in self._pending and self._flush(sid):
                self._writable.append(StreamWritable(sid))

    def _end(self, reason: str, code: int) -> ConnectionEnded:
        if self.ended is None:
            self.ended = ConnectionEnded(reason, code)
            if self._conn.state_machine.state is not h2.connection.ConnectionState.CLOSED:
                self._conn.close_connection(error_code=code)  # (h2 sent its own on a protocol error)
        return self.ended

    # -- output ------------------------------------------------------------------------------

    def data_to_send(self) -> bytes:
        data = self._conn.data_to_send()
        if self._goaway:
            data, self._goaway = self._goaway + data, b""
        return data

    def send_head(
        self, stream_id: int, status: int, headers: Iterable[tuple[bytes, bytes]], *, end: bool
    ) -> None:
        fields = [(b":status", b"%d" % status)]
        fields += [(n.lower(), v) for n, v in headers if n.lower() not in _CONNECTION_SPECIFIC]
        self._send_headers(stream_id, fields, end)

    def send_head_lines(self, stream_id: int, status: int, lines: list[bytes], *, end: bool) -> None:
        """A response head given as HTTP/1 field lines (``Name: value``), the shape the exchange's
        header rules produce: translated to HTTP/2 fields in one pass."""
        self._send_headers(stream_id, response_fields(status, lines), end)

    def _send_headers(self, stream_id: int, fields: list[tuple[bytes, bytes]], end: bool) -> None:
        if self.ended is not None:
            return  # the connection is over: nothing more may be sent
        try:
            self._conn.send_headers(stream_id, fields, end_stream=end)
        except _STREAM_GONE:
            pass  # the client reset the stream (read with its request): its StreamReset follows

    def send_body(self, stream_id: int, data: bytes, *, end: bool = False) -> bool:
        """Send what the client's window allows, queue the rest; True when nothing waits (or the
        stream or the connection is gone: the bytes are dropped)."""
        if self.ended is not None:
            return True
        try:
            if stream_id not in self._pending:  # nothing queued before it: a piece that fits goes as it is
                conn = self._conn
                if len(data) <= min(conn.local_flow_control_window(stream_id), conn.max_outbound_frame_size):
                    conn.send_data(stream_id, data, end_stream=end)
                    return True
            queue = self._pending.setdefault(stream_id, [])
            queue.append((memoryview(data), end))
            return self._flush(stream_id)
        except _STREAM_GONE:
            self._pending.pop(stream_id, None)
            return True

    def _flush(self, stream_id: int) -> bool:
        queue = self._pending.get(stream_id)
        while queue:
            view, end = queue[0]
            window = min(self._conn.local_flow_control_window(stream_id), self._conn.max_outbound_frame_size)
            if window <= 0 and len(view):
                return False
            piece, rest = view[:window], view[window:]
            self._conn.send_data(stream_id, piece, end_stream=end and not len(rest))
            if len(rest):
                queue[0] = (rest, end)
            else:
                queue.pop(0)
        self._pending.pop(stream_id, None)
        if self._pending_trailers:
            trailers = self._pending_trailers.pop(stream_id, None)
            if trailers is not None:
                self._send_headers(stream_id, trailers, True)
        return True

    def send_trailers(self, stream_id: int, trailers: list[tuple[bytes, bytes]]) -> bool:
        """End the stream with trailer fields (a HEADERS frame with END_STREAM), after its DATA:
        at once, or once the DATA still queued for the client's window went out. Names are
        lower-cased here; the exchange left out the fields that may not be trailers (connection-
        specific ones among them) and HTTP/1 parsers deliver no CR, LF or NUL, nor a ``:`` name.
        True when sent now, False when they wait behind queued DATA (as ``send_body``)."""
        fields = [(name.lower(), value) for name, value in trailers]
        if stream_id in self._pending:
            self._pending_trailers[stream_id] = fields
            return False
        self._send_headers(stream_id, fields, True)
        return True

    def consumed(self, stream_id: int, flow_length: int) -> None:
        """Request-body bytes went upstream: let the client send that much more."""
        if flow_length and self.ended is None:
            try:
                self._conn.acknowledge_received_data(flow_length, stream_id)
            except h2.exceptions.StreamClosedError:
                pass

    def reset(self, stream_id: int, *, code: int = h2.errors.ErrorCodes.CANCEL) -> None:
        self._forget(stream_id)
        if self.ended is not None:
            return  # the connection is over (h2 refuses any frame once it is closed)
        try:
            self._conn.reset_stream(stream_id, code)
        except h2.exceptions.StreamClosedError:
            pass

    def goaway(self) -> None:
        """Graceful shutdown: no new streams past the last one seen; those in flight may finish.

        ``h2``'s ``close_connection`` closes its state machine at once (nothing more may be sent), so
        the graceful GOAWAY frame is written by us and the state machine stays open for the streams
        in flight; the connection layer closes once they are done.
        """
        if self.ended is None and self._last_stream_id is None:
            self._last_stream_id = self._conn.highest_inbound_stream_id
            frame = GoAwayFrame(stream_id=0)
            frame.last_stream_id = self._last_stream_id
            frame.error_code = 0
            self._goaway = frame.serialize()

    def queued(self, stream_id: int) -> bool:
        """Response bytes of this stream still wait for the client's window."""
        return stream_id in self._pending

    def queued_bytes(self, stream_id: int) -> int:
        """How many response bytes of this stream wait for the client's window."""
        return sum(len(view) for view, _ in self._pending.get(stream_id, ()))

    @property
    def open_streams(self) -> int:
        return int(self._conn.open_inbound_streams)


_CALM = int(h2.errors.ErrorCodes.ENHANCE_YOUR_CALM)
# A response for a stream h2 no longer writes: reset by the client in the same read as its request
# (StreamClosedError, or StreamIDTooLowError once h2 forgot it), before the stream heard of it.
_STREAM_GONE = (h2.exceptions.StreamClosedError, h2.exceptions.StreamIDTooLowError)


class _Connection(h2.connection.H2Connection):
    """h2's connection with one change: DATA that disagrees with the request's ``content-length``
    is a stream error (RFC 9113 §8.1.1: a malformed request is a stream error), not the connection
    error h2 makes it, so the client's other streams go on. The frame's bytes are acknowledged (no
    window leaks), the stream is reset with PROTOCOL_ERROR and reported as reset."""

    def _receive_data_frame(self, frame: DataFrame) -> tuple[list[Frame], list[h2.events.Event]]:
        try:
            return super()._receive_data_frame(frame)
        except h2.exceptions.InvalidBodyLengthError:
            stream_id = frame.stream_id
            self.acknowledge_received_data(frame.flow_controlled_length, stream_id)
            self.reset_stream(stream_id, h2.errors.ErrorCodes.PROTOCOL_ERROR)
            code = h2.errors.ErrorCodes.PROTOCOL_ERROR
            return [], [h2.events.StreamReset(stream_id=stream_id, error_code=code, remote_reset=False)]


class _Encoder(hpack.Encoder):
    """HPACK for response heads, as nginx does it: static-table indexes and literals *without
    indexing*, no Huffman. Nothing enters the dynamic table, so a field always encodes to the same
    bytes and each is encoded once per process (``_ENCODED``), not per response: the pure-Python
    table search, integer and Huffman coding cost more CPU per response than the bytes they save.
    The peer's table size changes are still signalled, as RFC 7541 §4.2 requires.
    """

    def encode(self, headers: Any, huffman: bool = False) -> bytes:
        block = []
        if self.header_table.resized:
            block.append(self._encode_table_size_change())
            self.header_table.resized = False
        encoded = _ENCODED
        for field in headers:
            piece = encoded.get(field)
            if piece is None:
                piece = self._field(field)
                if len(field[1]) <= ENCODED_VALUE_KEPT:  # (a request ID, a long cookie: once each)
                    if len(encoded) >= ENCODED_FIELDS_KEPT:
                        encoded.clear()
                    encoded[field] = piece
            block.append(piece)
        return b"".join(block)

    def _field(self, field: tuple[bytes, bytes]) -> bytes:
        name, value = field
        match = self.header_table.search(name, value)  # the static table: the dynamic one stays empty
        if match is None:
            return self._encode_literal(name, value, hpack.hpack.INDEX_NONE)
        index, _, perfect = match
        if perfect is not None:
            return self._encode_indexed(index)
        return self._encode_indexed_literal(index, value, hpack.hpack.INDEX_NONE)


ENCODED_FIELDS_KEPT = 4096  # encoded response fields remembered (then forgotten at once, and refilled)
ENCODED_VALUE_KEPT = 256  # longer values are encoded each time (the memo stays ~1 MiB at most)
_ENCODED: dict[tuple[bytes, bytes], bytes] = {}


# Request validation (h2's own inbound validation is off: it makes every bad field a connection
# error, and costs more than this single pass). RFC 9113 §8.2: lower-case token names, no NUL / CR /
# LF and no surrounding whitespace in values, no connection-specific fields, ``te`` only "trailers";
# §8.3: pseudo-fields first, each once, the request ones only.
_NAME = re.compile(rb"[!#$%&'*+\-.^_`|~0-9a-z]+\Z")
_BAD_VALUE = re.compile(rb"[\x00\r\n]|\A[ \t]|[ \t]\Z")
_CONNECTION_REQUEST_FIELDS = frozenset(
    {b"connection", b"keep-alive", b"proxy-connection", b"transfer-encoding", b"upgrade"}
)
_PSEUDO = frozenset({b":method", b":path", b":scheme", b":authority"})


def request_head(
    stream_id: int, fields: Iterable[tuple[bytes, bytes]], *, end_stream: bool
) -> StreamHead | None:
    """An HTTP/2 request's fields as an HTTP/1 head (``:authority`` as ``host``, cookies joined), or
    None when the request is malformed: the caller resets the stream."""
    pseudo: dict[bytes, bytes] = {}
    host = length = b""
    expect = False
    cookies: list[bytes] = []
    headers: list[tuple[bytes, bytes]] = []
    for name, value in fields:
        if _BAD_VALUE.search(value):
            return None
        if name[:1] == b":":
            if headers or cookies or host or name not in _PSEUDO or name in pseudo:
                return None  # after a regular field, unknown (:protocol, :status), or repeated
            pseudo[name] = value
            continue
        if not _NAME.match(name) or name in _CONNECTION_REQUEST_FIELDS:
            return None
        if name == b"cookie":
            cookies.append(value)
        elif name == b"host":
            if host:
                return None
            host = value
        elif name == b"content-length":
            if not value.isdigit() or (length and value != length):
                return None  # one decimal length, or none
            if not length:
                length = value
                headers.append((name, value))
        elif name == b"te" and value != b"trailers":
            return None
        else:
            if name == b"expect":
                expect = expect or value.lower() == b"100-continue"
            headers.append((name, value))
    head = _head(stream_id, pseudo, host, headers, cookies, end_stream)
    if head is not None:
        head.content_length = length
        head.expect_continue = expect
    return head


def trailer_problem(fields: Iterable[tuple[bytes, bytes]]) -> bool:
    """Whether request trailer fields are malformed (RFC 9113 §8.1, §8.2): pseudo-fields, names
    that are not lower-case tokens, NUL / CR / LF or surrounding whitespace in values. Fields that
    are well formed but may not be trailers are left out later (``headers.trailer_fields``)."""
    for name, value in fields:
        if not _NAME.match(name) or _BAD_VALUE.search(value):
            return True
    return False


def _head(
    stream_id: int,
    pseudo: dict[bytes, bytes],
    host: bytes,
    headers: list[tuple[bytes, bytes]],
    cookies: list[bytes],
    end_stream: bool,
) -> StreamHead | None:
    method = pseudo.get(b":method", b"")
    target = pseudo.get(b":path", b"")
    authority = pseudo.get(b":authority", b"")
    if authority and host and authority != host:
        return None  # two different hosts: which one would the target see?
    host = authority or host
    if not method or method == b"CONNECT" or not target or not pseudo.get(b":scheme") or not host:
        return None
    headers.insert(0, (b"host", host))
    if cookies:
        headers.append((b"cookie", b"; ".join(cookies)))
    return StreamHead(
        stream_id=stream_id,
        method=method,
        target=target,
        scheme=pseudo[b":scheme"],
        host=host,
        headers=headers,
        end_stream=end_stream,
    )


_STATUS = {code: b"%d" % code for code in range(100, 600)}


def response_fields(status: int, lines: list[bytes]) -> list[tuple[bytes, bytes]]:
    """A response head as HTTP/2 fields: ``:status``, then each ``Name: value`` line with its name
    lower-cased; connection-specific fields are dropped (RFC 9113 §8.2.2). h2's own outbound
    normalisation and validation are off: this is where those guarantees come from. Lines repeat
    from response to response (``Server``, ``Content-Type``, ...): each short one is translated
    once (``_FIELDS``), and the same tuple then finds its HPACK bytes in ``_ENCODED`` quickly."""
    fields = [(b":status", _STATUS.get(status) or b"%d" % status)]
    append = fields.append
    known = _FIELDS
    for line in lines:
        field = known.get(line, _UNKNOWN)
        if field is _UNKNOWN:
            field = _field(line)
            if len(line) <= ENCODED_VALUE_KEPT:
                if len(known) >= ENCODED_FIELDS_KEPT:
                    known.clear()
                known[line] = field
        if field is not None:
            append(field)
    return fields


def _field(line: bytes) -> tuple[bytes, bytes] | None:
    colon = line.find(b":")
    if colon <= 0:
        return None
    name = line[:colon].lower()
    if name in _CONNECTION_SPECIFIC:
        return None
    return (name, line[colon + 1 :].strip())


_UNKNOWN = (b"", b"")  # (a sentinel, by identity: not yet in _FIELDS)
_FIELDS: dict[bytes, tuple[bytes, bytes] | None] = {}


def _error_code(exc: h2.exceptions.ProtocolError) -> int:
    code = getattr(exc, "error_code", h2.errors.ErrorCodes.PROTOCOL_ERROR)
    return int(code)
