"""Byte-table tests for the sans-IO HTTP/1.x parsers, run against both backends.

Every table row states the exact events expected; since both backends must pass the same rows,
they produce the same events. ParseErrors are compared on their status only (the messages come
from different libraries).
"""

from __future__ import annotations

from collections.abc import Sequence

import pytest

from proxy.http.parser import (
    END_OF_MESSAGE,
    UNKNOWN_LENGTH,
    Data,
    EndOfMessage,
    ParseError,
    RequestEvent,
    RequestHead,
    ResponseEvent,
    ResponseHead,
    TunnelData,
)
from proxy.http.parsers import PARSER_KINDS, ParserKind, make_request_parser, make_response_parser
from tests.proxy.parser_events import head_tuple

Event = tuple[object, ...]

MAX_HEAD = 8192

kinds = pytest.mark.parametrize("kind", PARSER_KINDS)


# -- helpers -------------------------------------------------------------------------------------


def norm(events: Sequence[RequestEvent | ResponseEvent]) -> list[Event]:
    """Events as comparable tuples."""
    out: list[Event] = []
    for e in events:
        if isinstance(e, RequestHead | ResponseHead):
            out.append(head_tuple(e))
        elif isinstance(e, Data):
            assert type(e.data) is bytes
            out.append(("data", e.data))
        elif isinstance(e, EndOfMessage):
            if e.trailers is None:
                assert e is END_OF_MESSAGE  # a message without trailers allocates no event
                out.append(("eom",))
            else:
                assert e.trailers and all(type(n) is bytes and type(v) is bytes for n, v in e.trailers)
                out.append(("eom", tuple(e.trailers)))
        elif isinstance(e, TunnelData):
            assert type(e.data) is bytes
            out.append(("tunnel", e.data))
        else:
            assert isinstance(e, ParseError)
            assert e.status in (400, 431)
            assert isinstance(e.message, str) and e.message
            out.append(("error", e.status))
    return out


def merge_data(events: list[Event]) -> list[Event]:
    """Join adjacent Data (and TunnelData) events: for inputs fed in arbitrary pieces."""
    out: list[Event] = []
    for e in events:
        if out and e[0] in ("data", "tunnel") and out[-1][0] == e[0]:
            out[-1] = (e[0], out[-1][1] + e[1])  # type: ignore[operator]
        else:
            out.append(e)
    return out


def req(
    target: bytes = b"/",
    headers: Sequence[tuple[bytes, bytes]] = ((b"Host", b"example.com"),),
    *,
    method: bytes = b"GET",
    version: bytes = b"1.1",
    keep_alive: bool = True,
    upgrade: bool = False,
    expect_continue: bool = False,
    content_length: int = 0,
    chunked: bool = False,
) -> Event:
    return (
        "req",
        method,
        target,
        version,
        tuple(headers),
        keep_alive,
        upgrade,
        expect_continue,
        content_length,
        chunked,
    )


def resp(
    status: int = 200,
    reason: bytes = b"OK",
    headers: Sequence[tuple[bytes, bytes]] = (),
    *,
    version: bytes = b"1.1",
    keep_alive: bool = True,
    content_length: int = 0,
    chunked: bool = False,
) -> Event:
    return ("resp", status, reason, version, tuple(headers), keep_alive, content_length, chunked)


def data(b: bytes) -> Event:
    return ("data", b)


def tunnel(b: bytes) -> Event:
    return ("tunnel", b)


EOM: Event = ("eom",)


def eom(*trailers: tuple[bytes, bytes]) -> Event:
    """The end of a message that came with these trailer fields."""
    return ("eom", trailers)


E400: Event = ("error", 400)
E431: Event = ("error", 431)

HOST = (b"Host", b"example.com")


def parse_requests(
    kind: ParserKind, chunks: Sequence[bytes], *, eof: bool = False, max_head_size: int = MAX_HEAD
) -> list[Event]:
    parser = make_request_parser(kind, max_head_size=max_head_size)
    events: list[RequestEvent] = []
    for chunk in chunks:
        events += parser.feed(chunk)
    if eof:
        events += parser.feed_eof()
    return norm(events)


def bytewise(raw: bytes) -> list[bytes]:
    return [raw[i : i + 1] for i in range(len(raw))]


# -- requests ------------------------------------------------------------------------------------

SIMPLE_GET = b"GET /index.html HTTP/1.1\r\nHost: example.com\r\nUser-Agent: curl/8.5.0\r\nAccept: */*\r\n\r\n"

CHUNKED_HEAD = b"POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n"
CHUNKED_REQ = req(
    b"/",
    [(b"Host", b"a"), (b"Transfer-Encoding", b"chunked")],
    method=b"POST",
    content_length=-1,
    chunked=True,
)

