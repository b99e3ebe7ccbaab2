"""The h11 parser backend: strict, pure Python, slower than httptools.

h11 is a full client/server state machine, so this module drives it around what the proxy needs:

* requests: one ``h11.Connection(SERVER)`` per request. After a request's EndOfMessage the bytes
  h11 has not consumed yet (``trailing_data``) go to a fresh connection, so pipelined requests come
  out without ever sending a response through h11, and h11's own (HTTP/1.0-unfriendly) keep-alive
  rules do not get in the way.
* responses: one ``h11.Connection(CLIENT)`` per expected response, on which a synthetic request with
  the announced method (and upgrade headers) has been sent, so HEAD and 101 semantics are right.

On top of h11 the same rules as the httptools backend apply, so both produce the same events:
only the methods llhttp knows, only HTTP/1.0 and 1.1, no ``Transfer-Encoding`` together with
``Content-Length``, a single ``Host`` header, no ``CONNECT``, no body on an upgrade request, keep-alive
as llhttp computes it (HTTP/1.0 with ``Connection: keep-alive`` is kept alive), informational
responses limited to 100-103, and the head size limit counted on the request-target/reason plus
header names and values.
"""

from __future__ import annotations

import re

import h11

from proxy.http.parser import (
    END_OF_MESSAGE,
    UNKNOWN_LENGTH,
    Data,
    Headers,
    ParseError,
    RequestEvent,
    RequestHead,
    ResponseEvent,
    ResponseHead,
    TunnelData,
)

__all__ = ["H11RequestParser", "H11ResponseParser"]

_PARSE = 0
_TUNNEL = 1
_DONE = 2
_ERROR = 3

_VERSIONS = (b"1.1", b"1.0")

# The request methods llhttp accepts for HTTP/1.x (CONNECT is rejected separately).
_METHODS = frozenset(
    b"DELETE GET HEAD POST PUT CONNECT OPTIONS TRACE COPY LOCK MKCOL MOVE PROPFIND PROPPATCH SEARCH "
    b"UNLOCK BIND REBIND UNBIND ACL REPORT MKACTIVITY CHECKOUT MERGE M-SEARCH NOTIFY SUBSCRIBE "
    b"UNSUBSCRIBE PATCH PURGE MKCALENDAR LINK UNLINK SOURCE PRI QUERY".split()
)


def _error(exc: h11.RemoteProtocolError) -> ParseError:
    return ParseError(431 if exc.error_status_hint == 431 else 400, str(exc))


def _fields_size(headers: Headers) -> int:
    size = 0
    for name, value in headers:
        size += len(name) + len(value)
    return size


class _Fields:
    """What the framing and connection rules need from a header section."""

    __slots__ = ("cl", "expect", "hosts", "te", "tokens", "upgrade_header")

    def __init__(self, headers: Headers) -> None:
        self.hosts = 0
        self.cl: bytes | None = None
        self.te: bytes | None = None
        self.expect: bytes | None = None
        self.tokens: set[bytes] = set()
        self.upgrade_header = False
        for name, value in headers:
            lname = name.lower()
            if lname == b"host":
                self.hosts += 1
            elif lname == b"content-length":
                self.cl = value
            elif lname == b"transfer-encoding":
                self.te = value
            elif lname == b"expect":
                self.expect = value
            elif lname == b"connection":
                for token in value.split(b","):
                    self.tokens.add(token.strip().lower())
            elif lname == b"upgrade":
                self.upgrade_header = True

    def keep_alive(self, version: bytes) -> bool:
        # llhttp_should_keep_alive: HTTP/1.1 unless "close"; HTTP/1.0 only with "keep-alive"
        if version == b"1.1":
            return b"close" not in self.tokens
        return b"keep-alive" in self.tokens


_FIELD_CTL = re.compile(rb"[\x00-\x08\x0b\x0c\x0e-\x1f\x7f]")
_ABSOLUTE_FORM = re.compile(rb"[A-Za-z]+://")


def _raw_head_problem(raw: bytes) -> str | None:
    """What llhttp rejects in a head that h11 lets through."""
    if raw.count(b"\n") != raw.count(b"\r\n"):
        return "line not ended by CRLF"
    if b"\n " in raw or b"\n\t" in raw:
        return "obsolete line folding"
    if _FIELD_CTL.search(raw, raw.find(b"\n") + 1):
        return "invalid header value character"
    return None


def _plausible_request_start(pending: bytes) -> bool:
    """Fail garbage early, as llhttp does, instead of waiting for a complete head."""
    sp = pending.find(b" ", 0, 16)
    if sp >= 0:
        return pending[:sp] in _METHODS
    if len(pending) >= 16:
        return False
    return any(method.startswith(pending) for method in _METHODS)


def _strip_blank_lines(data: bytes) -> bytes:
    # llhttp skips empty lines before a request line (RFC 9112 section 2.2); h11 does not.
    if data[:1] == b"\r" or data[:1] == b"\n":
        return data.lstrip(b"\r\n")
    return data


