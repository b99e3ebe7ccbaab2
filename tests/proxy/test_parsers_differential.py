"""Differential test of the two parser backends: the same bytes, split the same way, through both.

Byte streams are generated (valid and mutated heads, Content-Length and chunked bodies, trailers,
pipelines, upgrades, interim responses), cut into feeds at random points, and fed to the httptools
and the h11 parser. Both must produce the same events once adjacent body pieces are joined: the
same accept/reject decision (and status), the same head fields, body bytes, message boundaries,
keep-alive and upgrade decisions.

CI runs a fixed, derandomized budget of a few seconds. A longer run, by hand (or make fuzz-parsers):

    PARSER_FUZZ_EXAMPLES=200000 python -m pytest -q tests/proxy/test_parsers_differential.py -p no:randomly

``PARSER_FUZZ_SEED`` makes a long run repeatable.
"""

from __future__ import annotations

import os
import re
from collections.abc import Sequence

import pytest
from hypothesis import HealthCheck, assume, given, seed, settings
from hypothesis import strategies as st

from proxy.http.parser import (
    Data,
    EndOfMessage,
    ParseError,
    RequestEvent,
    RequestHead,
    ResponseEvent,
    ResponseHead,
    TunnelData,
)
from proxy.http.parsers import make_request_parser, make_response_parser
from tests.proxy.parser_events import head_tuple

MAX_HEAD = 65536
EXAMPLES = int(os.environ.get("PARSER_FUZZ_EXAMPLES", "0"))
LONG = EXAMPLES > 0

# a long run is bounded by its example count, not by the suite's per-test timeout
pytestmark = pytest.mark.timeout(0 if LONG else 120)

CI_SETTINGS = settings(
    max_examples=EXAMPLES or 300,
    derandomize=not LONG,
    deadline=None,
    database=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)

Event = tuple[object, ...]


def norm(events: Sequence[RequestEvent | ResponseEvent]) -> list[Event]:
    """Comparable events; adjacent Data (and TunnelData) joined; nothing after an error."""
    out: list[Event] = []
    for e in events:
        if isinstance(e, RequestHead | ResponseHead):
            out.append(head_tuple(e))
        elif isinstance(e, Data | TunnelData):
            kind = "data" if isinstance(e, Data) else "tunnel"
            last = out[-1] if out else None
            if last is not None and last[0] == kind and isinstance(last[1], bytes):
                out[-1] = (kind, last[1] + e.data)
            else:
                out.append((kind, e.data))
        elif isinstance(e, EndOfMessage):
            out.append(("eom", None if e.trailers is None else tuple(e.trailers)))
        else:
            assert isinstance(e, ParseError)
            out.append(("error", e.status))
            break
    return out


# -- generators ----------------------------------------------------------------------------------

TOKEN_CHARS = "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789-!#$%&'*+.^_`|~"
tokens = st.text(TOKEN_CHARS, min_size=1, max_size=12).map(str.encode)
values = st.one_of(
    st.sampled_from(
        [b"", b"x", b"a b", b"keep-alive", b"close", b"upgrade", b"chunked", b"100-continue", b"1"]
    ),
    st.binary(max_size=12).filter(lambda b: b"\r" not in b and b"\n" not in b),
)
ows = st.sampled_from([b"", b" ", b"  ", b"\t", b" \t"])


@st.composite
def field_lines(draw: st.DrawFn, framing: list[tuple[bytes, bytes]]) -> list[bytes]:
    """Header field lines: the framing ones given, plus random ones, in a random order."""
    fields = list(framing)
    for _ in range(draw(st.integers(0, 3))):
        name = draw(
            st.one_of(
                tokens,
                st.sampled_from(
                    [
                        b"Host",
                        b"Connection",
                        b"Upgrade",
                        b"Expect",
                        b"Content-Length",
                        b"Transfer-Encoding",
                        b"Te",
                    ]
                ),
            )
        )
        fields.append((name, draw(values)))
    order = draw(st.permutations(range(len(fields))))
    return [fields[i][0] + b":" + draw(ows) + fields[i][1] + draw(ows) for i in order]


# trailer field names: any token, and the ones the parsers refuse or the proxy never forwards
trailer_names = st.one_of(
    tokens,
    st.sampled_from(
        [
            b"Content-Length",
            b"Transfer-Encoding",
            b"Connection",
            b"Proxy-Connection",
            b"Host",
            b"Trailer",
            b"Upgrade",
            b"X-Checksum",
        ]
    ),
)


