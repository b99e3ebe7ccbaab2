"""What both HTTP/1 parser backends share: the skeleton of a parser and the rules of framing.

A backend tokenises (llhttp or h11) and hands the header fields of a head to ``request_head`` or
``response_head`` here, which decide, the same way for both backends: whether the head is
acceptable, how its body is framed, whether the connection stays open (one Connection-token rule),
and whether it upgrades. ``RequestParserBase`` / ``ResponseParserBase`` hold the parser modes, the
``feed()`` guard (tunnel and done modes) and the queue of announced requests of a response parser.

The rules, where RFC 9112 leaves a choice, follow llhttp (strict) and Go's net/http:

* only HTTP/1.0 and 1.1; a single ``Host`` field, mandatory in HTTP/1.1;
* ``Transfer-Encoding: chunked`` exactly (no other codings), never with ``Content-Length``;
  one ``Content-Length`` of digits only;
* keep-alive: HTTP/1.1 unless ``Connection: close``; HTTP/1.0 only with ``Connection: keep-alive``;
  never after an HTTP/1.0 request with ``Transfer-Encoding`` (RFC 9112 section 6.1) nor after a
  response delimited by the end of the connection;
* an absolute-form request-target (``GET http://host/path``) is routed by its authority and
  forwarded in origin form (RFC 9112 section 3.2.2): the head's ``target`` is ``/path`` and its
  ``Host`` field carries the authority;
* no ``CONNECT``, no body on an upgrade request; informational responses 100-103 and 101.
"""

from __future__ import annotations

from collections.abc import Collection, Iterable, Sequence
from typing import Any, Final

from mypy_extensions import mypyc_attr

from proxy.http.parser import (
    UNKNOWN_LENGTH,
    Headers,
    ParseError,
    RequestEvent,
    RequestHead,
    ResponseEvent,
    ResponseHead,
    TunnelData,
)

# parser modes
PARSE: Final = 0  # parsing HTTP
TUNNEL: Final = 1  # after an upgrade: bytes pass through as TunnelData
DONE: Final = 2  # after a message that does not allow another one, or after EOF: bytes are ignored
ERROR: Final = 3  # after a ParseError: bytes are ignored

VERSIONS: Final = (b"1.1", b"1.0")

# The request methods llhttp accepts for HTTP/1.x (CONNECT is then rejected by request_head).
METHODS: Final = frozenset(
    b"DELETE GET HEAD POST PUT CONNECT OPTIONS TRACE COPY LOCK MKCOL MOVE PROPFIND PROPPATCH SEARCH "
    b"UNLOCK BIND REBIND UNBIND ACL REPORT MKACTIVITY CHECKOUT MERGE M-SEARCH NOTIFY SUBSCRIBE "
    b"UNSUBSCRIBE PATCH PURGE MKCALENDAR LINK UNLINK SOURCE QUERY".split()
)


# Fields llhttp acts on for the connection wherever they appear (a "close" in them ends it), so both
# backends refuse them in a trailer section, where no HTTP/1 rule gives them a meaning.
CONNECTION_FIELDS: Final = frozenset({b"connection", b"proxy-connection"})


class Fields:
    """What the framing and connection rules need from a header section.

    Backends fill it either from a list of fields (``Fields.of``) or straight from the raw header
    block, whichever is cheaper for them.
    """

    __slots__ = ("connection", "content_length", "expect", "hosts", "transfer_encoding", "upgrade")

    def __init__(
        self,
        *,
        hosts: int,
        content_length: Sequence[bytes],
        transfer_encoding: Sequence[bytes],
        expect: Sequence[bytes],
        connection: Sequence[bytes],
        upgrade: bool,
    ) -> None:
        self.hosts = hosts
        self.content_length = content_length
        self.transfer_encoding = transfer_encoding
        self.expect = expect
        self.connection = connection
        self.upgrade = upgrade  # a non-empty Upgrade field is present

    @classmethod
    def of(cls, headers: Iterable[tuple[bytes, bytes]]) -> Fields:
        hosts = 0
        cl: list[bytes] = []
        te: list[bytes] = []
        expect: list[bytes] = []
        connection: list[bytes] = []
        upgrade = False
        for name, value in headers:
            lname = name.lower()
            if lname == b"host":
                hosts += 1
            elif lname == b"content-length":
                cl.append(value)
            elif lname == b"transfer-encoding":
                te.append(value)
            elif lname == b"expect":
                expect.append(value)
            elif lname == b"connection":
                connection.append(value)
            elif lname == b"upgrade" and value:  # (an empty one names no protocol: llhttp)
                upgrade = True
        return cls(
            hosts=hosts,
            content_length=cl,
            transfer_encoding=te,
            expect=expect,
            connection=connection,
            upgrade=upgrade,
        )


def connection_options(values: Sequence[bytes]) -> set[bytes]:
    """The tokens of the Connection fields (values stripped by the parser), lower-cased."""
    tokens: set[bytes] = set()
    for value in values:
        for token in value.split(b","):
            tokens.add(token.strip(b" \t").lower())
    return tokens