class H11RequestParser:
    """Parses the requests a client sends (pipelined ones included) with h11."""

    __slots__ = ("_conn", "_keep_alive", "_max_head_size", "_mode", "_upgrade")

    def __init__(self, *, max_head_size: int) -> None:
        self._max_head_size = max_head_size
        self._conn = self._new_conn()
        self._mode = _PARSE
        self._upgrade = False
        self._keep_alive = True

    def _new_conn(self) -> h11.Connection:
        return h11.Connection(h11.SERVER, max_incomplete_event_size=self._max_head_size)

    def _idle(self) -> bool:
        conn = self._conn
        return conn.their_state is h11.IDLE and not conn.trailing_data[0]

    def feed(self, data: bytes) -> list[RequestEvent]:
        mode = self._mode
        if mode != _PARSE:
            if mode == _TUNNEL and data:
                return [TunnelData(bytes(data))]
            return []
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
        if self._mode != _PARSE:
            return []
        self._mode = _DONE
        if self._idle():
            return []
        return [ParseError(400, "connection closed before the request was complete")]

    def _fail(self, events: list[RequestEvent], error: ParseError) -> None:
        self._mode = _ERROR
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
                return None
            if isinstance(event, h11.Request):
                problem = _raw_head_problem(pending[: len(pending) - len(conn.trailing_data[0])])
                if problem is not None:
                    return self._fail(events, ParseError(400, problem))
                head = self._head(event)
                if isinstance(head, ParseError):
                    return self._fail(events, head)
                events.append(head)
            elif isinstance(event, h11.Data):
                events.append(Data(bytes(event.data)))
            elif isinstance(event, h11.EndOfMessage):
                if _fields_size(event.headers.raw_items()) > self._max_head_size:
                    return self._fail(events, ParseError(431, "trailer section too large"))
                events.append(END_OF_MESSAGE)
                rest = conn.trailing_data[0]
                if self._upgrade:
                    self._mode = _TUNNEL
                    if rest:
                        events.append(TunnelData(rest))
                    return None
                if not self._keep_alive:
                    self._mode = _DONE
                    return None
                conn = self._conn = self._new_conn()
                rest = _strip_blank_lines(rest)
                if not rest:
                    return None
                conn.receive_data(rest)
            else:  # ConnectionClosed
                return None

    def _head(self, event: h11.Request) -> RequestHead | ParseError:
        headers: Headers = list(event.headers.raw_items())
        if len(event.target) + _fields_size(headers) > self._max_head_size:
            return ParseError(431, "request header fields too large")
        method = bytes(event.method)
        if method not in _METHODS:
            return ParseError(400, "invalid method")
        target = bytes(event.target)
        if target[:1] != b"/" and target[:1] != b"*" and not _ABSOLUTE_FORM.match(target):
            return ParseError(400, "invalid request-target")
        version = bytes(event.http_version)
        if version not in _VERSIONS:
            return ParseError(400, "unsupported HTTP version")
        f = _Fields(headers)
        if f.hosts != 1 and (f.hosts or version == b"1.1"):
            return ParseError(400, "missing Host header" if not f.hosts else "too many Host headers")
        if f.te is not None:
            if f.cl is not None:
                return ParseError(400, "Content-Length together with Transfer-Encoding")
            content_length = UNKNOWN_LENGTH
        elif f.cl is not None:
            content_length = int(f.cl)
        else:
            content_length = 0
        upgrade = method == b"CONNECT" or (f.upgrade_header and b"upgrade" in f.tokens)
        if upgrade:
            if method == b"CONNECT":
                return ParseError(400, "CONNECT is not supported")
            if content_length:
                return ParseError(400, "upgrade request with a body")
        keep_alive = f.keep_alive(version)
        self._upgrade = upgrade
        self._keep_alive = keep_alive
        expect = f.expect
        return RequestHead(
            method=method,
            target=target,
            version=version,
            headers=headers,
            keep_alive=keep_alive,
            upgrade=upgrade,
            expect_continue=expect is not None and expect.lower() == b"100-continue",
            content_length=content_length,
            chunked=f.te is not None,
        )


