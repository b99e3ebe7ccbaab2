"""The httptools (llhttp) parser backend: the fast default.

llhttp does the tokenising and most of the validation in C; the Python side only collects what the
callbacks hand over into lists owned by the parser object and builds one head object per message.
Per message that is a handful of attribute stores, one ``append`` per header and one head object.

What llhttp already rejects (strict mode, no leniencies set): ``Transfer-Encoding`` together with
``Content-Length``, duplicate or non-numeric ``Content-Length``, a request ``Transfer-Encoding``
whose final coding is not chunked, bad chunk sizes, obs-fold, whitespace before the colon, bare LF,
NUL/CTL bytes in values, unknown methods, invalid request-target bytes. What this module adds on
top, to match the h11 backend and Go's net/http: only ``Transfer-Encoding: chunked`` exactly (no
other codings, no repeated header), only HTTP/1.0 and HTTP/1.1, a single ``Host`` header and a
mandatory one for HTTP/1.1, no ``CONNECT``, no body on an upgrade request, and the head size limit.
"""

from __future__ import annotations

from typing import Any

import httptools
from httptools import HttpParserError, HttpParserUpgrade

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

__all__ = ["HttptoolsRequestParser", "HttptoolsResponseParser"]

# parser modes
_PARSE = 0  # parsing HTTP
_TUNNEL = 1  # after an upgrade: bytes pass through as TunnelData
_DONE = 2  # after a message that does not allow another one, or after EOF: bytes are ignored
_ERROR = 3  # after a ParseError: bytes are ignored

# message states
_IDLE = 0  # between messages
_HEAD = 1  # request/status line or header fields being received
_BODY = 2  # head complete, body (or trailers) being received
_SKIP = 3  # response head to a HEAD request delivered; llhttp's idea of the body is ignored

_VERSIONS = {"1.1": b"1.1", "1.0": b"1.0"}

# lengths of the header names the parsers look at
_REQUEST_LENGTHS = frozenset((4, 6, 14, 17))  # host, expect, content-length, transfer-encoding
_RESPONSE_LENGTHS = frozenset((14, 17))  # content-length, transfer-encoding


class _Abort(Exception):
    """Raised from a callback to stop llhttp; the ParseError is stored on the parser."""


def _connection_tokens(headers: Headers) -> set[bytes]:
    tokens: set[bytes] = set()
    for name, value in headers:
        if len(name) == 10 and name.lower() == b"connection":
            for token in value.split(b","):
                tokens.add(token.strip().lower())
    return tokens


def _keep_alive_slow(version: bytes, headers: Headers) -> bool:
    """llhttp_should_keep_alive without the "needs EOF" part (for responses to HEAD)."""
    tokens = _connection_tokens(headers)
    if version == b"1.1":
        return b"close" not in tokens
    return b"keep-alive" in tokens


class _HttptoolsParser:
    """What the request and response parsers share: limits on what llhttp buffers, and errors.

    Subclasses provide ``_start``: the request URL or the response reason phrase collected so far.
    """

    __slots__ = (
        "_began",
        "_body_seen",
        "_chunked",
        "_error",
        "_events",
        "_head_raw",
        "_headers",
        "_max_head_size",
        "_mode",
        "_stall",
        "_state",
        "_te",
    )
    _what = "message"
    _max_head_size: int
    _error: ParseError | None
    _headers: Headers
    _state: int
    _mode: int
    _began: bool
    _head_raw: int
    _chunked: bool
    _body_seen: bool
    _stall: int
    _events: list[Any]
    _feed_len: int
    _te: bytes | None

    def _start(self) -> bytes:
        raise NotImplementedError

    def _fail(self, status: int, message: str) -> _Abort:
        self._error = ParseError(status, message)
        return _Abort(message)

    def _check_trailers(self) -> None:
        trailers = self._headers
        self._headers = []
        size = 0
        for name, value in trailers:
            size += len(name) + len(value)
        if size > self._max_head_size:
            raise self._fail(431, "trailer section too large")

    def _check_head_size(self) -> None:
        """At the end of a head: a head that arrived in one small feed is within the limit."""
        if (not self._began or self._feed_len > self._max_head_size) and (
            self._head_size() > self._max_head_size
        ):
            raise self._fail(431, f"{self._what} header fields too large")

    def _note_te(self, value: bytes) -> bytes:
        """Collect Transfer-Encoding values (lower-cased, as h11 does); returns this one."""
        value = value.lower()
        self._te = value if self._te is None else self._te + b", " + value
        return value

    def _head_size(self) -> int:
        size = len(self._start())
        for name, value in self._headers:
            size += len(name) + len(value)
        return size

    def _check_partial(self, size: int) -> None:
        """Bound what llhttp/httptools buffer for an incomplete head or trailer section."""
        if self._state == _HEAD:
            # Bytes of the head received so far: all of the feeds after the one it started in; of
            # that one, all of it if that is small, else the start line and the fields completed.
            if self._began:
                raw = size if size <= self._max_head_size else self._head_size()
            else:
                raw = self._head_raw + size
            self._head_raw = raw
            if raw > self._max_head_size:
                self._mode = _ERROR
                self._events.append(ParseError(431, f"{self._what} header fields too large"))
        elif self._state == _BODY and self._chunked:
            # chunked body: feeds that carry no body data are chunk framing or trailers
            if self._body_seen:
                self._body_seen = False
                self._stall = 0
            else:
                self._stall += size
                if self._stall > self._max_head_size:
                    self._mode = _ERROR
                    self._events.append(ParseError(431, "chunk framing or trailer section too large"))


