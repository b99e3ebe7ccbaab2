"""The httptools (llhttp) parser backend: the fast default.

llhttp does the tokenising and the validation in C; the Python side only collects what the
callbacks hand over and lets ``framing.request_head`` / ``response_head`` decide, as they do for the
h11 backend. The callbacks are the cost (each is a call from C into Python), so only those that
carry something are registered: no ``on_message_begin`` for requests (the URL marks the start of a
request), ``on_header`` does one ``rstrip``, one length test and one ``append`` for a field framing
does not care about. Splitting a complete head in Python instead was measured (callgrind, CPython
3.11, a 14-field browser request): the fields alone cost about 29k instructions with ``re.findall``
and more with ``bytes.split`` + ``map``/``zip``, against about 27k for all 14 ``on_header`` calls,
and a design feeding llhttp exact heads to split them came to 108k per request against 64k.

What llhttp rejects (strict mode, no leniencies set): ``Transfer-Encoding`` together with
``Content-Length``, duplicate or non-numeric ``Content-Length``, a request ``Transfer-Encoding``
whose final coding is not chunked, bad chunk sizes and chunk-size overflow, obs-fold, whitespace
before the colon, bare LF, NUL/CTL bytes in values, unknown methods, invalid request-target bytes.
What this module adds: the shared framing rules, the head size limit (431) on heads and trailers
(trailer fields are handed on with the EndOfMessage; a Connection field among them is refused), an
HTTP/0.9 request line rejected at once, and a check that llhttp and the shared rules agree on
upgrades.
"""

from __future__ import annotations

from typing import Any, Final

import httptools
from httptools import HttpParserError, HttpParserUpgrade