class H11ResponseParser:
    """Parses the responses to the requests we send, one at a time, with h11."""

    __slots__ = (
        "_conn",
        "_keep_alive",
        "_max_head_size",
        "_method",
        "_mode",
        "_next",
        "_started",
        "_upgrade",
    )

    def __init__(self, *, max_head_size: int) -> None:
        self._max_head_size = max_head_size
        self._conn: h11.Connection | None = None  # created when the response's first bytes arrive
        self._mode = _PARSE
        self._method = b"GET"
        self._upgrade = False
        self._next: tuple[bytes, bool] | None = None
        self._started = False  # bytes of the current response were received
        self._keep_alive = True

    def expect_response(self, *, method: bytes, upgrade: bool) -> None:
        if not self._started:
            self._method = method
            self._upgrade = upgrade
            self._next = None
            self._conn = None
        else:
            self._next = (method, upgrade)

    def feed(self, data: bytes) -> list[ResponseEvent]:
        mode = self._mode
        if mode != _PARSE:
            if mode == _TUNNEL and data:
                return [TunnelData(bytes(data))]
            return []
        events: list[ResponseEvent] = []
        if data:
            self._receive(bytes(data), events)
        return events

    def feed_eof(self) -> list[ResponseEvent]:
        if self._mode != _PARSE:
            return []
        conn = self._conn
        events: list[ResponseEvent] = []
        if conn is not None and self._started:
            conn.receive_data(b"")
            self._drain(conn, events)  # ends a close-delimited body, or fails
        if self._mode == _PARSE:
            self._mode = _DONE
        return events

    def _new_conn(self) -> h11.Connection:
        conn = h11.Connection(h11.CLIENT, max_incomplete_event_size=self._max_head_size)
        headers = [(b"Host", b"upstream")]
        if self._upgrade:
            headers += [(b"Connection", b"upgrade"), (b"Upgrade", b"upgrade")]
        method = b"HEAD" if self._method == b"HEAD" else b"GET"
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
        self._mode = _ERROR
        events.append(error)

    def _drain(self, conn: h11.Connection, events: list[ResponseEvent]) -> None:
        while True:
            pending = conn.trailing_data[0] if conn.their_state is h11.SEND_RESPONSE else b""
            if pending and not self._keep_alive:
                return self._fail(events, ParseError(400, "data after an interim response that closes"))
            if pending and not b"HTTP/".startswith(pending[:5]):
                return self._fail(events, ParseError(400, "expected HTTP/"))
            try:
                event = conn.next_event()
            except h11.RemoteProtocolError as exc:
                return self._fail(events, _error(exc))
            if event is h11.NEED_DATA or event is h11.PAUSED:
                return None
            if isinstance(event, (h11.InformationalResponse, h11.Response)):
                problem = _raw_head_problem(pending[: len(pending) - len(conn.trailing_data[0])])
                if problem is not None:
                    return self._fail(events, ParseError(400, problem))
                head = self._head(event)
                if isinstance(head, ParseError):
                    return self._fail(events, head)
                events.append(head)
                if head.status == 101:  # no EndOfMessage: the head is followed by the tunnel
                    self._mode = _TUNNEL
                    rest = conn.trailing_data[0]
                    if rest:
                        events.append(TunnelData(rest))
                    return None
                if head.status < 200:
                    events.append(END_OF_MESSAGE)
                    if not head.keep_alive:
                        # llhttp: nothing may follow a message that closes, not even the final one
                        self._keep_alive = False
                else:
                    self._keep_alive = head.keep_alive
            elif isinstance(event, h11.Data):
                events.append(Data(bytes(event.data)))
            elif isinstance(event, h11.EndOfMessage):
                if _fields_size(event.headers.raw_items()) > self._max_head_size:
                    return self._fail(events, ParseError(431, "trailer section too large"))
                events.append(END_OF_MESSAGE)
                rest = conn.trailing_data[0]
                self._conn = None
                self._started = False
                nxt = self._next
                self._method, self._upgrade = nxt if nxt is not None else (b"GET", False)
                self._next = None
                if not self._keep_alive:
                    self._mode = _DONE  # whatever the server sends after it is ignored
                    return None
                rest = _strip_blank_lines(rest)
                if not rest:
                    return None
                conn = self._conn = self._new_conn()
                self._started = True
                conn.receive_data(rest)
            else:  # ConnectionClosed
                return None

    def _head(self, event: h11.InformationalResponse | h11.Response) -> ResponseHead | ParseError:
        headers: Headers = list(event.headers.raw_items())
        reason = bytes(event.reason)
        if len(reason) + _fields_size(headers) > self._max_head_size:
            return ParseError(431, "response header fields too large")
        version = bytes(event.http_version)
        if version not in _VERSIONS:
            return ParseError(400, "unsupported HTTP version")
        f = _Fields(headers)
        if f.te is not None and f.cl is not None:
            return ParseError(400, "Content-Length together with Transfer-Encoding")
        status = event.status_code
        chunked = False
        if status < 200:
            if status == 101:
                if not self._upgrade:
                    return ParseError(400, "101 response to a request that did not ask for an upgrade")
                if not (f.upgrade_header and b"upgrade" in f.tokens):
                    return ParseError(400, "101 response without Connection: upgrade and Upgrade")
                keep_alive = False
            elif status == 100 or status == 102 or status == 103:
                keep_alive = f.keep_alive(version)
            else:
                return ParseError(400, f"unsupported informational status {status}")
            content_length = 0
        elif self._method == b"HEAD" or status == 204 or status == 304:
            content_length = 0
            keep_alive = f.keep_alive(version)
        elif f.te is not None:
            content_length = UNKNOWN_LENGTH
            chunked = True
            keep_alive = f.keep_alive(version)
        elif f.cl is not None:
            content_length = int(f.cl)
            keep_alive = f.keep_alive(version)
        else:  # delimited by the end of the connection
            content_length = UNKNOWN_LENGTH
            keep_alive = False
        return ResponseHead(
            status=status,
            reason=reason,
            version=version,
            headers=headers,
            keep_alive=keep_alive,
            content_length=content_length,
            chunked=chunked,
        )
