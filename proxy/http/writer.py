"""HTTP/1.1 writing, sans-IO: heads and body pieces in, bytes out (the mirror of the parsers).

A head is given as its field lines (``Name: value``, no CRLF), the shape the header rules in
``headers.py`` produce, so the whole head is built with one join. Bodies are framed by the
``Framing`` the head announced: a Content-Length body and a close-delimited body go out as they are,
a chunked body as ``chunk()`` pieces and ``LAST_CHUNK`` (or ``last_chunk`` with trailer fields).
Nothing here owns a socket.
"""

from __future__ import annotations

from enum import IntEnum
from typing import Final

CRLF: Final = b"\r\n"
COLON: Final = b": "
LAST_CHUNK: Final = b"0\r\n\r\n"
CONTINUE: Final = b"HTTP/1.1 100 Continue\r\n\r\n"

Lines = list[bytes]


class Framing(IntEnum):
    """How a body is delimited on the wire."""

    LENGTH = 0  # Content-Length (also: no body)
    CHUNKED = 1  # Transfer-Encoding: chunked
    CLOSE = 2  # until the connection closes (HTTP/1.0 clients, responses only)


def request_head(method: bytes, path: bytes, query: bytes, lines: Lines) -> bytes:
    """A request line (the target as path and ``?query`` or b"") and its field lines, then the blank line."""
    if not lines:
        return b"%b %b%b HTTP/1.1\r\n\r\n" % (method, path, query)
    return b"%b %b%b HTTP/1.1\r\n%b\r\n\r\n" % (method, path, query, CRLF.join(lines))


def request_head_open(method: bytes, path: bytes, query: bytes, lines: Lines) -> bytes:
    """A request head without its last field line and blank line: ``close_head`` finishes it.

    For a buffered request body, whose Content-Length is known only once the body is in.
    """
    if not lines:
        return b"%b %b%b HTTP/1.1\r\n" % (method, path, query)
    return b"%b %b%b HTTP/1.1\r\n%b\r\n" % (method, path, query, CRLF.join(lines))


def close_head(open_head: bytes, content_length: int) -> bytes:
    return open_head + b"Content-Length: %d\r\n\r\n" % content_length


def response_head(status: int, reason: bytes, lines: Lines) -> bytes:
    """A status line and its field lines, terminated by the blank line."""
    if not lines:
        return b"HTTP/1.1 %d %b\r\n\r\n" % (status, reason)
    return b"HTTP/1.1 %d %b\r\n%b\r\n\r\n" % (status, reason, CRLF.join(lines))


def interim_response(status: int, reason: bytes, headers: list[tuple[bytes, bytes]]) -> bytes:
    """A 1xx response (100 Continue, 103 Early Hints) relayed as it came."""
    out = [b"HTTP/1.1 %d %b\r\n" % (status, reason)]
    for name, value in headers:
        out.append(name + COLON + value + CRLF)
    out.append(CRLF)
    return b"".join(out)


def chunk(data: bytes) -> bytes:
    """One chunk of a chunked body. Empty data would end the body, so callers skip it."""
    return b"%x\r\n%b\r\n" % (len(data), data)


def last_chunk(trailers: list[tuple[bytes, bytes]]) -> bytes:
    """The end of a chunked body with its trailer fields (``LAST_CHUNK`` when there are none)."""
    if not trailers:
        return LAST_CHUNK
    return b"0\r\n" + b"".join([name + COLON + value + CRLF for name, value in trailers]) + CRLF