from proxy.http.framing import (
    CONNECTION_FIELDS,
    DONE,
    ERROR,
    PARSE,
    TUNNEL,
    Fields,
    ParserBase,
    incomplete_request_problem,
    not_parsing,
    request_head,
    response_head,
)
from proxy.http.headers import lower_name, strip_trailing_ows
from proxy.http.parser import (
    END_OF_MESSAGE,
    UNKNOWN_LENGTH,
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

__all__ = ["HttptoolsRequestParser", "HttptoolsResponseParser"]

# message states
_IDLE: Final = 0  # between messages
_HEAD: Final = 1  # request/status line or header fields being received
_BODY: Final = 2  # head complete, body (or trailers) being received
_SKIP: Final = 3  # response head to a HEAD request delivered; llhttp's idea of the body is ignored

# The fields framing looks at, by the length of their name (most names are not looked at further).
_HOST: Final = 0
_CL: Final = 1
_TE: Final = 2
_EXPECT: Final = 3
_CONNECTION: Final = 4
_UPGRADE: Final = 5
_FRAMING: Final = {
    b"host": _HOST,
    b"content-length": _CL,
    b"transfer-encoding": _TE,
    b"expect": _EXPECT,
    b"connection": _CONNECTION,
    b"upgrade": _UPGRADE,
}
_LENGTHS: Final = frozenset(len(name) for name in _FRAMING)
_NONE: Final[tuple[bytes, ...]] = ()
_VERSIONS: Final = {"1.1": b"1.1", "1.0": b"1.0", "0.9": b"0.9"}


def _other_field(f: Fields, kind: int, value: bytes) -> None:
    if kind == _CL:
        f.content_length = (*f.content_length, value)
    elif kind == _EXPECT:
        f.expect = (*f.expect, value)
    elif value:  # Upgrade (an empty one names no protocol; llhttp ignores it too)
        f.upgrade = True


class _Abort(Exception):
    """Raised from a callback to stop llhttp; the ParseError is stored on the parser."""


class _HttptoolsParser(ParserBase):
    """What the request and response parsers share: field collection, limits and llhttp's errors.

    Subclasses provide ``_start``: the request URL or the response reason phrase collected so far.
    """

    __slots__ = (
        "_began",
        "_body_seen",
        "_chunked",
        "_error",
        "_events",
        "_f",
        "_feed_len",
        "_head_raw",
        "_headers",
        "_parser",
        "_stall",
        "_state",
        "_v11",
    )
    _what = "message"
    _parser: Any
    _events: list[Any]
    _error: ParseError | None
    _headers: Headers
    _state: int
    _began: bool
    _feed_len: int
    _head_raw: int
    _chunked: bool
    _body_seen: bool
    _stall: int
    _v11: bool
    _f: Fields

    def _init_fields(self, parser: Any) -> None:
        self._parser = parser
        self._events = []
        self._error = None
        self._state = _IDLE
        self._began = False  # the current head began during the current feed
        self._feed_len = 0
        self._head_raw = 0  # bytes of an incomplete head received in earlier feeds (about)
        self._headers = []
        self._chunked = False
        self._body_seen = False
        self._stall = 0
        # The head that starts the current feed is HTTP/1.1, seen in its first line (llhttp checked
        # that line): get_http_version() formats a str, ~2k instructions per message.
        self._v11 = False
        # what framing needs of the fields of the current head (one object, reset per message)
        self._f = Fields(
            hosts=0,
            content_length=_NONE,
            transfer_encoding=_NONE,
            expect=_NONE,
            connection=_NONE,
            upgrade=False,
        )

    def _reset_fields(self) -> None:
        f = self._f
        f.hosts = 0
        f.content_length = f.transfer_encoding = f.expect = f.connection = _NONE
        f.upgrade = False

    def _start(self) -> bytes:
        raise NotImplementedError

    def _reject(self, error: ParseError) -> _Abort:
        """From a callback: stop llhttp with this error."""
        self._error = error
        return _Abort(error.message)

    def _llhttp_error(self, exc: HttpParserError) -> None:
        if self._mode == PARSE:  # not a "data after Connection: close" complaint
            self._mode = ERROR
            self._events.append(self._error or ParseError(400, str(exc)))

    def _upgraded(self, data: bytes, offset: int) -> None:
        raise NotImplementedError

    def _tunnel(self, data: bytes, offset: int) -> None:
        self._mode = TUNNEL
        if offset < len(data):
            self._events.append(TunnelData(bytes(data[offset:])))

    def _trailers(self) -> EndOfMessage:
        """The end of a message whose trailer fields were collected: bounded, then handed on."""
        trailers = self._headers
        self._headers = []
        self._reset_fields()
        size = 0
        for name, value in trailers:
            size += len(name) + len(value)
            if name.lower() in CONNECTION_FIELDS:
                # llhttp would act on a "close" in it (and then fail what follows): refused
                raise self._reject(ParseError(400, "connection field in the trailer section"))
        if size > self._max_head_size:
            raise self._reject(ParseError(431, "trailer section too large"))
        return EndOfMessage(trailers)

    def _check_head_size(self) -> None:
        """At the end of a head that did not arrive in one small feed (else: within the limit)."""
        if self._head_size() > self._max_head_size:
            raise self._reject(ParseError(431, f"{self._what} header fields too large"))

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
                self._mode = ERROR
                self._events.append(ParseError(431, f"{self._what} header fields too large"))
        elif self._state == _BODY and self._chunked:
            # chunked body: feeds that carry no body data are chunk framing or trailers
            if self._body_seen:
                self._body_seen = False
                self._stall = 0
            else:
                self._stall += size
                if self._stall > self._max_head_size:
                    self._mode = ERROR
                    self._events.append(ParseError(431, "chunk framing or trailer section too large"))

    # -- httptools callbacks (public names because httptools looks them up) -------------------

    def on_header(self, name: bytes, value: bytes) -> None:
        # Header fields of the head, or trailer fields (collected after the head was handed out).
        if len(name) in _LENGTHS:
            kind = _FRAMING.get(lower_name(name))
            if kind is not None:
                f = self._f
                if kind == _HOST:
                    f.hosts += 1
                elif kind == _CONNECTION:
                    f.connection = (*f.connection, strip_trailing_ows(value))
                elif kind == _TE:
                    # lower-cased, as h11 does; and llhttp does not see "chunked" in
                    # "chunked<TAB>" (it trims spaces only), so framing must not either
                    f.transfer_encoding = (*f.transfer_encoding, value.rstrip(b" ").lower())
                    value = value.lower()
                else:
                    _other_field(f, kind, strip_trailing_ows(value))
        # llhttp skipped the leading whitespace, not the trailing
        self._headers.append((name, strip_trailing_ows(value)))

    def on_body(self, body: bytes) -> None:
        self._body_seen = True
        self._events.append(Data(body))


class HttptoolsRequestParser(_HttptoolsParser):
    """Parses the requests a client sends (pipelined ones included) with httptools."""

    _what = "request"
    __slots__ = ("_bare", "_ended", "_keep_alive", "_line", "_upgrading", "_url")

    def __init__(self, *, max_head_size: int) -> None:
        super().__init__(max_head_size=max_head_size)
        self._init_fields(httptools.HttpRequestParser(self))
        self._url = b""
        self._keep_alive = True
        self._upgrading = False
        self._ended = False  # a request ended during the current feed
        self._bare = False  # the current (or last) request has no body
        self._line: bytes | None = None  # an incomplete request line, kept until its end arrives

    def feed(self, data: bytes) -> list[RequestEvent]:
        # framing.RequestParserBase.feed with _parse inlined: this is the hot path
        if self._mode != PARSE:
            skipped: list[RequestEvent] = not_parsing(self._mode, data)
            return skipped
        events: list[RequestEvent] = []
        self._events = events
        self._began = False
        self._ended = False
        self._feed_len = len(data)
        if self._state == _IDLE:  # a request line ends at the first LF (llhttp: nothing before it)
            end = data.find(b"\n")
            self._v11 = end >= 10 and data[end - 10 : end] == b" HTTP/1.1\r"
        try:
            self._parser.feed_data(data)
        except HttpParserUpgrade as exc:
            self._upgraded(data, exc.args[0])
            return events
        except HttpParserError as exc:
            self._llhttp_error(exc)
            return events
        if self._state != _IDLE:
            self._check_partial(len(data))
            if self._state == _HEAD and self._mode == PARSE:
                if self._parser.get_method() == b"PRI":  # llhttp waits for an HTTP/2 preface
                    self._mode = ERROR
                    events.append(ParseError(400, "HTTP/2 connection preface"))
                    return events
                self._check_request_line(data)
        return events

    def _check_request_line(self, data: bytes) -> None:
        """An incomplete head: fail an HTTP/0.9 request line at once (llhttp waits for fields).

        The request line of a head that began in this feed starts the feed, or follows the last
        empty line in it when a request without body ended before it (after a request with a body,
        the header timeout applies); one that began earlier was kept in ``_line``.
        """
        if self._began:
            if not self._ended:
                line: bytes | None = data.lstrip(b"\r\n")
            elif self._bare:
                line = data[data.rfind(b"\r\n\r\n") + 4 :].lstrip(b"\r\n")
            else:
                line = None
        else:
            line = None if self._line is None else self._line + data
        if line is not None and line.find(b"\n") >= 0:
            problem = incomplete_request_problem(line)
            line = None
            if problem is not None:
                self._mode = ERROR
                self._events.append(problem)
        self._line = line

    def feed_eof(self) -> list[RequestEvent]:
        if self._mode != PARSE:
            return []
        self._mode = DONE
        if self._state != _IDLE:
            return [ParseError(400, "connection closed before the request was complete")]
        return []

    def _upgraded(self, data: bytes, offset: int) -> None:
        if not self._upgrading:
            self._mode = ERROR
            self._events.append(ParseError(400, "llhttp upgrades where the head does not"))
            return
        self._tunnel(data, offset)

    def _start(self) -> bytes:
        return self._url

    # -- httptools callbacks --------------------------------------------------------------------

    def on_url(self, url: bytes) -> None:
        if self._state == _IDLE:  # a request begins (on_message_begin is not registered: cheaper)
            self._state = _HEAD
            self._began = True
            self._url = url
        else:
            self._url += url

    def on_headers_complete(self) -> None:
        p = self._parser
        self._state = _BODY
        if not self._began or self._feed_len > self._max_head_size:
            self._check_head_size()
        headers = self._headers
        self._headers = []  # trailer fields go here
        f = self._f
        if self._v11:
            self._v11 = False  # (a pipelined head after it in the same feed asks llhttp)
            version = b"1.1"
        else:
            version = _VERSIONS.get(p.get_http_version(), b"")
        head = request_head(p.get_method(), self._url, version, headers, f)
        # reset for the next head (trailer fields collect into it too: reset again then)
        f.hosts = 0
        f.content_length = f.transfer_encoding = f.expect = f.connection = _NONE
        f.upgrade = False
        if type(head) is not RequestHead:
            assert type(head) is ParseError
            raise self._reject(head)
        if head.upgrade and not p.should_upgrade():  # (the converse fails in _upgraded)
            raise self._reject(ParseError(400, "ambiguous upgrade"))
        self._keep_alive = head.keep_alive
        self._upgrading = head.upgrade
        self._chunked = head.chunked
        self._bare = head.content_length == 0
        self._stall = 0
        self._events.append(head)

    def on_message_complete(self) -> None:
        self._events.append(END_OF_MESSAGE if not self._headers else self._trailers())
        self._state = _IDLE
        self._ended = True
        if not self._keep_alive and not self._upgrading:
            # Nothing after this request is read; stop llhttp here (it may think otherwise:
            # an HTTP/1.0 request with Transfer-Encoding) and ignore its complaint.
            self._mode = DONE
            raise _Abort("connection closes after this request")


class HttptoolsResponseParser(_HttptoolsParser):
    """Parses the responses to the requests we send, one at a time, with httptools.

    llhttp cannot be told that a response answers a HEAD request, so such a response is handled by
    buffering until the end of its head, feeding exactly the head to llhttp and replacing the llhttp
    parser afterwards.
    """

    _what = "response"
    __slots__ = ("_head_buf", "_head_fed", "_keep_alive", "_reason", "_status", "_until_eof")

    def __init__(self, *, max_head_size: int) -> None:
        super().__init__(max_head_size=max_head_size)
        self._init_fields(httptools.HttpResponseParser(self))
        self._head_buf = b""  # a head to a HEAD request, until its end arrives
        self._head_fed = 0  # how much of it llhttp has seen
        self._status = 0
        self._keep_alive = True
        self._reason = b""
        self._until_eof = False

    def feed(self, data: bytes) -> list[ResponseEvent]:
        # framing.ResponseParserBase.feed with _parse inlined: this is the hot path
        if self._mode != PARSE:
            skipped: list[ResponseEvent] = not_parsing(self._mode, data)
            return skipped
        events: list[ResponseEvent] = []
        self._events = events
        if self._head_only:
            self._feed_head_only(data)
        else:
            self._feed(data)
        return events

    def feed_eof(self) -> list[ResponseEvent]:
        if self._mode != PARSE:
            return []
        self._mode = DONE
        if self._state == _BODY and self._until_eof:
            self._state = _IDLE
            self._started = False
            return [END_OF_MESSAGE]
        if self._started:  # also: a head, or only an interim response, received
            return [ParseError(400, "connection closed before the response was complete")]
        return []

    def expect_response(self, *, method: bytes, upgrade: bool) -> None:
        self._announce(method, upgrade)

    def _upgraded(self, data: bytes, offset: int) -> None:
        self._tunnel(data, offset)  # only after a 101, which on_headers_complete checked

    # -- helpers ------------------------------------------------------------------------------

    def _feed(self, data: bytes) -> None:
        self._began = False
        self._feed_len = len(data)
        if self._state == _IDLE:
            self._v11 = data[:9] == b"HTTP/1.1 "
        try:
            self._parser.feed_data(data)
        except HttpParserUpgrade as exc:
            self._upgraded(data, exc.args[0])
            return
        except HttpParserError as exc:
            self._llhttp_error(exc)
            return
        if self._state != _IDLE:
            self._check_partial(len(data))

    def _feed_head_only(self, data: bytes) -> None:
        buf = self._head_buf + data if self._head_buf else bytes(data)
        fed = self._head_fed  # bytes at the start of buf llhttp has seen already
        self._head_buf = b""
        self._head_fed = 0
        if buf:
            self._started = True
        while self._head_only and self._mode == PARSE:
            end = buf.find(b"\r\n\r\n")
            if end < 0:
                if len(buf) > self._max_head_size:
                    self._mode = ERROR
                    self._events.append(ParseError(431, "response header fields too large"))
                    return
                self._head_buf = buf
                self._head_fed = len(buf)
                if fed < len(buf):
                    self._feed(buf[fed:])  # llhttp fails what it can at once
                return
            end += 4
            self._feed(buf[fed:end])
            buf = buf[end:]
            fed = 0
            if self._state == _SKIP:
                # llhttp now waits for a body that does not come: start over with a fresh parser
                self._parser = httptools.HttpResponseParser(self)
                self._state = _IDLE
                self._response_done(self._keep_alive)
        if buf:
            if self._mode == PARSE:
                self._feed(buf)  # (the next response does not answer a HEAD request)
            elif self._mode == TUNNEL:
                self._events.append(TunnelData(buf))

    def _start(self) -> bytes:
        return self._reason

    # -- httptools callbacks ------------------------------------------------------------------

    def on_message_begin(self) -> None:
        self._state = _HEAD
        self._began = True
        self._started = True
        self._reason = b""
        self._until_eof = False

    def on_status(self, reason: bytes) -> None:
        self._reason += reason

    def on_headers_complete(self) -> None:
        p = self._parser
        self._state = _BODY
        if not self._began or self._feed_len > self._max_head_size:
            self._check_head_size()
        headers = self._headers
        self._headers = []  # trailer fields go here
        status: int = p.get_status_code()
        if self._v11:
            self._v11 = False  # (an interim response's: the next head in the feed asks llhttp)
            version = b"1.1"
        else:
            version = _VERSIONS.get(p.get_http_version(), b"")
        head = response_head(  # (by position: see request_head)
            status,
            self._reason,
            version,
            headers,
            self._f,
            self._head_only and status >= 200,
            self._upgrade,
        )
        self._reset_fields()  # (trailer fields collect into it too: reset again then)
        if type(head) is not ResponseHead:
            assert type(head) is ParseError
            raise self._reject(head)
        self._status = status
        self._keep_alive = head.keep_alive
        self._chunked = head.chunked
        self._stall = 0
        self._until_eof = head.content_length == UNKNOWN_LENGTH and not head.chunked and status >= 200
        self._events.append(head)
        if self._head_only and status >= 200:
            # llhttp thinks a body follows; the caller cuts the feed after the head.
            self._state = _SKIP
            self._events.append(END_OF_MESSAGE)

    def on_message_complete(self) -> None:
        if self._state == _SKIP:
            return
        end = END_OF_MESSAGE if not self._headers else self._trailers()
        self._state = _IDLE
        status = self._status
        if status == 101:  # no EndOfMessage: the head is followed by the tunnel
            return
        self._events.append(end)
        if status >= 200:
            self._response_done(self._keep_alive)
            if self._mode == DONE:  # stop llhttp here: nothing after this response is read
                raise _Abort("connection closes after this response")
