"""The h11 parser backend: strict, pure Python, slower than httptools.

h11 is a full client/server state machine, so this module drives it around what the proxy needs:

* requests: one ``h11.Connection(SERVER)`` per request. After a request's EndOfMessage the bytes
  h11 has not consumed yet (``trailing_data``) go to a fresh connection, so pipelined requests come
  out without ever sending a response through h11, and h11's own (HTTP/1.0-unfriendly) keep-alive
  rules do not get in the way.
* responses: one ``h11.Connection(CLIENT)`` per expected response, on which a synthetic request with
  the announced method (and upgrade headers) has been sent, so HEAD and 101 semantics are right.

Heads are judged by ``framing.request_head`` / ``response_head``, as for the httptools backend.
What llhttp rejects and h11 lets through is rejected here too: methods llhttp does not know, bare
LF, obs-fold, CTL bytes in field values, a comma list in ``Content-Length``, an HTTP/0.9 request
line (at once, not when the head is complete). Chunked bodies are read by ``_ChunkedReader``, which
follows llhttp's rules for chunk-size lines (any number of hex digits but no overflow of 64 bits,
llhttp's chunk-extension syntax, no whitespace) and for the trailer section, whose fields it
hands on with the EndOfMessage.
"""

from __future__ import annotations

import re
from typing import Any

import h11
from h11._readers import ChunkedReader

from proxy.http.framing import (
    CONNECTION_FIELDS,
    DONE,
    ERROR,
    METHODS,
    PARSE,
    TUNNEL,
    Fields,
    RequestParserBase,
    ResponseParserBase,
    incomplete_request_problem,
    request_head,
    response_head,
)
from proxy.http.parser import (
    END_OF_MESSAGE,
    Data,
    EndOfMessage,
    Headers,
    ParseError,
    RequestEvent,
    RequestHead,
    ResponseEvent,
    ResponseHead,
    TunnelData,
)

__all__ = ["H11RequestParser", "H11ResponseParser"]


def _error(exc: h11.RemoteProtocolError) -> ParseError:
    return ParseError(431 if exc.error_status_hint == 431 else 400, str(exc))


_FIELD_CTL = re.compile(rb"[\x00-\x08\x0b\x0c\x0e-\x1f\x7f]")
# (searched in the lower-cased head)
_LIST_LENGTH = re.compile(rb"\ncontent-length:[^\r\n]*,")
_TE_TAB = re.compile(rb"\ntransfer-encoding:[^\r\n]*\t *\r")  # llhttp: not chunked

_TOKEN = rb"[-!#$%&'*+.^_`|~0-9a-zA-Z]"
_QUOTED = rb'"(?:[\t !#-\[\]-~\x80-\xff]|\\[\t -~\x80-\xff])*"'
# llhttp's chunk-size line: hex digits, then extensions `;name[=value]` (an empty name with a
# value, or an empty value, are accepted as llhttp does), then CRLF; no whitespace anywhere.
_CHUNK_LINE = re.compile(
    rb"([0-9A-Fa-f]+)(?:;(?:%b+(?:=(?:%b*|%b))?|=(?:%b*|%b)))*\r\n"
    % (_TOKEN, _TOKEN, _QUOTED, _TOKEN, _QUOTED)
)
_TRAILER_LINE = re.compile(rb"(%b+):[ \t]*((?:[^\x00-\x08\x0a-\x1f\x7f])*?)[ \t]*\r\n" % _TOKEN)
_MAX_CHUNK = (1 << 64) - 1


def _raw_head_problem(raw: bytes, *, complete: bool = True) -> str | None:
    """What llhttp rejects in a head that h11 lets through (or, in an incomplete head, waits on)."""
    if not complete and raw[-1:] == b"\r":
        raw = raw[:-1]  # its LF may come next
    crlf = raw.count(b"\r\n")
    if raw.count(b"\r") != crlf or raw.count(b"\n") != crlf:
        return "line not ended by CRLF"
    if raw.find(b"\n ") >= 0 or raw.find(b"\n\t") >= 0:
        return "obsolete line folding"
    if _FIELD_CTL.search(raw, raw.find(b"\n") + 1):
        return "invalid header value character"
    low = raw.lower()
    if low.find(b"\ncontent-length:") >= 0:
        if _LIST_LENGTH.search(low):
            return "invalid Content-Length"
        if low.count(b"\ncontent-length:") > 1:  # h11 merges equal ones; llhttp refuses them
            return "more than one Content-Length"
    if low.find(b"\ntransfer-encoding:") >= 0 and _TE_TAB.search(low):
        return "unsupported Transfer-Encoding"
    return None


