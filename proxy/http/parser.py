"""The sans-IO HTTP/1.x parser interface shared by the client side and the upstream side.

A parser owns no socket. Bytes go in with ``feed`` (or ``feed_eof`` when the peer closed) and a list
of events comes out, in wire order. A request parser keeps parsing pipelined requests, so one ``feed``
may return the events of several requests; the transport decides when to act on them.

Two backends implement it: ``httptools`` (llhttp, fast, the default) and ``h11`` (strict, pure
Python); ``parsers.py`` picks one, ``framing.py`` holds the rules they share. Both produce exactly the same events for the same bytes, which the byte-table tests check.

Header names keep the case they had on the wire; values are stripped of surrounding whitespace.
Bodies come out decoded from their transfer coding (chunk sizes removed); the head says how the
body was framed so the transport can re-frame it for the other side. The trailer fields of a
chunked body ride on its ``EndOfMessage``.
"""

from __future__ import annotations

from typing import Final, Protocol

Headers = list[tuple[bytes, bytes]]

# Bodies whose length the head does not say: chunked, or (responses only) until the connection closes.
UNKNOWN_LENGTH: Final = -1


class RequestHead:
    """A request line and its header fields."""

    __slots__ = (
        "chunked",
        "content_length",
        "expect_continue",
        "headers",
        "keep_alive",
        "method",
        "target",
        "upgrade",
        "version",
    )

    # (positional or keyword: the parsers build one per request, and keywords cost more)
    def __init__(
        self,
        method: bytes,
        target: bytes,
        version: bytes,
        headers: Headers,
        keep_alive: bool,
        upgrade: bool,
        expect_continue: bool,
        content_length: int,
        chunked: bool,
    ) -> None:
        self.method = method  # b"GET"
        self.target = target  # raw request-target, b"/path?query"
        self.version = version  # b"1.1" or b"1.0"
        self.headers = headers
        self.keep_alive = keep_alive  # the client allows another request on this connection
        self.upgrade = upgrade  # Connection: upgrade with an Upgrade header (e.g. WebSocket)
        self.expect_continue = expect_continue  # Expect: 100-continue
        self.content_length = content_length  # 0 = no body; UNKNOWN_LENGTH when chunked
        self.chunked = chunked

    def __repr__(self) -> str:
        return f"RequestHead({self.method!r} {self.target!r} HTTP/{self.version.decode()})"


class ResponseHead:
    """A status line and its header fields.

    Also used for 1xx interim responses: 100/102/103 are followed by an EndOfMessage and then the
    events of the next (interim or final) response; a 101 is followed by tunnel mode, no EndOfMessage.
    """

    __slots__ = ("chunked", "content_length", "headers", "keep_alive", "reason", "status", "version")

    # (positional or keyword, as RequestHead's)
    def __init__(
        self,
        status: int,
        reason: bytes,
        version: bytes,
        headers: Headers,
        keep_alive: bool,
        content_length: int,
        chunked: bool,
    ) -> None:
        self.status = status
        self.reason = reason
        self.version = version
        self.headers = headers
        self.keep_alive = keep_alive  # the server allows another request on this connection
        # 0 = no body (also for HEAD, 1xx, 204, 304); UNKNOWN_LENGTH = chunked or close-delimited
        self.content_length = content_length
        self.chunked = chunked

    def __repr__(self) -> str:
        return f"ResponseHead({self.status} {self.reason!r})"


class Data:
    """A piece of message body, transfer coding removed."""

    __slots__ = ("data",)

    def __init__(self, data: bytes) -> None:
        self.data = data

    def __repr__(self) -> str:
        return f"Data({self.data!r})"


class EndOfMessage:
    """The current message is complete.

    ``trailers``: the trailer fields that ended a chunked body, as they came (names in their wire
    case, values stripped; the parsers bound them by the head size limit and refuse framing fields
    among them), or None when there were none. Messages without trailers all share
    ``END_OF_MESSAGE``, so the common case allocates nothing.
    """

    __slots__ = ("trailers",)

    def __init__(self, trailers: Headers | None) -> None:
        self.trailers = trailers

    def __repr__(self) -> str:
        return "EndOfMessage()" if self.trailers is None else f"EndOfMessage({self.trailers!r})"


END_OF_MESSAGE: Final = EndOfMessage(None)


class TunnelData:
    """Raw bytes after an upgrade: no longer HTTP, to be copied to the other side as they are.

    A request parser switches to tunnel mode right after the EndOfMessage of a request whose head
    had ``upgrade`` set; a response parser right after the ResponseHead of a 101 response (announced
    with ``upgrade=True``; there is no EndOfMessage for it). Bytes that followed in the same feed come
    out as a TunnelData; from then on every non-empty ``feed`` returns a single TunnelData with the
    bytes given.
    """

    __slots__ = ("data",)

    def __init__(self, data: bytes) -> None:
        self.data = data

    def __repr__(self) -> str:
        return f"TunnelData({self.data!r})"


class ParseError:
    """The bytes are not valid HTTP/1.x. The parser is unusable afterwards.

    ``status`` is what a server should answer: 400, or 431 when the head exceeds the size limit.
    """

    __slots__ = ("message", "status")

    def __init__(self, status: int, message: str) -> None:
        self.status = status
        self.message = message

    def __repr__(self) -> str:
        return f"ParseError({self.status}, {self.message!r})"


RequestEvent = RequestHead | Data | EndOfMessage | TunnelData | ParseError
ResponseEvent = ResponseHead | Data | EndOfMessage | TunnelData | ParseError


class RequestParser(Protocol):
    """Server side: parses the requests a client sends, pipelined ones included.

    After a request whose head has ``keep_alive`` false, later bytes are ignored.
    """

    def feed(self, data: bytes) -> list[RequestEvent]: ...

    def feed_eof(self) -> list[RequestEvent]:
        """The client closed its sending side. A request cut short yields a ParseError."""
        ...


class ResponseParser(Protocol):
    """Client side: parses the responses to the requests we send, one at a time."""

    def expect_response(self, *, method: bytes, upgrade: bool) -> None:
        """Announce the request the next response answers (HEAD responses have no body).

        Call it for every request, before that response's bytes are fed. A response nobody
        announced is parsed as the answer to a GET without upgrade.
        """
        ...

    def feed(self, data: bytes) -> list[ResponseEvent]: ...

    def feed_eof(self) -> list[ResponseEvent]:
        """The server closed. Ends a close-delimited body; a message cut short is a ParseError."""
        ...