_NO_TOKENS: Final[frozenset[bytes]] = frozenset()


# The tokens of the usual single Connection values, by their spelling on the wire.
_KNOWN_TOKENS: Final[dict[bytes, tuple[bytes]]] = {
    spelling: (spelling.lower(),)
    for spelling in (b"keep-alive", b"Keep-Alive", b"close", b"Close", b"upgrade", b"Upgrade")
}


def _tokens(values: Sequence[bytes]) -> Collection[bytes]:
    if not values:
        return _NO_TOKENS
    if len(values) == 1:
        known = _KNOWN_TOKENS.get(values[0])
        if known is not None:
            return known
    return connection_options(values)


def keep_alive(version: bytes, tokens: Collection[bytes]) -> bool:
    """The one keep-alive rule (llhttp_should_keep_alive, Go): by version and Connection tokens."""
    if version == b"1.1":
        return b"close" not in tokens
    return b"keep-alive" in tokens


def _body_framing(f: Fields) -> int | ParseError:
    """Content length of a message from its fields: UNKNOWN_LENGTH when chunked."""
    if f.transfer_encoding:
        if f.content_length:
            return ParseError(400, "Content-Length together with Transfer-Encoding")
        if len(f.transfer_encoding) != 1 or f.transfer_encoding[0].lower() != b"chunked":
            return ParseError(400, "unsupported Transfer-Encoding")
        return UNKNOWN_LENGTH
    if f.content_length:
        if len(f.content_length) != 1:
            return ParseError(400, "more than one Content-Length")
        cl = f.content_length[0]
        if not cl.isdigit() or len(cl) > 18:  # (ASCII digits only; below 2**63, as Go)
            return ParseError(400, "invalid Content-Length")
        return int(cl)
    return 0


def origin_form(target: bytes) -> tuple[bytes, bytes] | None:
    """(authority, origin-form target) of an absolute-form request-target, None for other forms.

    ``http://user@host:8080/p?q`` → (``host:8080``, ``/p?q``); ``http://host?q`` → (``host``, ``/?q``).
    """
    scheme_end = target.find(b"://")
    if scheme_end <= 0 or target[:1] == b"/":
        return None
    rest = target[scheme_end + 3 :]
    end = len(rest)
    for sep in (b"/", b"?"):
        i = rest.find(sep)
        if 0 <= i < end:
            end = i
    authority = rest[:end]
    at = authority.rfind(b"@")
    if at >= 0:
        authority = authority[at + 1 :]
    path = rest[end:]
    if path[:1] != b"/":
        path = b"/" + path
    return authority, path


def _with_host(headers: Headers, authority: bytes) -> Headers:
    out: Headers = [
        (name, authority) if name.lower() == b"host" else (name, value) for name, value in headers
    ]
    if len(out) == len(headers) and not any(name.lower() == b"host" for name, _ in out):
        out.append((b"Host", authority))
    return out


def request_head(
    method: bytes, target: bytes, version: bytes, headers: Headers, fields: Fields
) -> RequestHead | ParseError:
    """The head of a request whose start line and fields the backend tokenised, or why not.

    (Arguments by position on the hot path: keywords cost more than the rest of the call.)
    """
    if version != b"1.1" and version != b"1.0":
        return ParseError(400, "unsupported HTTP version")
    f = fields
    if f.hosts != 1 and (f.hosts or version == b"1.1"):
        return ParseError(400, "missing Host header" if not f.hosts else "too many Host headers")
    if f.transfer_encoding or f.content_length:
        content_length = _body_framing(f)
        if isinstance(content_length, ParseError):
            return content_length
    else:
        content_length = 0
    tokens = _tokens(f.connection)
    upgrade = f.upgrade and b"upgrade" in tokens
    if method == b"CONNECT":
        return ParseError(400, "CONNECT is not supported")
    if upgrade and content_length:
        return ParseError(400, "upgrade request with a body")
    alive = keep_alive(version, tokens)
    if f.transfer_encoding and version == b"1.0":
        alive = False  # RFC 9112 section 6.1: the framing is faulty; close after the response
    if target[0] != 47 and target != b"*":  # not "/": absolute-form (the others are rejected)
        absolute = origin_form(target)
        if absolute is None:
            return ParseError(400, "invalid request-target")
        authority, target = absolute
        if authority:
            headers = _with_host(headers, authority)
    return RequestHead(  # positional: this runs per request (see parser.py)
        method,
        target,
        version,
        headers,
        alive,
        upgrade,
        bool(f.expect) and f.expect[-1].lower() == b"100-continue",
        content_length,
        content_length == UNKNOWN_LENGTH,
    )