def _plausible_request_start(pending: bytes) -> bool:
    """Fail garbage early, as llhttp does, instead of waiting for a complete head."""
    sp = pending.find(b" ", 0, 16)
    if sp >= 0:
        return pending[:sp] in METHODS
    if len(pending) >= 16:
        return False
    return any(method.startswith(pending) for method in METHODS)


_STATUS_TEMPLATE = b"HTTP/0.0 000"  # 0: a digit


def _plausible_status_start(pending: bytes) -> bool:
    """Fail a bad status line at its first wrong byte, as llhttp does, not when the head is complete."""
    for i, c in enumerate(pending[:12]):
        t = _STATUS_TEMPLATE[i]
        if (t == 48 and not 48 <= c <= 57) or (t != 48 and c != t):
            return False
    return len(pending) <= 12 or pending[12] in b" \r"


def _strip_blank_lines(data: bytes) -> bytes:
    # llhttp skips CR and LF bytes before a start line (RFC 9112 section 2.2); h11 does not.
    if data[:1] == b"\r" or data[:1] == b"\n":
        return data.lstrip(b"\r\n")
    return data


class _ChunkedReader:
    """An h11 body reader for chunked bodies with llhttp's rules (h11's own is laxer).

    It takes the place of h11's reader right after the head; h11 calls it with its receive buffer
    and expects Data, EndOfMessage or None (more bytes needed).
    """

    def __init__(self, limit: int) -> None:
        self._limit = limit
        self._left = 0  # bytes of the current chunk's data still to come
        self._crlf = b""  # what is left of the CRLF after a chunk's data
        self._trailers = -1  # bytes of trailer lines read, once in the trailer section
        self._fields: Headers = []  # the trailer fields

    def __call__(self, buf: Any) -> h11.Data | h11.EndOfMessage | None:
        if self._crlf:
            want = self._crlf
            got = buf.maybe_extract_at_most(len(want))
            if got is None:
                return None
            if got != want[: len(got)]:
                raise h11.RemoteProtocolError("chunk data not followed by CRLF")
            self._crlf = want[len(got) :]
            if self._crlf:
                return None
        if self._trailers >= 0:
            return self._trailer(buf)
        if self._left == 0:
            line = buf.maybe_extract_next_line()
            if line is None:
                return None
            match = _CHUNK_LINE.fullmatch(line)
            if match is None or b"\n" in line[:-1]:
                raise h11.RemoteProtocolError(f"invalid chunk-size line {bytes(line[:40])!r}")
            size = int(match[1], 16)
            if size > _MAX_CHUNK:
                raise h11.RemoteProtocolError("chunk size overflow")
            if size == 0:
                self._trailers = 0
                return self._trailer(buf)
            self._left = size
        data = buf.maybe_extract_at_most(self._left)
        if data is None:
            return None
        self._left -= len(data)
        if self._left == 0:
            self._crlf = b"\r\n"
        return h11.Data(data=bytes(data))

    def _trailer(self, buf: Any) -> h11.EndOfMessage | None:
        while True:
            line = buf.maybe_extract_next_line()
            if line is None:
                return None
            if line == b"\r\n":
                return h11.EndOfMessage(headers=self._fields)
            match = _TRAILER_LINE.fullmatch(line)
            if match is None or b"\n" in line[:-1] or b"\r" in line[:-2]:
                raise h11.RemoteProtocolError(f"invalid trailer field {bytes(line[:40])!r}")
            name = match[1].lower()
            if name == b"content-length" or name == b"transfer-encoding":
                raise h11.RemoteProtocolError("framing field in the trailer section")
            if name in CONNECTION_FIELDS:
                raise h11.RemoteProtocolError("connection field in the trailer section")
            self._trailers += len(line)
            if self._trailers > self._limit:
                raise h11.RemoteProtocolError("trailer section too large", error_status_hint=431)
            self._fields.append((bytes(match[1]), bytes(match[2])))

    def read_eof(self) -> h11.EndOfMessage:
        raise h11.RemoteProtocolError("peer closed connection without sending complete chunked body")


def _end(event: h11.EndOfMessage) -> EndOfMessage:
    """Our EndOfMessage for h11's: the shared one, or one with the trailer fields (``_ChunkedReader``)."""
    if not event.headers:
        return END_OF_MESSAGE
    return EndOfMessage(list(event.headers.raw_items()))


def _use_strict_chunks(conn: h11.Connection, limit: int) -> None:
    """Replace h11's reader of a chunked body just announced by the head h11 returned."""
    if isinstance(conn._reader, ChunkedReader):
        conn._reader = _ChunkedReader(limit)