@st.composite
def chunked_body(draw: st.DrawFn) -> tuple[bytes, bytes]:
    """(wire bytes, decoded body) of a chunked body, sometimes with extensions and trailers."""
    wire = b""
    body = b""
    for _ in range(draw(st.integers(0, 3))):
        data = draw(st.binary(min_size=1, max_size=20))
        size = b"%x" % len(data)
        size = draw(st.sampled_from([size, size.upper(), b"0" + size, b"0" * 16 + size]))
        ext = draw(st.sampled_from([b"", b";a", b";a=b", b';a="b c"', b";a=b;c", b"; a=b", b" ", b";"]))
        wire += size + ext + b"\r\n" + data + b"\r\n"
        body += data
    wire += draw(st.sampled_from([b"0", b"000", b"0;x=y"])) + b"\r\n"
    for _ in range(draw(st.integers(0, 2))):
        wire += draw(trailer_names) + b":" + draw(ows) + draw(values) + b"\r\n"
    wire += b"\r\n"
    return wire, body


@st.composite
def request_message(draw: st.DrawFn) -> bytes:
    method = draw(
        st.sampled_from(
            [b"GET", b"GET", b"POST", b"HEAD", b"PUT", b"OPTIONS", b"DELETE", b"CONNECT", b"PRI", b"get"]
        )
    )
    target = draw(
        st.sampled_from(
            [
                b"/",
                b"/a/b?c=d",
                b"*",
                b"http://other.test/p?q",
                b"http://user@other.test:8080",
                b"https://other.test?x",
                b"other.test:443",
                b"/%41",
                b"//x",
            ]
        )
    )
    version = draw(st.sampled_from([b"HTTP/1.1", b"HTTP/1.1", b"HTTP/1.0", b"HTTP/2.0", b"HTTP/1.2"]))
    framing: list[tuple[bytes, bytes]] = []
    if draw(st.booleans()):
        framing.append((b"Host", draw(st.sampled_from([b"app.test", b"app.test:80", b""]))))
    body = b""
    kind = draw(st.sampled_from(["none", "none", "length", "chunked", "both"]))
    if kind in ("length", "both"):
        payload = draw(st.binary(max_size=20))
        framing.append((b"Content-Length", b"%d" % len(payload)))
        body = payload
    if kind in ("chunked", "both"):
        te = draw(
            st.sampled_from([b"chunked", b"Chunked", b"gzip, chunked", b"chunked, chunked", b"identity"])
        )
        framing.append((b"Transfer-Encoding", te))
        body = draw(chunked_body())[0]
    connection = draw(
        st.sampled_from([None, b"keep-alive", b"close", b"Upgrade", b"keep-alive, Upgrade", b"x-custom"])
    )
    if connection is not None:
        framing.append((b"Connection", connection))
    lines = draw(field_lines(framing))
    start = method + b" " + target + (b" " + version if draw(st.integers(0, 20)) else b"")
    return start + b"\r\n" + b"".join(line + b"\r\n" for line in lines) + b"\r\n" + body


MUTATIONS = [
    b"\r",
    b"\n",
    b" ",
    b"\t",
    b"\x00",
    b"\x7f",
    b":",
    b",",
    b"0",
    b"a",
    b"\r\n",
    b"\xff",
    b"G",
    b"\x0b",
]


@st.composite
def mutated(draw: st.DrawFn, raw: bytes) -> bytes:
    """Some streams get a few bytes replaced, inserted or deleted."""
    if draw(st.integers(0, 2)):
        return raw
    for _ in range(draw(st.integers(1, 3))):
        if not raw:
            break
        i = draw(st.integers(0, len(raw) - 1))
        op = draw(st.sampled_from(["replace", "insert", "delete"]))
        piece = draw(st.sampled_from(MUTATIONS))
        if op == "replace":
            raw = raw[:i] + piece + raw[i + 1 :]
        elif op == "insert":
            raw = raw[:i] + piece + raw[i:]
        else:
            raw = raw[:i] + raw[i + 1 :]
    return raw


@st.composite
def splits(draw: st.DrawFn, raw: bytes) -> list[bytes]:
    if not raw:
        return [raw]
    cuts = sorted(set(draw(st.lists(st.integers(0, len(raw)), max_size=6))))
    pieces = []
    last = 0
    for cut in [*cuts, len(raw)]:
        pieces.append(raw[last:cut])
        last = cut
    return [p for p in pieces if p] or [raw]


@st.composite
def request_streams(draw: st.DrawFn) -> tuple[list[bytes], bool]:
    messages = draw(st.lists(request_message(), min_size=1, max_size=3))
    raw = draw(st.sampled_from([b"", b"\r\n", b"\n"])) + b"".join(messages)
    raw = draw(mutated(raw))
    if draw(st.integers(0, 4)) == 0:
        raw += b"tunnel bytes \x00\xff"
    return draw(splits(raw)), draw(st.booleans())


# -- the properties ------------------------------------------------------------------------------