def response_head(
    status: int,
    reason: bytes,
    version: bytes,
    headers: Headers,
    fields: Fields,
    head_only: bool,
    upgrade_asked: bool,
) -> ResponseHead | ParseError:
    """The head of a response (to a HEAD request if ``head_only``), or why it is not acceptable."""
    if version != b"1.1" and version != b"1.0":
        return ParseError(400, "unsupported HTTP version")
    if reason and len(reason.translate(None, b"\x00\x0b\x0c")) != len(reason):
        return ParseError(400, "invalid character in reason phrase")  # llhttp lets these through
    f = fields
    framing = _body_framing(f) if f.transfer_encoding or f.content_length else 0
    if isinstance(framing, ParseError):
        return framing
    tokens = _tokens(f.connection)
    alive = keep_alive(version, tokens)
    content_length = 0
    if status < 200:
        if status == 101:
            if not upgrade_asked:
                return ParseError(400, "101 response to a request that did not ask for an upgrade")
            if not (f.upgrade and b"upgrade" in tokens):
                return ParseError(400, "101 response without Connection: upgrade and Upgrade")
            alive = False
        elif status != 100 and status != 102 and status != 103:
            return ParseError(400, f"unsupported informational status {status}")
    elif not head_only and status != 204 and status != 304:
        if f.transfer_encoding or f.content_length:
            content_length = framing
        else:  # delimited by the end of the connection
            content_length = UNKNOWN_LENGTH
            alive = False
    return ResponseHead(  # positional: this runs per response (see parser.py)
        status,
        reason,
        version,
        headers,
        alive,
        content_length,
        content_length == UNKNOWN_LENGTH and bool(f.transfer_encoding),
    )


def incomplete_request_problem(pending: bytes | bytearray) -> ParseError | None:
    """Fail an incomplete head early when its request line shows it can never be valid.

    An HTTP/0.9 request line (``GET /`` and CRLF) is answered at once, not after the header timeout.
    """
    nl = pending.find(b"\n")
    if nl < 0:
        return None
    line = pending[: nl - 1] if nl and pending[nl - 1] == 13 else pending[:nl]
    if line[-9:-3] != b" HTTP/":
        return ParseError(400, "HTTP/0.9 or malformed request line")
    return None


def not_parsing(mode: int, data: bytes) -> list[Any]:
    """What ``feed()`` returns outside PARSE mode: tunnel bytes pass through, others are ignored."""
    if mode == TUNNEL and data:
        return [TunnelData(bytes(data))]
    return []


@mypyc_attr(allow_interpreted_subclasses=True)  # the h11 parsers are not compiled
class ParserBase:
    """What every parser holds: its mode and limit, and (used by response parsers only) the queue
    of the requests announced with ``expect_response``: one set of slots, so that a backend's own
    base class can add slots of its own, and one line of inheritance (a backend's response parser
    derives from its own base, not from ``ResponseParserBase`` too: mypyc compiles single
    inheritance only).

    ``_head_only`` / ``_upgrade`` describe the request the current (or next) response answers; one
    more request may be announced while a response is in progress (``_next``).
    """

    __slots__ = ("_head_only", "_max_head_size", "_mode", "_next", "_started", "_upgrade")

    def __init__(self, *, max_head_size: int) -> None:
        self._max_head_size = max_head_size
        self._mode = PARSE
        self._head_only = False  # the current/next response answers a HEAD request
        self._upgrade = False  # ... a request that asked for an upgrade
        self._next: tuple[bool, bool] | None = None  # announced while a response was in progress
        self._started = False  # bytes of the current response were received

    def _announce(self, method: bytes, upgrade: bool) -> None:
        """``expect_response``: the next response answers a request with this method."""
        head_only = method == b"HEAD"
        if not self._started:
            self._head_only = head_only
            self._upgrade = upgrade
            self._next = None
        else:
            self._next = (head_only, upgrade)

    def _response_done(self, keep_alive: bool) -> None:
        """A final response is complete: the next one answers the next announced request."""
        if not keep_alive:
            self._mode = DONE  # whatever the server sends after it is ignored
        self._started = False
        nxt = self._next
        if nxt is None:
            self._head_only = False
            self._upgrade = False
        else:
            self._head_only, self._upgrade = nxt
            self._next = None


@mypyc_attr(allow_interpreted_subclasses=True)
class RequestParserBase(ParserBase):
    """The skeleton of a request parser: modes and the ``feed()`` guard."""

    __slots__ = ()

    def feed(self, data: bytes) -> list[RequestEvent]:
        if self._mode != PARSE:
            skipped: list[Any] = not_parsing(self._mode, data)
            return skipped
        return self._parse(data)

    def _parse(self, data: bytes) -> list[RequestEvent]:
        raise NotImplementedError


@mypyc_attr(allow_interpreted_subclasses=True)
class ResponseParserBase(ParserBase):
    """The skeleton of a response parser: modes, the ``feed()`` guard and the announced requests."""

    __slots__ = ()

    def expect_response(self, *, method: bytes, upgrade: bool) -> None:
        self._announce(method, upgrade)

    def feed(self, data: bytes) -> list[ResponseEvent]:
        if self._mode != PARSE:
            skipped: list[Any] = not_parsing(self._mode, data)
            return skipped
        return self._parse(data)

    def _parse(self, data: bytes) -> list[ResponseEvent]:
        raise NotImplementedError