class H11RequestParser(RequestParserBase):
    """Parses the requests a client sends (pipelined ones included) with h11."""

    __slots__ = ("_conn", "_keep_alive", "_upgrading")

    def __init__(self, *, max_head_size: int) -> None:
        super().__init__(max_head_size=max_head_size)
        self._conn = self._new_conn()
        self._upgrading = False
        self._keep_alive = True

    def _new_conn(self) -> h11.Connection:
        return h11.Connection(h11.SERVER, max_incomplete_event_size=self._max_head_size)

    def _idle(self) -> bool:
        conn = self._conn
        return conn.their_state is h11.IDLE and not conn.trailing_data[0]

    def _parse(self, data: bytes) -> list[RequestEvent]:
        data = bytes(data)
        if self._idle():
            data = _strip_blank_lines(data)
        if not data:  # h11 takes b"" as EOF
            return []
        self._conn.receive_data(data)
        events: list[RequestEvent] = []
        self._drain(events)
        return events

    def feed_eof(self) -> list[RequestEvent]:
        if self._mode != PARSE:
            return []
        self._mode = DONE
        if self._idle():
            return []
        return [ParseError(400, "connection closed before the request was complete")]

    def _fail(self, events: list[RequestEvent], error: ParseError) -> None:
        self._mode = ERROR
        events.append(error)

    def _drain(self, events: list[RequestEvent]) -> None:
        conn = self._conn
        while True:
            pending = conn.trailing_data[0] if conn.their_state is h11.IDLE else b""
            if pending and not _plausible_request_start(pending):
                return self._fail(events, ParseError(400, "invalid method"))
            try:
                event = conn.next_event()
            except h11.RemoteProtocolError as exc:
                return self._fail(events, _error(exc))
            if event is h11.NEED_DATA or event is h11.PAUSED:
                if pending:
                    self._check_incomplete(pending, events)
                return None
            if isinstance(event, h11.Request):
                head = self._head(event, pending[: len(pending) - len(conn.trailing_data[0])])
                if isinstance(head, ParseError):
                    return self._fail(events, head)
                events.append(head)
                if head.chunked:
                    _use_strict_chunks(conn, self._max_head_size)
            elif isinstance(event, h11.Data):
                events.append(Data(bytes(event.data)))
            elif isinstance(event, h11.EndOfMessage):
                next_conn = self._end_of_message(events, _end(event))
                if next_conn is None:
                    return None
                conn = next_conn
            else:  # ConnectionClosed
                return None

    def _check_incomplete(self, pending: bytes, events: list[RequestEvent]) -> None:
        """Fail an incomplete head at once where llhttp would (h11 waits for all of it)."""
        problem = incomplete_request_problem(pending)
        if problem is None:
            why = _raw_head_problem(pending, complete=False)
            problem = None if why is None else ParseError(400, why)
        if problem is not None:
            self._fail(events, problem)

    def _end_of_message(self, events: list[RequestEvent], end: EndOfMessage) -> h11.Connection | None:
        """After a request: the connection that parses the next one, if there is one."""
        events.append(end)
        rest = self._conn.trailing_data[0]
        if self._upgrading:
            self._mode = TUNNEL
            if rest:
                events.append(TunnelData(rest))
            return None
        if not self._keep_alive:
            self._mode = DONE
            return None
        conn = self._conn = self._new_conn()
        rest = _strip_blank_lines(rest)
        if not rest:
            return None
        conn.receive_data(rest)
        return conn

    def _head(self, event: h11.Request, raw: bytes) -> RequestHead | ParseError:
        if len(raw) > self._max_head_size:
            return ParseError(431, "request header fields too large")
        problem = _raw_head_problem(raw)
        if problem is not None:
            return ParseError(400, problem)
        method = bytes(event.method)
        if method not in METHODS:
            return ParseError(400, "invalid method")
        headers: Headers = list(event.headers.raw_items())
        head = request_head(
            method=method,
            target=bytes(event.target),
            version=bytes(event.http_version),
            headers=headers,
            fields=Fields.of(headers),
        )
        if isinstance(head, RequestHead):
            self._upgrading = head.upgrade
            self._keep_alive = head.keep_alive
        return head


