"""HTTP/1.1 writing, byte tables both ways: request heads to targets, response heads and bodies to clients."""

from __future__ import annotations

import pytest

from proxy.http import writer


@pytest.mark.parametrize(
    ("method", "path", "query", "lines", "expected"),
    [
        (b"GET", b"/", b"", [], b"GET / HTTP/1.1\r\n\r\n"),
        (b"GET", b"/a", b"?b=1", [b"Host: x"], b"GET /a?b=1 HTTP/1.1\r\nHost: x\r\n\r\n"),
        (
            b"POST",
            b"/up",
            b"",
            [b"Host: x", b"Transfer-Encoding: chunked"],
            b"POST /up HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n",
        ),
    ],
)
def test_request_head_bytes(
    method: bytes, path: bytes, query: bytes, lines: list[bytes], expected: bytes
) -> None:
    assert writer.request_head(method, path, query, lines) == expected


@pytest.mark.parametrize(
    ("lines", "length", "expected"),
    [
        ([], 0, b"PUT /f HTTP/1.1\r\nContent-Length: 0\r\n\r\n"),
        ([b"Host: x"], 5, b"PUT /f HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\n\r\n"),
    ],
)
def test_buffered_request_head_is_closed_with_its_length(
    lines: list[bytes], length: int, expected: bytes
) -> None:
    assert writer.close_head(writer.request_head_open(b"PUT", b"/f", b"", lines), length) == expected


@pytest.mark.parametrize(
    ("status", "reason", "lines", "expected"),
    [
        (200, b"OK", [], b"HTTP/1.1 200 OK\r\n\r\n"),
        (404, b"Not Found", [b"Content-Length: 0"], b"HTTP/1.1 404 Not Found\r\nContent-Length: 0\r\n\r\n"),
        (
            200,
            b"OK",
            [b"Content-Type: text/plain", b"Transfer-Encoding: chunked"],
            b"HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nTransfer-Encoding: chunked\r\n\r\n",
        ),
        (599, b"", [], b"HTTP/1.1 599 \r\n\r\n"),
    ],
)
def test_response_head_bytes(status: int, reason: bytes, lines: list[bytes], expected: bytes) -> None:
    assert writer.response_head(status, reason, lines) == expected


def test_interim_response_relays_its_fields() -> None:
    out = writer.interim_response(103, b"Early Hints", [(b"Link", b"</a.css>; rel=preload")])
    assert out == b"HTTP/1.1 103 Early Hints\r\nLink: </a.css>; rel=preload\r\n\r\n"


def test_continue_is_a_bare_100() -> None:
    assert writer.CONTINUE == b"HTTP/1.1 100 Continue\r\n\r\n"


@pytest.mark.parametrize(
    ("data", "expected"),
    [
        (b"hello", b"5\r\nhello\r\n"),
        (b"x" * 26, b"1a\r\n" + b"x" * 26 + b"\r\n"),
        (b"\r\n", b"2\r\n\r\n\r\n"),
    ],
)
def test_chunks_carry_their_hex_size(data: bytes, expected: bytes) -> None:
    assert writer.chunk(data) == expected


def test_last_chunk_ends_a_chunked_body() -> None:
    assert writer.LAST_CHUNK == b"0\r\n\r\n"


def test_written_request_parses_back_to_the_same_head() -> None:
    from proxy.http.h11_parser import H11RequestParser
    from proxy.http.parser import Data, EndOfMessage, RequestHead

    wire = writer.request_head(b"POST", b"/x", b"?y", [b"Host: h", b"Transfer-Encoding: chunked"])
    wire += writer.chunk(b"abc") + writer.LAST_CHUNK
    events = H11RequestParser(max_head_size=65536).feed(wire)
    head = events[0]
    assert isinstance(head, RequestHead)
    assert (head.method, head.target, head.chunked) == (b"POST", b"/x?y", True)
    assert [type(e) for e in events[1:]] == [Data, EndOfMessage]
    assert events[1].data == b"abc"  # type: ignore[union-attr]


def test_last_chunk_carries_the_trailer_fields() -> None:
    assert writer.last_chunk([]) == writer.LAST_CHUNK == b"0\r\n\r\n"
    assert writer.last_chunk([(b"X-A", b"1"), (b"x-b", b"")]) == b"0\r\nX-A: 1\r\nx-b: \r\n\r\n"