class HttptoolsRequestParser(_HttptoolsParser):
    """Parses the requests a client sends (pipelined ones included) with httptools."""

    _what = "request"
    __slots__ = (
        "_cl",
        "_expect",
        "_feed_len",
        "_hosts",
        "_keep_alive",
        "_parser",
        "_url",
    )

    def __init__(self, *, max_head_size: int) -> None:
        self._max_head_size = max_head_size
        self._parser = httptools.HttpRequestParser(self)
        self._events: list[RequestEvent] = []
        self._mode = _PARSE
        self._state = _IDLE
        self._error: ParseError | None = None
        self._began = False  # a message began during the current feed
        self._feed_len = 0
        self._head_raw = 0  # bytes of an incomplete head received in earlier feeds (about)
        self._url = b""
        self._headers: Headers = []
        self._cl: bytes | None = None
        self._te: bytes | None = None
        self._expect: bytes | None = None
        self._hosts = 0
        self._keep_alive = True
        self._chunked = False
        self._body_seen = False
        self._stall = 0

    # -- public API ---------------------------------------------------------------------------

    def feed(self, data: bytes) -> list[RequestEvent]:
        mode = self._mode
        if mode != _PARSE:
            if mode == _TUNNEL and data:
                return [TunnelData(bytes(data))]
            return []
        events: list[RequestEvent] = []
        self._events = events
        self._began = False
        self._feed_len = len(data)
        try:
            self._parser.feed_data(data)
        except HttpParserUpgrade as exc:
            self._mode = _TUNNEL
            offset: int = exc.args[0]
            if offset < len(data):
                events.append(TunnelData(bytes(data[offset:])))
            return events
        except HttpParserError as exc:
            if self._mode == _PARSE:  # not a "data after Connection: close" complaint
                self._mode = _ERROR
                events.append(self._error or ParseError(400, str(exc)))
            return events
        if self._state != _IDLE:
            self._check_partial(len(data))
        return events

    def feed_eof(self) -> list[RequestEvent]:
        if self._mode != _PARSE:
            return []
        self._mode = _DONE
        if self._state != _IDLE:
            return [ParseError(400, "connection closed before the request was complete")]
        return []

    # -- helpers ------------------------------------------------------------------------------

    def _start(self) -> bytes:
        return self._url

    # -- httptools callbacks (public names because httptools looks them up) -------------------

    def on_message_begin(self) -> None:
        self._state = _HEAD
        self._began = True
        self._url = b""
        self._cl = None
        self._te = None
        self._expect = None
        self._hosts = 0

    def on_url(self, url: bytes) -> None:
        self._url += url

    def on_header(self, name: bytes, value: bytes) -> None:
        # Header fields of the head, or trailer fields (collected after the head was handed out).
        value = value.rstrip(b" \t")  # llhttp already skipped the leading whitespace
        if len(name) in _REQUEST_LENGTHS:
            lname = name.lower()
            if lname == b"host":
                self._hosts += 1
            elif lname == b"content-length":
                self._cl = value
            elif lname == b"transfer-encoding":
                value = self._note_te(value)
            elif lname == b"expect":
                self._expect = value
        self._headers.append((name, value))

    def on_headers_complete(self) -> None:
        p = self._parser
        self._state = _BODY
        # The head is within this feed: only count its bytes when the feed is large.
        self._check_head_size()
        headers = self._headers
        self._headers = []  # trailer fields go here
        version = _VERSIONS.get(p.get_http_version())
        if version is None:
            raise self._fail(400, "unsupported HTTP version")
        if self._hosts != 1 and (self._hosts or version == b"1.1"):
            raise self._fail(400, "missing Host header" if not self._hosts else "too many Host headers")
        method: bytes = p.get_method()
        te = self._te
        if te is not None:
            if te != b"chunked":
                raise self._fail(400, "unsupported Transfer-Encoding")
            content_length = UNKNOWN_LENGTH
            chunked = True
        elif self._cl is not None:
            content_length = int(self._cl)  # llhttp checked the digits
            chunked = False
        else:
            content_length = 0
            chunked = False
        upgrade: bool = p.should_upgrade()
        if upgrade:
            if method == b"CONNECT":
                raise self._fail(400, "CONNECT is not supported")
            if content_length:
                raise self._fail(400, "upgrade request with a body")
        keep_alive: bool = p.should_keep_alive()
        self._keep_alive = keep_alive
        self._chunked = chunked
        self._stall = 0
        expect = self._expect
        self._events.append(
            RequestHead(
                method=method,
                target=self._url,
                version=version,
                headers=headers,
                keep_alive=keep_alive,
                upgrade=upgrade,
                expect_continue=expect is not None and expect.lower() == b"100-continue",
                content_length=content_length,
                chunked=chunked,
            )
        )

    def on_body(self, body: bytes) -> None:
        self._body_seen = True
        self._events.append(Data(body))

    def on_message_complete(self) -> None:
        if self._headers:  # trailer fields: dropped, but bounded
            self._check_trailers()
        self._events.append(END_OF_MESSAGE)
        self._state = _IDLE
        if not self._keep_alive:
            # Nothing after this request is read (llhttp would complain about any more bytes).
            self._mode = _DONE