REQUEST_TABLE: list[tuple[str, bytes, list[Event]]] = [
    (
        "simple GET",
        SIMPLE_GET,
        [
            req(b"/index.html", [HOST, (b"User-Agent", b"curl/8.5.0"), (b"Accept", b"*/*")]),
            EOM,
        ],
    ),
    (
        "connection close: later bytes ignored",
        b"GET /a HTTP/1.1\r\nHost: example.com\r\nConnection: close\r\n\r\n"
        b"GET /b HTTP/1.1\r\nHost: x\r\n\r\n",
        [req(b"/a", [HOST, (b"Connection", b"close")], keep_alive=False), EOM],
    ),
    (
        "connection close token in a list",
        b"GET /a HTTP/1.1\r\nHost: example.com\r\nConnection: foo, Close\r\n\r\n",
        [req(b"/a", [HOST, (b"Connection", b"foo, Close")], keep_alive=False), EOM],
    ),
    (
        "HTTP/1.0 without keep-alive, no Host needed",
        b"GET /a HTTP/1.0\r\n\r\nGET /b HTTP/1.0\r\n\r\n",
        [req(b"/a", [], version=b"1.0", keep_alive=False), EOM],
    ),
    (
        "HTTP/1.0 with keep-alive: pipelining continues",
        b"GET /a HTTP/1.0\r\nConnection: keep-alive\r\n\r\nGET /b HTTP/1.0\r\n\r\n",
        [
            req(b"/a", [(b"Connection", b"keep-alive")], version=b"1.0"),
            EOM,
            req(b"/b", [], version=b"1.0", keep_alive=False),
            EOM,
        ],
    ),
    (
        "content-length body",
        b"POST /form HTTP/1.1\r\nHost: example.com\r\nContent-Length: 5\r\n\r\nhello",
        [
            req(b"/form", [HOST, (b"Content-Length", b"5")], method=b"POST", content_length=5),
            data(b"hello"),
            EOM,
        ],
    ),
    (
        "chunked body with extensions and trailers",
        b"POST /up HTTP/1.1\r\nHost: example.com\r\nTransfer-Encoding: chunked\r\n\r\n"
        b'5;name=value\r\nhello\r\n6;a=b;c="d e"\r\n world\r\n0\r\nX-Trailer: yes\r\nX-Other: 1\r\n\r\n',
        [
            req(
                b"/up",
                [HOST, (b"Transfer-Encoding", b"chunked")],
                method=b"POST",
                content_length=UNKNOWN_LENGTH,
                chunked=True,
            ),
            data(b"hello"),
            data(b" world"),
            eom((b"X-Trailer", b"yes"), (b"X-Other", b"1")),
        ],
    ),
    (
        "chunked: uppercase hex size, no trailers",
        b"PUT /x HTTP/1.1\r\nHost: example.com\r\nTransfer-Encoding: chunked\r\n\r\n"
        b"A\r\n0123456789\r\n0\r\n\r\n",
        [
            req(
                b"/x",
                [HOST, (b"Transfer-Encoding", b"chunked")],
                method=b"PUT",
                content_length=UNKNOWN_LENGTH,
                chunked=True,
            ),
            data(b"0123456789"),
            EOM,
        ],
    ),
    (
        "pipelined GETs in one feed",
        b"GET /1 HTTP/1.1\r\nHost: example.com\r\n\r\n"
        b"GET /2 HTTP/1.1\r\nHost: example.com\r\n\r\n"
        b"HEAD /3 HTTP/1.1\r\nHost: example.com\r\nConnection: close\r\n\r\n",
        [
            req(b"/1"),
            EOM,
            req(b"/2"),
            EOM,
            req(b"/3", [HOST, (b"Connection", b"close")], method=b"HEAD", keep_alive=False),
            EOM,
        ],
    ),
    (
        "pipelined POST then GET",
        b"POST /1 HTTP/1.1\r\nHost: example.com\r\nContent-Length: 3\r\n\r\nabc"
        b"GET /2 HTTP/1.1\r\nHost: example.com\r\n\r\n",
        [
            req(b"/1", [HOST, (b"Content-Length", b"3")], method=b"POST", content_length=3),
            data(b"abc"),
            EOM,
            req(b"/2"),
            EOM,
        ],
    ),
    (
        "empty lines before a request are skipped",
        b"\r\nGET /1 HTTP/1.1\r\nHost: example.com\r\n\r\n\r\nGET /2 HTTP/1.1\r\nHost: example.com\r\n\r\n",
        [req(b"/1"), EOM, req(b"/2"), EOM],
    ),
    (
        "expect 100-continue",
        b"POST /u HTTP/1.1\r\nHost: example.com\r\nExpect: 100-Continue\r\nContent-Length: 2\r\n\r\nhi",
        [
            req(
                b"/u",
                [HOST, (b"Expect", b"100-Continue"), (b"Content-Length", b"2")],
                method=b"POST",
                expect_continue=True,
                content_length=2,
            ),
            data(b"hi"),
            EOM,
        ],
    ),
    (
        "other expectation",
        b"POST /u HTTP/1.1\r\nHost: example.com\r\nExpect: something\r\nContent-Length: 0\r\n\r\n",
        [req(b"/u", [HOST, (b"Expect", b"something"), (b"Content-Length", b"0")], method=b"POST"), EOM],
    ),
    (
        "websocket upgrade then raw bytes",
        b"GET /cable HTTP/1.1\r\nHost: example.com\r\n"
        b"Connection: keep-alive, Upgrade\r\nUpgrade: websocket\r\n"
        b"Sec-WebSocket-Version: 13\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\r\n"
        b"\x81\x85\x37\xfa\x21\x3d\x7f\x9f\x4d\x51\x58GET / HTTP/1.1\r\n\r\n",
        [
            req(
                b"/cable",
                [
                    HOST,
                    (b"Connection", b"keep-alive, Upgrade"),
                    (b"Upgrade", b"websocket"),
                    (b"Sec-WebSocket-Version", b"13"),
                    (b"Sec-WebSocket-Key", b"dGhlIHNhbXBsZSBub25jZQ=="),
                ],
                upgrade=True,
            ),
            EOM,
            tunnel(b"\x81\x85\x37\xfa\x21\x3d\x7f\x9f\x4d\x51\x58GET / HTTP/1.1\r\n\r\n"),
        ],
    ),
    (
        "Upgrade header without Connection: upgrade is no upgrade",
        b"GET / HTTP/1.1\r\nHost: example.com\r\nUpgrade: websocket\r\n\r\n"
        b"GET /2 HTTP/1.1\r\nHost: example.com\r\n\r\n",
        [req(b"/", [HOST, (b"Upgrade", b"websocket")]), EOM, req(b"/2"), EOM],
    ),
    (
        "header case kept, values stripped, duplicates kept in order",
        b"GET / HTTP/1.1\r\nhOsT: example.com\r\nX-MiXeD-CaSe:   spaced  value \t \r\nX-Empty:\r\n"
        b"X-Dup: 1\r\nx-dup: 2\r\nX-Obs: caf\xc3\xa9\r\n\r\n",
        [
            req(
                b"/",
                [
                    (b"hOsT", b"example.com"),
                    (b"X-MiXeD-CaSe", b"spaced  value"),
                    (b"X-Empty", b""),
                    (b"X-Dup", b"1"),
                    (b"x-dup", b"2"),
                    (b"X-Obs", b"caf\xc3\xa9"),
                ],
            ),
            EOM,
        ],
    ),
    (
        "raw target kept verbatim",
        b"GET /a/../b//c?p1=a;b;c&p2=%x&q=%20+%2F#frag HTTP/1.1\r\nHost: example.com\r\n\r\n",
        [req(b"/a/../b//c?p1=a;b;c&p2=%x&q=%20+%2F#frag"), EOM],
    ),
    (
        "absolute-form and asterisk targets",
        b"GET http://example.com/x?y HTTP/1.1\r\nHost: example.com\r\n\r\n"
        b"OPTIONS * HTTP/1.1\r\nHost: example.com\r\n\r\n",
        [req(b"/x?y"), EOM, req(b"*", method=b"OPTIONS"), EOM],
    ),
    (
        "lowercase chunked coding name",
        b"POST / HTTP/1.1\r\nHost: example.com\r\nTransfer-Encoding: Chunked\r\n\r\n0\r\n\r\n",
        [
            req(
                b"/",
                [HOST, (b"Transfer-Encoding", b"chunked")],
                method=b"POST",
                content_length=UNKNOWN_LENGTH,
                chunked=True,
            ),
            EOM,
        ],
    ),
    # -- errors --
    ("garbage", b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03", [E400]),
    ("garbage text", b"HELLO WORLD\r\n\r\n", [E400]),
    ("lowercase method", b"get / HTTP/1.1\r\nHost: example.com\r\n\r\n", [E400]),
    ("unknown method", b"FOO / HTTP/1.1\r\nHost: example.com\r\n\r\n", [E400]),
    ("space in target", b"GET /a b HTTP/1.1\r\nHost: example.com\r\n\r\n", [E400]),
    ("non-ascii target", b"GET /caf\xc3\xa9 HTTP/1.1\r\nHost: example.com\r\n\r\n", [E400]),
    ("HTTP/2.0 request line", b"GET / HTTP/2.0\r\nHost: example.com\r\n\r\n", [E400]),
    ("HTTP/1.2", b"GET / HTTP/1.2\r\nHost: example.com\r\n\r\n", [E400]),
    ("missing Host on HTTP/1.1", b"GET / HTTP/1.1\r\nAccept: */*\r\n\r\n", [E400]),
    ("two Host headers", b"GET / HTTP/1.1\r\nHost: a\r\nHost: b\r\n\r\n", [E400]),
    ("space before colon", b"GET / HTTP/1.1\r\nHost: a\r\nX-A : b\r\n\r\n", [E400]),
    ("obs-fold", b"GET / HTTP/1.1\r\nHost: a\r\nX-A: b\r\n c\r\n\r\n", [E400]),
    ("bare LF line ends", b"GET / HTTP/1.1\nHost: a\n\n", [E400]),
    ("bare LF after a header", b"GET / HTTP/1.1\r\nHost: a\nX: b\r\n\r\n", [E400]),
    ("DEL in value", b"GET / HTTP/1.1\r\nHost: a\r\nX-A: b\x7fc\r\n\r\n", [E400]),
    ("target not origin/absolute form", b"GET index.html HTTP/1.1\r\nHost: a\r\n\r\n", [E400]),
    ("NUL in value", b"GET / HTTP/1.1\r\nHost: a\r\nX-A: b\x00c\r\n\r\n", [E400]),
    (
        "CL + TE smuggling",
        b"POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 4\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n",
        [E400],
    ),
    (
        "TE + CL smuggling",
        b"POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\nContent-Length: 4\r\n\r\n0\r\n\r\n",
        [E400],
    ),
    (
        "TE gzip, chunked",
        b"POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: gzip, chunked\r\n\r\n0\r\n\r\n",
        [E400],
    ),
    ("TE gzip", b"POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: gzip\r\n\r\n", [E400]),
    (
        "TE twice",
        b"POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\nTransfer-Encoding: chunked\r\n\r\n"
        b"0\r\n\r\n",
        [E400],
    ),
    ("CL not a number", b"POST / HTTP/1.1\r\nHost: a\r\nContent-Length: abc\r\n\r\n", [E400]),
    ("CL negative", b"POST / HTTP/1.1\r\nHost: a\r\nContent-Length: -1\r\n\r\n", [E400]),
    ("CL with plus", b"POST / HTTP/1.1\r\nHost: a\r\nContent-Length: +1\r\n\r\nx", [E400]),
    ("CL list", b"POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 1, 2\r\n\r\nx", [E400]),
    (
        "CL twice, different",
        b"POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 1\r\nContent-Length: 2\r\n\r\nx",
        [E400],
    ),
    ("CL overflow", b"POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 99999999999999999999999\r\n\r\n", [E400]),
    (
        "bad chunk size",
        b"POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n",
        [
            req(
                b"/",
                [(b"Host", b"a"), (b"Transfer-Encoding", b"chunked")],
                method=b"POST",
                content_length=-1,
                chunked=True,
            ),
            E400,
        ],
    ),
    (
        "chunk longer than its size",
        b"POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabcd\r\n0\r\n\r\n",
        [
            req(
                b"/",
                [(b"Host", b"a"), (b"Transfer-Encoding", b"chunked")],
                method=b"POST",
                content_length=-1,
                chunked=True,
            ),
            data(b"abc"),
            E400,
        ],
    ),
    ("CONNECT", b"CONNECT example.com:443 HTTP/1.1\r\nHost: example.com:443\r\n\r\n", [E400]),
    (
        "upgrade request with a body",
        b"POST / HTTP/1.1\r\nHost: a\r\nConnection: upgrade\r\nUpgrade: h2c\r\nContent-Length: 2\r\n\r\nhi",
        [E400],
    ),
    (
        "error after a good request",
        b"GET /ok HTTP/1.1\r\nHost: example.com\r\n\r\nBAD\r\n\r\n",
        [req(b"/ok"), EOM, E400],
    ),
    # -- framing edges (issue 9 item 7) ----------------------------------------------------------
    (
        "HTTP/1.0 keep-alive with Transfer-Encoding closes after it: what follows is never a request",
        b"POST /a HTTP/1.0\r\nConnection: keep-alive\r\nTransfer-Encoding: chunked\r\n\r\n"
        b"3\r\nabc\r\n0\r\n\r\nGET /smuggled HTTP/1.1\r\nHost: example.com\r\n\r\n",
        [
            req(
                b"/a",
                [(b"Connection", b"keep-alive"), (b"Transfer-Encoding", b"chunked")],
                method=b"POST",
                version=b"1.0",
                keep_alive=False,
                content_length=-1,
                chunked=True,
            ),
            data(b"abc"),
            EOM,
        ],
    ),
    (
        "absolute-form target: its authority is the Host, the target is forwarded in origin form",
        b"GET http://other.test/path?q=1 HTTP/1.1\r\nHost: app.test\r\nAccept: */*\r\n\r\n",
        [req(b"/path?q=1", [(b"Host", b"other.test"), (b"Accept", b"*/*")]), EOM],
    ),
    (
        "absolute-form target with user info, port and no path",
        b"GET https://user:pw@other.test:8443?x HTTP/1.1\r\nHost: app.test\r\n\r\n",
        [req(b"/?x", [(b"Host", b"other.test:8443")]), EOM],
    ),
    (
        "absolute-form target of an HTTP/1.0 request without Host gives it one",
        b"GET http://other.test/ HTTP/1.0\r\n\r\n",
        [req(b"/", [(b"Host", b"other.test")], version=b"1.0", keep_alive=False), EOM],
    ),
    (
        "two equal Content-Length fields",
        b"POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 1\r\ncontent-length: 1\r\n\r\nx",
        [E400],
    ),
    (
        "an empty Upgrade field asks for no upgrade",
        b"GET / HTTP/1.1\r\nHost: a\r\nConnection: upgrade\r\nUpgrade:\r\n\r\nGET /2 HTTP/1.1\r\nHost: a\r\n\r\n",
        [
            req(b"/", [(b"Host", b"a"), (b"Connection", b"upgrade"), (b"Upgrade", b"")]),
            EOM,
            req(b"/2", [(b"Host", b"a")]),
            EOM,
        ],
    ),
    ("HTTP/0.9 request line: 400 at once", b"GET /\r\n", [E400]),
    (
        "HTTP/0.9 request line after a request",
        b"GET / HTTP/1.1\r\nHost: example.com\r\n\r\nGET /\r\n",
        [req(), EOM, E400],
    ),
    ("authority-form target outside CONNECT", b"GET other.test:80 HTTP/1.1\r\nHost: a\r\n\r\n", [E400]),
    ("request line with a version llhttp does not know", b"GET / HTTP/2.0\r\nHost: a\r\n\r\n", [E400]),
    ("HTTP/2 preface method", b"PRI / HTTP/1.1\r\n\r\n", [E400]),
    (
        "chunk size of 17 hex digits overflows 64 bits: nothing of it is forwarded",
        CHUNKED_HEAD + b"10000000000000000\r\n" + b"a" * 40 + b"\r\n0\r\n\r\n",
        [CHUNKED_REQ, E400],
    ),
    (
        "chunk size overflowing 64 bits with 20 digits",
        CHUNKED_HEAD + b"fffffffffffffffff0\r\nabc\r\n",
        [CHUNKED_REQ, E400],
    ),
    (
        "largest 64-bit chunk size is a chunk like any other",
        CHUNKED_HEAD + b"ffffffffffffffff\r\nabc",
        [CHUNKED_REQ, data(b"abc")],
    ),
    (
        "chunk size with leading zeros (value fits)",
        CHUNKED_HEAD + b"000000000000000000000003\r\nabc\r\n0\r\n\r\n",
        [CHUNKED_REQ, data(b"abc"), EOM],
    ),
    ("space after a chunk size", CHUNKED_HEAD + b"3 \r\nabc\r\n0\r\n\r\n", [CHUNKED_REQ, E400]),
    ("space before a chunk extension", CHUNKED_HEAD + b"3 ;a=b\r\nabc\r\n0\r\n\r\n", [CHUNKED_REQ, E400]),
    ("empty chunk extension", CHUNKED_HEAD + b"3;\r\nabc\r\n0\r\n\r\n", [CHUNKED_REQ, E400]),
    (
        "chunk extensions as llhttp accepts them",
        CHUNKED_HEAD + b'3;a=b;c;d="e f"\r\nabc\r\n0;x\r\n\r\n',
        [CHUNKED_REQ, data(b"abc"), EOM],
    ),
    ("hex prefix in a chunk size", CHUNKED_HEAD + b"0x3\r\nabc\r\n0\r\n\r\n", [CHUNKED_REQ, E400]),
    (
        "chunk data not followed by CRLF",
        CHUNKED_HEAD + b"3\r\nabcd\r\n0\r\n\r\n",
        [CHUNKED_REQ, data(b"abc"), E400],
    ),
    (
        "Content-Length in the trailer section",
        CHUNKED_HEAD + b"3\r\nabc\r\n0\r\nContent-Length: 5\r\n\r\n",
        [CHUNKED_REQ, data(b"abc"), E400],
    ),
    ("bare LF in the trailer section", CHUNKED_HEAD + b"0\r\nX: y\n\r\n", [CHUNKED_REQ, E400]),
    (
        "trailer fields: names as sent, values stripped, repeats kept in order",
        CHUNKED_HEAD + b"2\r\nab\r\n0\r\nX-Sum:  a b \t\r\nx-sum:c\r\nHost: elsewhere\r\n\r\n",
        [CHUNKED_REQ, data(b"ab"), eom((b"X-Sum", b"a b"), (b"x-sum", b"c"), (b"Host", b"elsewhere"))],
    ),
    (
        "trailers end their own message: the next request's head does not see them",
        CHUNKED_HEAD + b"0\r\nX-T: 1\r\n\r\nGET /n HTTP/1.1\r\nHost: example.com\r\n\r\n",
        [CHUNKED_REQ, eom((b"X-T", b"1")), req(b"/n"), EOM],
    ),
    (
        "Transfer-Encoding in the trailer section",
        CHUNKED_HEAD + b"0\r\nTransfer-Encoding: chunked\r\n\r\n",
        [CHUNKED_REQ, E400],
    ),
    ("Connection in the trailer section", CHUNKED_HEAD + b"0\r\nConnection: x\r\n\r\n", [CHUNKED_REQ, E400]),
    (
        "Proxy-Connection in the trailer section (llhttp would close on it)",
        CHUNKED_HEAD + b"0\r\nProxy-Connection: close\r\n\r\n",
        [CHUNKED_REQ, E400],
    ),
    ("CR inside a trailer value", CHUNKED_HEAD + b"0\r\nX: a\rb\r\n\r\n", [CHUNKED_REQ, E400]),
    ("NUL in a trailer value", CHUNKED_HEAD + b"0\r\nX: a\x00b\r\n\r\n", [CHUNKED_REQ, E400]),
    ("obs-fold in the trailer section", CHUNKED_HEAD + b"0\r\nX: a\r\n b\r\n\r\n", [CHUNKED_REQ, E400]),
    ("whitespace before a trailer colon", CHUNKED_HEAD + b"0\r\nX : a\r\n\r\n", [CHUNKED_REQ, E400]),
    (
        "Transfer-Encoding chunked followed by a tab: not chunked to llhttp, so refused",
        b"POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\t\r\n\r\n0\r\n\r\n",
        [E400],
    ),
]


@kinds
@pytest.mark.parametrize(
    ("raw", "expected"), [row[1:] for row in REQUEST_TABLE], ids=[r[0] for r in REQUEST_TABLE]
)
def test_request_table(kind: ParserKind, raw: bytes, expected: list[Event]) -> None:
    assert parse_requests(kind, [raw]) == expected


@kinds
@pytest.mark.parametrize(
    ("raw", "expected"), [row[1:] for row in REQUEST_TABLE], ids=[r[0] for r in REQUEST_TABLE]
)
def test_request_table_bytewise(kind: ParserKind, raw: bytes, expected: list[Event]) -> None:
    assert merge_data(parse_requests(kind, bytewise(raw))) == merge_data(expected)


@kinds
def test_content_length_body_in_one_byte_pieces(kind: ParserKind) -> None:
    raw = b"POST /form HTTP/1.1\r\nHost: example.com\r\nContent-Length: 5\r\n\r\nhello"
    head = req(b"/form", [HOST, (b"Content-Length", b"5")], method=b"POST", content_length=5)
    parser = make_request_parser(kind, max_head_size=MAX_HEAD)
    split = raw.index(b"\r\n\r\n") + 4
    assert norm(parser.feed(raw[:split])) == [head]
    got = [norm(parser.feed(raw[i : i + 1])) for i in range(split, len(raw))]
    assert got == [[data(b"h")], [data(b"e")], [data(b"l")], [data(b"l")], [data(b"o"), EOM]]
    assert parser.feed_eof() == []


@kinds
def test_head_split_across_feeds(kind: ParserKind) -> None:
    parser = make_request_parser(kind, max_head_size=MAX_HEAD)
    assert parser.feed(b"GET /a?b=c HT") == []
    assert parser.feed(b"TP/1.1\r\nHo") == []
    assert parser.feed(b"st: example.com\r\nX-Long: aaaa") == []
    assert parser.feed(b"bbbb\r\n") == []
    assert parser.feed(b"\r") == []
    assert norm(parser.feed(b"\nGET /next HTTP/1.1\r\n")) == [
        req(b"/a?b=c", [HOST, (b"X-Long", b"aaaabbbb")]),
        EOM,
    ]
    assert norm(parser.feed(b"Host: example.com\r\n\r\n")) == [req(b"/next"), EOM]


@kinds
def test_chunked_body_split_everywhere(kind: ParserKind) -> None:
    raw = (
        b"POST /up HTTP/1.1\r\nHost: example.com\r\nTransfer-Encoding: chunked\r\n\r\n"
        b"5;ext=1\r\nhello\r\n10\r\n0123456789abcdef\r\n0\r\nTrailer-A: x\r\n\r\n"
    )
    whole = parse_requests(kind, [raw])
    assert whole == [
        req(
            b"/up",
            [HOST, (b"Transfer-Encoding", b"chunked")],
            method=b"POST",
            content_length=-1,
            chunked=True,
        ),
        data(b"hello"),
        data(b"0123456789abcdef"),
        eom((b"Trailer-A", b"x")),
    ]
    for cut in range(1, len(raw)):
        assert merge_data(parse_requests(kind, [raw[:cut], raw[cut:]])) == merge_data(whole), cut


@kinds
def test_oversized_head_431(kind: ParserKind) -> None:
    big = b"GET / HTTP/1.1\r\nHost: example.com\r\nX-Big: " + b"a" * 2000 + b"\r\n\r\n"
    assert parse_requests(kind, [big], max_head_size=1024) == [E431]
    # fed in pieces the head never completes before the limit is hit
    pieces = [big[i : i + 100] for i in range(0, len(big), 100)]
    assert parse_requests(kind, pieces, max_head_size=1024) == [E431]
    # many small headers
    many = (
        b"GET / HTTP/1.1\r\nHost: example.com\r\n"
        + b"".join(b"X-H%d: v\r\n" % i for i in range(200))
        + b"\r\n"
    )
    assert parse_requests(kind, [many], max_head_size=1024) == [E431]
    # a huge target
    assert parse_requests(
        kind, [b"GET /" + b"x" * 3000 + b" HTTP/1.1\r\nHost: a\r\n\r\n"], max_head_size=1024
    ) == [E431]
    # a never-ending header trickled in
    parser = make_request_parser(kind, max_head_size=1024)
    out: list[RequestEvent] = list(parser.feed(b"GET / HTTP/1.1\r\nHost: example.com\r\nX-Slow: "))
    for _ in range(200):
        out += parser.feed(b"b" * 10)
    assert norm(out) == [E431]
    # just under the limit is fine
    ok = b"GET / HTTP/1.1\r\nHost: example.com\r\nX-Big: " + b"a" * 900 + b"\r\n\r\n"
    assert parse_requests(kind, [ok], max_head_size=1024) == [req(b"/", [HOST, (b"X-Big", b"a" * 900)]), EOM]
    assert merge_data(parse_requests(kind, bytewise(ok), max_head_size=1024)) == [
        req(b"/", [HOST, (b"X-Big", b"a" * 900)]),
        EOM,
    ]


@kinds
def test_oversized_trailers_431(kind: ParserKind) -> None:
    raw = (
        b"POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n1\r\nx\r\n0\r\nX-T: "
        + b"t" * 2000
        + b"\r\n\r\n"
    )
    events = parse_requests(kind, [raw], max_head_size=1024)
    assert events[-1] == E431
    assert EOM not in events


@kinds
def test_upgrade_then_tunnel_feeds(kind: ParserKind) -> None:
    parser = make_request_parser(kind, max_head_size=MAX_HEAD)
    head = b"GET /ws HTTP/1.1\r\nHost: example.com\r\nConnection: Upgrade\r\nUpgrade: websocket\r\n\r\n"
    assert norm(parser.feed(head)) == [
        req(b"/ws", [HOST, (b"Connection", b"Upgrade"), (b"Upgrade", b"websocket")], upgrade=True),
        EOM,
    ]
    assert norm(parser.feed(b"\x81\x00")) == [tunnel(b"\x81\x00")]
    assert norm(parser.feed(b"GET / HTTP/1.1\r\n\r\n")) == [tunnel(b"GET / HTTP/1.1\r\n\r\n")]
    assert parser.feed(b"") == []
    assert parser.feed_eof() == []


@kinds
def test_request_eof(kind: ParserKind) -> None:
    assert parse_requests(kind, [], eof=True) == []
    assert parse_requests(kind, [SIMPLE_GET], eof=True)[-1] == EOM
    assert parse_requests(kind, [b"GET / HTTP/1.1\r\nHo"], eof=True) == [E400]
    cut_body = b"POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 10\r\n\r\nabc"
    assert parse_requests(kind, [cut_body], eof=True) == [
        req(b"/", [(b"Host", b"a"), (b"Content-Length", b"10")], method=b"POST", content_length=10),
        data(b"abc"),
        E400,
    ]
    cut_chunked = b"POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nab"
    assert parse_requests(kind, [cut_chunked], eof=True)[-2:] == [data(b"ab"), E400]


@kinds
def test_parser_unusable_after_error(kind: ParserKind) -> None:
    parser = make_request_parser(kind, max_head_size=MAX_HEAD)
    assert norm(parser.feed(b"NOT HTTP\r\n\r\n")) == [E400]
    assert parser.feed(SIMPLE_GET) == []
    assert parser.feed_eof() == []


@kinds
def test_connection_close_stops_parsing(kind: ParserKind) -> None:
    parser = make_request_parser(kind, max_head_size=MAX_HEAD)
    events = norm(parser.feed(b"GET / HTTP/1.1\r\nHost: example.com\r\nConnection: close\r\n\r\n"))
    assert events == [req(b"/", [HOST, (b"Connection", b"close")], keep_alive=False), EOM]
    assert parser.feed(SIMPLE_GET) == []
    assert parser.feed_eof() == []


@kinds
def test_many_pipelined_requests_in_order(kind: ParserKind) -> None:
    raw = b"".join(b"GET /%d HTTP/1.1\r\nHost: example.com\r\n\r\n" % i for i in range(50))
    expected: list[Event] = []
    for i in range(50):
        expected += [req(b"/%d" % i), EOM]
    assert parse_requests(kind, [raw]) == expected
    assert parse_requests(kind, [raw[i : i + 7] for i in range(0, len(raw), 7)]) == expected


@kinds
@pytest.mark.parametrize("split", [None, 7])
def test_each_pipelined_request_keeps_its_own_http_version(kind: ParserKind, split: int | None) -> None:
    raw = (
        b"GET /a HTTP/1.1\r\nHost: a\r\n\r\n"
        b"GET /b HTTP/1.0\r\nHost: a\r\nConnection: keep-alive\r\n\r\n"
        b"GET /c HTTP/1.1\r\nHost: a\r\n\r\n"
    )
    feeds = [raw] if split is None else [raw[i : i + split] for i in range(0, len(raw), split)]
    parser = make_request_parser(kind, max_head_size=MAX_HEAD)
    heads = [e for chunk in feeds for e in parser.feed(chunk) if isinstance(e, RequestHead)]
    assert [(h.target, h.version) for h in heads] == [(b"/a", b"1.1"), (b"/b", b"1.0"), (b"/c", b"1.1")]


@kinds
@pytest.mark.parametrize(
    "raw",
    [
        b"GET /a HTTP/1.0\r\nX-Note: HTTP/1.1\r\n\r\n",  # the version is the request line's
        b"\r\nGET /a HTTP/1.0\r\nX-Note: HTTP/1.1\r\n\r\n",  # after an empty line
        b"GET /a HTTP/1.0\nX-Note: x HTTP/1.1\r\n\r\n",  # a bare LF ends the request line
    ],
)
def test_an_http_1_0_request_is_never_taken_for_1_1(kind: ParserKind, raw: bytes) -> None:
    parser = make_request_parser(kind, max_head_size=MAX_HEAD)
    heads = [e for e in parser.feed(raw) if isinstance(e, RequestHead)]
    assert [h.version for h in heads] in ([b"1.0"], [])  # (a parser may refuse the bare LF)


@kinds
def test_an_interim_and_a_final_response_each_keep_their_http_version(kind: ParserKind) -> None:
    raw = (
        b"HTTP/1.1 100 Continue\r\n\r\nHTTP/1.0 200 OK\r\nContent-Length: 0\r\nConnection: keep-alive\r\n\r\n"
    )
    parser = make_response_parser(kind, max_head_size=MAX_HEAD)
    parser.expect_response(method=b"POST", upgrade=False)
    heads = [e for e in parser.feed(raw) if isinstance(e, ResponseHead)]
    assert [(h.status, h.version) for h in heads] == [(100, b"1.1"), (200, b"1.0")]
    parser.expect_response(method=b"GET", upgrade=False)
    heads = [e for e in parser.feed(b"HTTP/1.0 204 No Content\r\n\r\n") if isinstance(e, ResponseHead)]
    assert [(h.status, h.version) for h in heads] == [(204, b"1.0")]


# -- responses -----------------------------------------------------------------------------------

Step = tuple[str, object]  # ("expect", (method, upgrade)) | ("feed", bytes) | ("eof", None)


def run_responses(kind: ParserKind, steps: Sequence[Step], *, max_head_size: int = MAX_HEAD) -> list[Event]:
    parser = make_response_parser(kind, max_head_size=max_head_size)
    events: list[ResponseEvent] = []
    for op, arg in steps:
        if op == "expect":
            assert isinstance(arg, tuple)
            method, upgrade = arg
            assert isinstance(method, bytes) and isinstance(upgrade, bool)
            parser.expect_response(method=method, upgrade=upgrade)
        elif op == "feed":
            assert isinstance(arg, bytes)
            events += parser.feed(arg)
        else:
            events += parser.feed_eof()
    return norm(events)


def expect(method: bytes = b"GET", upgrade: bool = False) -> Step:
    return ("expect", (method, upgrade))


def feed(raw: bytes) -> Step:
    return ("feed", raw)


EOF: Step = ("eof", None)

CT = (b"Content-Type", b"text/plain")

RESPONSE_TABLE: list[tuple[str, list[Step], list[Event]]] = [
    ("bad status line fails at its first wrong byte", [expect(), feed(b"HTTP/.1 200\r\n")], [E400]),
    ("four-digit status", [expect(), feed(b"HTTP/1.1 2000 OK\r\n")], [E400]),
    (
        "content-length",
        [expect(), feed(b"HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: 5\r\n\r\nhello")],
        [resp(200, b"OK", [CT, (b"Content-Length", b"5")], content_length=5), data(b"hello"), EOM],
    ),
    (
        "chunked with trailers",
        [
            expect(),
            feed(
                b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n"
                b"4;x=y\r\nWiki\r\n5\r\npedia\r\n0\r\nExpires: never\r\n\r\n"
            ),
        ],
        [
            resp(
                200, b"OK", [(b"Transfer-Encoding", b"chunked")], content_length=UNKNOWN_LENGTH, chunked=True
            ),
            data(b"Wiki"),
            data(b"pedia"),
            eom((b"Expires", b"never")),
        ],
    ),
    (
        "trailers end their response: the next response is parsed without them",
        [
            expect(),
            expect(),
            feed(
                b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\nTrailer: X-T\r\n\r\n"
                b"1\r\na\r\n0\r\nX-T: 1\r\nX-U: 2\r\n\r\nHTTP/1.1 204 No Content\r\n\r\n"
            ),
        ],
        [
            resp(
                200,
                b"OK",
                [(b"Transfer-Encoding", b"chunked"), (b"Trailer", b"X-T")],
                content_length=UNKNOWN_LENGTH,
                chunked=True,
            ),
            data(b"a"),
            eom((b"X-T", b"1"), (b"X-U", b"2")),
            resp(204, b"No Content"),
            EOM,
        ],
    ),
    (
        "Connection in a response's trailer section",
        [
            expect(),
            feed(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n0\r\nConnection: close\r\n\r\n"),
        ],
        [
            resp(
                200,
                b"OK",
                [(b"Transfer-Encoding", b"chunked")],
                content_length=UNKNOWN_LENGTH,
                chunked=True,
            ),
            E400,
        ],
    ),
    (
        "close-delimited, ended by EOF",
        [expect(), feed(b"HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\n\r\nabc"), feed(b"def"), EOF],
        [
            resp(200, b"OK", [CT], keep_alive=False, content_length=UNKNOWN_LENGTH),
            data(b"abc"),
            data(b"def"),
            EOM,
        ],
    ),
    (
        "HTTP/1.0 close-delimited",
        [expect(), feed(b"HTTP/1.0 200 OK\r\n\r\nabc"), EOF],
        [resp(version=b"1.0", keep_alive=False, content_length=UNKNOWN_LENGTH), data(b"abc"), EOM],
    ),
    (
        "HTTP/1.0 keep-alive with length",
        [expect(), feed(b"HTTP/1.0 200 OK\r\nConnection: keep-alive\r\nContent-Length: 1\r\n\r\nx")],
        [
            resp(
                version=b"1.0",
                headers=[(b"Connection", b"keep-alive"), (b"Content-Length", b"1")],
                content_length=1,
            ),
            data(b"x"),
            EOM,
        ],
    ),
    (
        "HTTP/1.0 without keep-alive",
        [expect(), feed(b"HTTP/1.0 200 OK\r\nContent-Length: 1\r\n\r\nx")],
        [
            resp(version=b"1.0", headers=[(b"Content-Length", b"1")], keep_alive=False, content_length=1),
            data(b"x"),
            EOM,
        ],
    ),
    (
        "connection close",
        [expect(), feed(b"HTTP/1.1 200 OK\r\nConnection: close\r\nContent-Length: 0\r\n\r\n")],
        [resp(headers=[(b"Connection", b"close"), (b"Content-Length", b"0")], keep_alive=False), EOM],
    ),
    (
        "HEAD response with Content-Length, then a second response",
        [
            expect(b"HEAD"),
            feed(b"HTTP/1.1 200 OK\r\nContent-Length: 1234\r\nContent-Type: text/html\r\n\r\n"),
            expect(),
            feed(b"HTTP/1.1 404 Not Found\r\nContent-Length: 2\r\n\r\nno"),
        ],
        [
            resp(headers=[(b"Content-Length", b"1234"), (b"Content-Type", b"text/html")]),
            EOM,
            resp(404, b"Not Found", [(b"Content-Length", b"2")], content_length=2),
            data(b"no"),
            EOM,
        ],
    ),
    (
        "HEAD response, chunked and split",
        [
            expect(b"HEAD"),
            feed(b"HTTP/1.1 200 OK\r\nTransfer-Enc"),
            feed(b"oding: chunked\r\n\r"),
            feed(b"\n"),
            expect(b"GET"),
            feed(b"HTTP/1.1 200 OK\r\nContent-Length: 1\r\n\r\n1"),
        ],
        [
            resp(headers=[(b"Transfer-Encoding", b"chunked")]),
            EOM,
            resp(headers=[(b"Content-Length", b"1")], content_length=1),
            data(b"1"),
            EOM,
        ],
    ),
    (
        "HEAD response without length stays keep-alive",
        [expect(b"HEAD"), feed(b"HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\n\r\n"), EOF],
        [resp(headers=[CT]), EOM],
    ),
    (
        "HEAD response after 100 continue",
        [expect(b"HEAD"), feed(b"HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 200 OK\r\nContent-Length: 9\r\n\r\n")],
        [resp(100, b"Continue"), EOM, resp(headers=[(b"Content-Length", b"9")]), EOM],
    ),
    (
        "204 and 304 have no body",
        [
            expect(),
            feed(b"HTTP/1.1 204 No Content\r\nContent-Length: 5\r\n\r\n"),
            expect(),
            feed(b'HTTP/1.1 304 Not Modified\r\nETag: "x"\r\nContent-Length: 100\r\n\r\n'),
            expect(),
            feed(b"HTTP/1.1 204 No Content\r\nTransfer-Encoding: chunked\r\n\r\n"),
        ],
        [
            resp(204, b"No Content", [(b"Content-Length", b"5")]),
            EOM,
            resp(304, b"Not Modified", [(b"ETag", b'"x"'), (b"Content-Length", b"100")]),
            EOM,
            resp(204, b"No Content", [(b"Transfer-Encoding", b"chunked")]),
            EOM,
        ],
    ),
    (
        "100 continue then 200",
        [
            expect(b"POST"),
            feed(b"HTTP/1.1 100 Continue\r\n\r\n"),
            feed(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok"),
        ],
        [
            resp(100, b"Continue"),
            EOM,
            resp(headers=[(b"Content-Length", b"2")], content_length=2),
            data(b"ok"),
            EOM,
        ],
    ),
    (
        "nothing may follow an interim response that closes (as llhttp)",
        [
            expect(b"POST"),
            feed(b"HTTP/1.1 100 Continue\r\nConnection: close\r\n\r\n"),
            feed(b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n"),
        ],
        [resp(100, b"Continue", [(b"Connection", b"close")], keep_alive=False), EOM, E400],
    ),
    (
        "103 early hints then 200, one feed",
        [
            expect(),
            feed(
                b"HTTP/1.1 103 Early Hints\r\nLink: </style.css>; rel=preload\r\n\r\n"
                b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n"
            ),
        ],
        [
            resp(103, b"Early Hints", [(b"Link", b"</style.css>; rel=preload")]),
            EOM,
            resp(headers=[(b"Content-Length", b"0")]),
            EOM,
        ],
    ),
    (
        "101 then tunnel",
        [
            expect(b"GET", True),
            feed(
                b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
                b"Sec-WebSocket-Accept: s3pPLMBiTxaQ9kYGzzhZRbK+xOo=\r\n\r\n\x81\x02hi"
            ),
            feed(b"HTTP/1.1 200 OK\r\n\r\n"),
            EOF,
        ],
        [
            resp(
                101,
                b"Switching Protocols",
                [
                    (b"Upgrade", b"websocket"),
                    (b"Connection", b"Upgrade"),
                    (b"Sec-WebSocket-Accept", b"s3pPLMBiTxaQ9kYGzzhZRbK+xOo="),
                ],
                keep_alive=False,
            ),
            tunnel(b"\x81\x02hi"),
            tunnel(b"HTTP/1.1 200 OK\r\n\r\n"),
        ],
    ),
    (
        "refused upgrade is an ordinary response",
        [expect(b"GET", True), feed(b"HTTP/1.1 403 Forbidden\r\nContent-Length: 1\r\n\r\nx")],
        [resp(403, b"Forbidden", [(b"Content-Length", b"1")], content_length=1), data(b"x"), EOM],
    ),
    (
        "two sequential responses",
        [
            expect(b"GET"),
            feed(b"HTTP/1.1 200 OK\r\nContent-Length: 3\r\n\r\none"),
            expect(b"POST"),
            feed(b"HTTP/1.1 201 Created\r\nTransfer-Encoding: chunked\r\n\r\n3\r\ntwo\r\n0\r\n\r\n"),
        ],
        [
            resp(headers=[(b"Content-Length", b"3")], content_length=3),
            data(b"one"),
            EOM,
            resp(201, b"Created", [(b"Transfer-Encoding", b"chunked")], content_length=-1, chunked=True),
            data(b"two"),
            EOM,
        ],
    ),
    (
        "no reason phrase",
        [
            expect(),
            feed(b"HTTP/1.1 200 \r\nContent-Length: 0\r\n\r\n"),
            feed(b"HTTP/1.1 500\r\nContent-Length: 0\r\n\r\n"),
        ],
        [resp(200, b"", [(b"Content-Length", b"0")]), EOM, resp(500, b"", [(b"Content-Length", b"0")]), EOM],
    ),
    (
        "header case kept, values stripped",
        [
            expect(),
            feed(
                b"HTTP/1.1 200 OK\r\nSet-Cookie:  a=b; Path=/  \r\nx-lower:\tv\t\r\nContent-Length: 0\r\n\r\n"
            ),
        ],
        [resp(headers=[(b"Set-Cookie", b"a=b; Path=/"), (b"x-lower", b"v"), (b"Content-Length", b"0")]), EOM],
    ),
    ("EOF before any response", [expect(), EOF], []),
    (
        "bytes after a Connection: close response are ignored",
        [
            expect(),
            feed(
                b"HTTP/1.1 200 OK\r\nConnection: close\r\nContent-Length: 1\r\n\r\nxHTTP/1.1 200 OK\r\n\r\n"
            ),
            expect(),
            feed(b"garbage"),
            EOF,
        ],
        [
            resp(
                headers=[(b"Connection", b"close"), (b"Content-Length", b"1")],
                keep_alive=False,
                content_length=1,
            ),
            data(b"x"),
            EOM,
        ],
    ),
    (
        "bytes after a HEAD response with Connection: close are ignored",
        [expect(b"HEAD"), feed(b"HTTP/1.1 200 OK\r\nConnection: close\r\nContent-Length: 1\r\n\r\nx"), EOF],
        [resp(headers=[(b"Connection", b"close"), (b"Content-Length", b"1")], keep_alive=False), EOM],
    ),
    # -- errors --
    (
        "truncated content-length body",
        [expect(), feed(b"HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\nabc"), EOF],
        [resp(headers=[(b"Content-Length", b"10")], content_length=10), data(b"abc"), E400],
    ),
    (
        "truncated chunked body",
        [expect(), feed(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nab"), EOF],
        [
            resp(headers=[(b"Transfer-Encoding", b"chunked")], content_length=-1, chunked=True),
            data(b"ab"),
            E400,
        ],
    ),
    ("truncated head", [expect(), feed(b"HTTP/1.1 200 OK\r\nContent-Le"), EOF], [E400]),
    ("truncated HEAD response head", [expect(b"HEAD"), feed(b"HTTP/1.1 200 OK\r\nContent-Le"), EOF], [E400]),
    (
        "EOF after 100 continue",
        [expect(), feed(b"HTTP/1.1 100 Continue\r\n\r\n"), EOF],
        [resp(100, b"Continue"), EOM, E400],
    ),
    ("garbage", [expect(), feed(b"SSH-2.0-OpenSSH_9.6\r\n")], [E400]),
    ("bare LF", [expect(), feed(b"HTTP/1.1 200 OK\nContent-Length: 0\n\n")], [E400]),
    ("obs-fold", [expect(), feed(b"HTTP/1.1 200 OK\r\nX-A: b\r\n c\r\nContent-Length: 0\r\n\r\n")], [E400]),
    ("bad status", [expect(), feed(b"HTTP/1.1 2000 OK\r\n\r\n")], [E400]),
    ("HTTP/2.0 status line", [expect(), feed(b"HTTP/2.0 200 OK\r\nContent-Length: 0\r\n\r\n")], [E400]),
    (
        "CL + TE",
        [
            expect(),
            feed(b"HTTP/1.1 200 OK\r\nContent-Length: 3\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n"),
        ],
        [E400],
    ),
    ("TE gzip", [expect(), feed(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: gzip\r\n\r\nabc")], [E400]),
    ("bad CL", [expect(), feed(b"HTTP/1.1 200 OK\r\nContent-Length: 1x\r\n\r\nabc")], [E400]),
    (
        "101 without an upgrade request",
        [
            expect(),
            feed(b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\r\n"),
        ],
        [E400],
    ),
    (
        "101 without upgrade headers",
        [expect(b"GET", True), feed(b"HTTP/1.1 101 Switching Protocols\r\n\r\nraw")],
        [E400],
    ),
    ("unknown 1xx", [expect(), feed(b"HTTP/1.1 199 Odd\r\n\r\nHTTP/1.1 200 OK\r\n\r\n")], [E400]),
    (
        "oversized head",
        [expect(), feed(b"HTTP/1.1 200 OK\r\nX-Big: " + b"z" * 2000 + b"\r\nContent-Length: 0\r\n\r\n")],
        [E431],
    ),
    (
        "oversized HEAD response head",
        [expect(b"HEAD"), feed(b"HTTP/1.1 200 OK\r\nX-Big: " + b"z" * 2000)],
        [E431],
    ),
]


@kinds
@pytest.mark.parametrize(
    ("steps", "expected"), [row[1:] for row in RESPONSE_TABLE], ids=[r[0] for r in RESPONSE_TABLE]
)
def test_response_table(kind: ParserKind, steps: list[Step], expected: list[Event]) -> None:
    assert run_responses(kind, steps, max_head_size=1024) == expected


def _bytewise_steps(steps: list[Step]) -> list[Step]:
    out: list[Step] = []
    for op, arg in steps:
        if op == "feed":
            assert isinstance(arg, bytes)
            out += [feed(piece) for piece in bytewise(arg)]
        else:
            out.append((op, arg))
    return out


@kinds
@pytest.mark.parametrize(
    ("steps", "expected"), [row[1:] for row in RESPONSE_TABLE], ids=[r[0] for r in RESPONSE_TABLE]
)
def test_response_table_bytewise(kind: ParserKind, steps: list[Step], expected: list[Event]) -> None:
    got = merge_data(run_responses(kind, _bytewise_steps(steps), max_head_size=1024))
    assert got == merge_data(expected)


@kinds
def test_response_without_expect_defaults_to_get(kind: ParserKind) -> None:
    events = run_responses(kind, [feed(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nhi")])
    assert events == [resp(headers=[(b"Content-Length", b"2")], content_length=2), data(b"hi"), EOM]


@kinds
def test_response_parser_unusable_after_error(kind: ParserKind) -> None:
    parser = make_response_parser(kind, max_head_size=MAX_HEAD)
    parser.expect_response(method=b"GET", upgrade=False)
    assert norm(parser.feed(b"nonsense\r\n\r\n")) == [E400]
    parser.expect_response(method=b"GET", upgrade=False)
    assert parser.feed(b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n") == []
    assert parser.feed_eof() == []


@kinds
def test_response_body_in_pieces(kind: ParserKind) -> None:
    parser = make_response_parser(kind, max_head_size=MAX_HEAD)
    parser.expect_response(method=b"GET", upgrade=False)
    assert norm(parser.feed(b"HTTP/1.1 200 OK\r\nContent-Length: 3\r\n\r\n")) == [
        resp(headers=[(b"Content-Length", b"3")], content_length=3)
    ]
    assert norm(parser.feed(b"a")) == [data(b"a")]
    assert norm(parser.feed(b"b")) == [data(b"b")]
    assert norm(parser.feed(b"c")) == [data(b"c"), EOM]
    assert parser.feed_eof() == []


@kinds
def test_response_many_in_sequence(kind: ParserKind) -> None:
    parser = make_response_parser(kind, max_head_size=MAX_HEAD)
    for i in range(20):
        method = b"HEAD" if i % 3 == 0 else b"GET"
        parser.expect_response(method=method, upgrade=False)
        body = b"body%d" % i
        raw = b"HTTP/1.1 200 OK\r\nContent-Length: %d\r\n\r\n" % len(body)
        if method != b"HEAD":
            raw += body
        got = norm(parser.feed(raw))
        if method == b"HEAD":
            assert got == [resp(headers=[(b"Content-Length", b"%d" % len(body))]), EOM]
        else:
            assert got == [
                resp(headers=[(b"Content-Length", b"%d" % len(body))], content_length=len(body)),
                data(body),
                EOM,
            ]