# Known divergences, kept out of the comparison (each is framing-safe; see the module docstring of
# the backend that differs): llhttp tolerates repeated spaces between the parts of a request line,
# which h11 (and Go) reject; the method, target and version it reads are unambiguous.
_REPEATED_SP = re.compile(rb"(?:^|\n)[A-Za-z-]+  |(?:^|\n)[A-Za-z-]+ [^\r\n ]+  +HTTP/")


def comparable(raw: bytes) -> bool:
    return _REPEATED_SP.search(raw) is None


def run_requests(kind: str, feeds: list[bytes], eof: bool) -> list[Event]:
    parser = make_request_parser(kind, max_head_size=MAX_HEAD)  # type: ignore[arg-type]
    events: list[RequestEvent] = []
    for piece in feeds:
        events += parser.feed(piece)
    if eof:
        events += parser.feed_eof()
    return norm(events)


@CI_SETTINGS
@given(request_streams())
def test_request_parsers_agree(stream: tuple[list[bytes], bool]) -> None:
    feeds, eof = stream
    assume(comparable(b"".join(feeds)))
    assert run_requests("httptools", feeds, eof) == run_requests("h11", feeds, eof), b"".join(feeds)


if "PARSER_FUZZ_SEED" in os.environ:  # pragma: no cover - a by-hand run
    test_request_parsers_agree = seed(int(os.environ["PARSER_FUZZ_SEED"]))(test_request_parsers_agree)


@st.composite
def response_message(draw: st.DrawFn, *, head_only: bool, upgrade: bool) -> bytes:
    status = draw(st.sampled_from([200, 200, 404, 204, 304, 100, 103, 101, 199, 302]))
    version = draw(st.sampled_from([b"HTTP/1.1", b"HTTP/1.1", b"HTTP/1.0", b"HTTP/2.0"]))
    reason = draw(st.sampled_from([b" OK", b" ", b"", b" Not Found", b" a\x0bb", b" \xe9t\xe9"]))
    framing: list[tuple[bytes, bytes]] = []
    body = b""
    kind = draw(st.sampled_from(["length", "length", "chunked", "eof", "both", "none"]))
    if kind in ("length", "both"):
        payload = draw(st.binary(max_size=20))
        framing.append((b"Content-Length", b"%d" % len(payload)))
        body = payload
    if kind in ("chunked", "both"):
        te = draw(st.sampled_from([b"chunked", b"CHUNKED", b"gzip, chunked", b"gzip"]))
        framing.append((b"Transfer-Encoding", te))
        body = draw(chunked_body())[0]
    if kind == "eof":
        body = draw(st.binary(max_size=20))
    if head_only or status < 200 or status in (204, 304):
        body = b"" if draw(st.integers(0, 3)) else body
    connection = draw(st.sampled_from([None, b"keep-alive", b"close", b"upgrade", b"Upgrade, keep-alive"]))
    if connection is not None:
        framing.append((b"Connection", connection))
    if upgrade or draw(st.integers(0, 5)) == 0:
        framing.append((b"Upgrade", b"websocket"))
    lines = draw(field_lines(framing))
    start = version + b" %d" % status + reason
    return start + b"\r\n" + b"".join(line + b"\r\n" for line in lines) + b"\r\n" + body


@st.composite
def response_streams(draw: st.DrawFn) -> tuple[bytes, bool, list[bytes], bool]:
    method = draw(st.sampled_from([b"GET", b"GET", b"HEAD", b"POST"]))
    upgrade = draw(st.integers(0, 4)) == 0
    messages = draw(
        st.lists(response_message(head_only=method == b"HEAD", upgrade=upgrade), min_size=1, max_size=3)
    )
    raw = b"".join(messages)
    raw = draw(mutated(raw))
    return method, upgrade, draw(splits(raw)), draw(st.booleans())


def run_responses(kind: str, method: bytes, upgrade: bool, feeds: list[bytes], eof: bool) -> list[Event]:
    parser = make_response_parser(kind, max_head_size=MAX_HEAD)  # type: ignore[arg-type]
    parser.expect_response(method=method, upgrade=upgrade)
    events: list[ResponseEvent] = []
    for piece in feeds:
        events += parser.feed(piece)
    if eof:
        events += parser.feed_eof()
    return norm(events)


@CI_SETTINGS
@given(response_streams())
def test_response_parsers_agree(stream: tuple[bytes, bool, list[bytes], bool]) -> None:
    method, upgrade, feeds, eof = stream
    got = run_responses("httptools", method, upgrade, feeds, eof)
    assert got == run_responses("h11", method, upgrade, feeds, eof), (method, upgrade, b"".join(feeds))


if "PARSER_FUZZ_SEED" in os.environ:  # pragma: no cover - a by-hand run
    test_response_parsers_agree = seed(int(os.environ["PARSER_FUZZ_SEED"]))(test_response_parsers_agree)