class H11ResponseParser(ResponseParserBase):
    """Parses the responses to the requests we send, one at a time, with h11."""

    __slots__ = ("_conn", "_keep_alive")

    def __init__(self, *, max_head_size: int) -> None:
        super().__init__(max_head_size=max_head_size)
        self._conn: h11.Connection | None = None  # created when the response's first bytes arrive
        self._keep_alive = True

    def expect_response(self, *, method: bytes, upgrade: bool) -> None:
        if not self._started:
            self._conn = None
        super().expect_response(method=method, upgrade=upgrade)

    def _parse(self, data: bytes) -> list[ResponseEvent]:
        events: list[ResponseEvent] = []
        if data:
            self._receive(bytes(data), events)
        return events

    def feed_eof(self) -> list[ResponseEvent]:
        if self._mode != PARSE:
            return []
        conn = self._conn
        events: list[ResponseEvent] = []
        if conn is not None and self._started:
            conn.receive_data(b"")
            self._drain(conn, events)  # ends a close-delimited body, or fails
        if self._mode == PARSE:
            self._mode = DONE
        return events

    def _new_conn(self) -> h11.Connection:
        conn = h11.Connection(h11.CLIENT, max_incomplete_event_size=self._max_head_size)
        headers = [(b"Host", b"upstream")]
        if self._upgrade:
            headers += [(b"Connection", b"upgrade"), (b"Upgrade", b"upgrade")]
        method = b"HEAD" if self._head_only else b"GET"
        conn.send(h11.Request(method=method, target=b"/", headers=headers))
        conn.send(h11.EndOfMessage())
        return conn

    def _receive(self, data: bytes, events: list[ResponseEvent]) -> None:
        conn = self._conn
        if conn is None:
            self._keep_alive = True
            data = _strip_blank_lines(data)  # llhttp skips empty lines before a status line
            if not data:
                return
            conn = self._conn = self._new_conn()
        self._started = True
        conn.receive_data(data)
        self._drain(conn, events)

    def _fail(self, events: list[ResponseEvent], error: ParseError) -> None:
        self._mode = ERROR
        events.append(error)

    def _drain(self, conn: h11.Connection, events: list[ResponseEvent]) -> None:
        while True:
            pending = conn.trailing_data[0] if conn.their_state is h11.SEND_RESPONSE else b""
            if pending and not self._keep_alive:
                return self._fail(events, ParseError(400, "data after an interim response that closes"))
            if pending and not _plausible_status_start(pending):
                return self._fail(events, ParseError(400, "invalid status line"))
            try:
                event = conn.next_event()
            except h11.RemoteProtocolError as exc:
                return self._fail(events, _error(exc))
            if event is h11.NEED_DATA or event is h11.PAUSED:
                why = _raw_head_problem(pending, complete=False) if pending else None
                if why is not None:
                    self._fail(events, ParseError(400, why))
                return None
            if isinstance(event, (h11.InformationalResponse, h11.Response)):
                head = self._head(event, pending[: len(pending) - len(conn.trailing_data[0])])
                if isinstance(head, ParseError):
                    return self._fail(events, head)
                events.append(head)
                if not self._after_head(conn, head, events):
                    return None
            elif isinstance(event, h11.Data):
                events.append(Data(bytes(event.data)))
            elif isinstance(event, h11.EndOfMessage):
                next_conn = self._end_of_message(events, _end(event))
                if next_conn is None:
                    return None
                conn = next_conn
            else:  # ConnectionClosed
                return None

    def _after_head(self, conn: h11.Connection, head: ResponseHead, events: list[ResponseEvent]) -> bool:
        """Whether parsing goes on after this head (not after a 101: a tunnel follows)."""
        if head.status == 101:  # no EndOfMessage: the head is followed by the tunnel
            self._mode = TUNNEL
            rest = conn.trailing_data[0]
            if rest:
                events.append(TunnelData(rest))
            return False
        if head.status < 200:
            events.append(END_OF_MESSAGE)
            if not head.keep_alive:
                # llhttp: nothing may follow a message that closes, not even the final one
                self._keep_alive = False
        else:
            self._keep_alive = head.keep_alive
            if head.chunked:
                _use_strict_chunks(conn, self._max_head_size)
        return True

    def _end_of_message(self, events: list[ResponseEvent], end: EndOfMessage) -> h11.Connection | None:
        """After a final response: the connection that parses the next one, if bytes are there."""
        events.append(end)
        assert self._conn is not None
        rest = self._conn.trailing_data[0]
        self._conn = None
        self._response_done(self._keep_alive)
        if self._mode != PARSE:
            return None
        rest = _strip_blank_lines(rest)
        if not rest:
            return None
        conn = self._conn = self._new_conn()
        self._started = True
        conn.receive_data(rest)
        return conn

    def _head(self, event: h11.InformationalResponse | h11.Response, raw: bytes) -> ResponseHead | ParseError:
        if len(raw) > self._max_head_size:
            return ParseError(431, "response header fields too large")
        problem = _raw_head_problem(raw)
        if problem is not None:
            return ParseError(400, problem)
        headers: Headers = list(event.headers.raw_items())
        status = event.status_code
        return response_head(
            status=status,
            reason=bytes(event.reason),
            version=bytes(event.http_version),
            headers=headers,
            fields=Fields.of(headers),
            head_only=self._head_only and status >= 200,
            upgrade_asked=self._upgrade,
        )