class HttptoolsResponseParser(_HttptoolsParser):
    """Parses the responses to the requests we send, one at a time, with httptools.

    llhttp cannot be told that a response answers a HEAD request, so such a response is handled by
    buffering until the end of its head, feeding exactly the head to llhttp and replacing the llhttp
    parser afterwards.
    """

    _what = "response"
    __slots__ = (
        "_cl",
        "_feed_len",
        "_head_buf",
        "_head_only",
        "_keep_alive",
        "_next",
        "_parser",
        "_reason",
        "_started",
        "_status",
        "_until_eof",
        "_upgrade",
    )

    def __init__(self, *, max_head_size: int) -> None:
        self._max_head_size = max_head_size
        self._parser = httptools.HttpResponseParser(self)
        self._events: list[ResponseEvent] = []
        self._mode = _PARSE
        self._state = _IDLE
        self._error: ParseError | None = None
        self._head_only = False  # the current/next response answers a HEAD request
        self._upgrade = False  # ... a request that asked for an upgrade
        self._next: tuple[bool, bool] | None = None  # announced while a response was in progress
        self._head_buf = b""
        self._started = False  # bytes of the current response were received
        self._began = False
        self._feed_len = 0
        self._head_raw = 0
        self._status = 0
        self._keep_alive = True
        self._reason = b""
        self._headers: Headers = []
        self._cl: bytes | None = None
        self._te: bytes | None = None
        self._chunked = False
        self._until_eof = False
        self._body_seen = False
        self._stall = 0

    # -- public API ---------------------------------------------------------------------------

    def expect_response(self, *, method: bytes, upgrade: bool) -> None:
        head_only = method == b"HEAD"
        if not self._started:
            self._head_only = head_only
            self._upgrade = upgrade
            self._next = None
        else:
            self._next = (head_only, upgrade)

    def feed(self, data: bytes) -> list[ResponseEvent]:
        mode = self._mode
        if mode != _PARSE:
            if mode == _TUNNEL and data:
                return [TunnelData(bytes(data))]
            return []
        events: list[ResponseEvent] = []
        self._events = events
        if self._head_only:
            self._feed_head_only(data)
        else:
            self._feed(data)
        return events

    def feed_eof(self) -> list[ResponseEvent]:
        if self._mode != _PARSE:
            return []
        self._mode = _DONE
        if self._state == _BODY and self._until_eof:
            self._state = _IDLE
            self._started = False
            return [END_OF_MESSAGE]
        if self._started:  # also: a head, or only an interim response, received
            return [ParseError(400, "connection closed before the response was complete")]
        return []

    # -- helpers ------------------------------------------------------------------------------

    def _feed(self, data: bytes) -> None:
        events = self._events
        self._began = False
        self._feed_len = len(data)
        try:
            self._parser.feed_data(data)
        except HttpParserUpgrade as exc:
            self._mode = _TUNNEL
            offset: int = exc.args[0]
            if offset < len(data):
                events.append(TunnelData(bytes(data[offset:])))
            return
        except HttpParserError as exc:
            if self._mode == _PARSE:  # not a "data after Connection: close" complaint
                self._mode = _ERROR
                events.append(self._error or ParseError(400, str(exc)))
            return
        if self._state != _IDLE:
            self._check_partial(len(data))

    def _feed_head_only(self, data: bytes) -> None:
        buf = self._head_buf + data if self._head_buf else bytes(data)
        self._head_buf = b""
        if buf:
            self._started = True
        while self._head_only and self._mode == _PARSE:
            end = buf.find(b"\r\n\r\n")
            if end < 0:
                if len(buf) > self._max_head_size:
                    self._mode = _ERROR
                    self._events.append(ParseError(431, "response header fields too large"))
                else:
                    self._head_buf = buf
                return
            end += 4
            self._feed(buf[:end])
            buf = buf[end:]
            if self._state == _SKIP:
                # llhttp now waits for a body that does not come: start over with a fresh parser
                self._parser = httptools.HttpResponseParser(self)
                self._state = _IDLE
                self._response_done()
        if buf:
            if self._mode == _PARSE:
                self._feed_more(buf)
            elif self._mode == _TUNNEL:
                self._events.append(TunnelData(buf))

    def _feed_more(self, data: bytes) -> None:
        if self._head_only:
            self._feed_head_only(data)
        else:
            self._feed(data)

    def _response_done(self) -> None:
        """A final response is complete: the next one answers the next announced request."""
        if not self._keep_alive:
            self._mode = _DONE  # whatever the server sends after it is ignored
        self._started = False
        nxt = self._next
        if nxt is None:
            self._head_only = False
            self._upgrade = False
        else:
            self._head_only, self._upgrade = nxt
            self._next = None

    def _start(self) -> bytes:
        return self._reason

    # -- httptools callbacks ------------------------------------------------------------------

    def on_message_begin(self) -> None:
        self._state = _HEAD
        self._began = True
        self._started = True
        self._reason = b""
        self._cl = None
        self._te = None
        self._until_eof = False

    def on_status(self, reason: bytes) -> None:
        self._reason += reason

    def on_header(self, name: bytes, value: bytes) -> None:
        value = value.rstrip(b" \t")
        if len(name) in _RESPONSE_LENGTHS:
            lname = name.lower()
            if lname == b"content-length":
                self._cl = value
            elif lname == b"transfer-encoding":
                value = self._note_te(value)
        self._headers.append((name, value))

    def on_headers_complete(self) -> None:
        p = self._parser
        self._state = _BODY
        self._check_head_size()
        headers = self._headers
        self._headers = []  # trailer fields go here
        version = _VERSIONS.get(p.get_http_version())
        if version is None:
            raise self._fail(400, "unsupported HTTP version")
        status: int = p.get_status_code()
        self._status = status
        reason = self._reason
        if reason and (b"\x00" in reason or b"\x0b" in reason or b"\x0c" in reason):
            raise self._fail(400, "invalid character in reason phrase")  # as h11
        te = self._te
        if te is not None and te != b"chunked":
            raise self._fail(400, "unsupported Transfer-Encoding")
        chunked = False
        if status < 200:
            if status == 101:
                if not self._upgrade:
                    raise self._fail(400, "101 response to a request that did not ask for an upgrade")
                if not p.should_upgrade():
                    raise self._fail(400, "101 response without Connection: upgrade and Upgrade")
                keep_alive = False
            elif status == 100 or status == 102 or status == 103:
                keep_alive = p.should_keep_alive()
            else:
                raise self._fail(400, f"unsupported informational status {status}")
            content_length = 0
        elif self._head_only:
            # llhttp thinks a body follows; the caller cuts the feed after the head.
            self._state = _SKIP
            content_length = 0
            keep_alive = _keep_alive_slow(version, headers)
        elif status == 204 or status == 304:
            content_length = 0
            keep_alive = p.should_keep_alive()
        else:
            if te is not None:
                content_length = UNKNOWN_LENGTH
                chunked = True
                self._stall = 0
            elif self._cl is not None:
                content_length = int(self._cl)
            else:
                content_length = UNKNOWN_LENGTH
                self._until_eof = True
            keep_alive = p.should_keep_alive()
        self._chunked = chunked
        self._keep_alive = keep_alive
        self._events.append(
            ResponseHead(
                status=status,
                reason=reason,
                version=version,
                headers=headers,
                keep_alive=keep_alive,
                content_length=content_length,
                chunked=chunked,
            )
        )
        if self._state == _SKIP:
            self._events.append(END_OF_MESSAGE)

    def on_body(self, body: bytes) -> None:
        self._body_seen = True
        self._events.append(Data(body))

    def on_message_complete(self) -> None:
        if self._state == _SKIP:
            return
        if self._headers:  # trailer fields: dropped, but bounded
            self._check_trailers()
        self._state = _IDLE
        status = self._status
        if status == 101:  # no EndOfMessage: the head is followed by the tunnel
            return
        self._events.append(END_OF_MESSAGE)
        if status >= 200:
            self._response_done()
