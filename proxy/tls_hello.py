"""A sans-IO reader of a TLS ClientHello: the server name (SNI) and the offered ALPN protocols.

The HTTPS listener peeks at the first bytes of each connection (they stay in the kernel for the
TLS library) and asks this module what the client wants before choosing a certificate: Python's
``ssl`` has no hook that shows the offered ALPN before the certificate is chosen, and TLS-ALPN-01
needs exactly that.

``parse_client_hello(data)`` returns a ``ClientHello``, or ``Incomplete(need)`` (at least ``need``
bytes must be buffered before it can say more), or raises ``HelloError`` for anything that is not
a well-formed ClientHello. The handshake message may span several TLS records; the whole hello is
bounded by ``MAX_HELLO_BYTES``.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

RECORD_HEADER = 5
HANDSHAKE = 22  # TLS record content type
CLIENT_HELLO = 1  # handshake message type
MAX_RECORD = 16384  # TLSPlaintext.length limit (RFC 8446 §5.1)
MAX_HELLO_BYTES = RECORD_HEADER + MAX_RECORD  # all records carrying the hello, headers included
EXT_SERVER_NAME = 0
EXT_ALPN = 16
HOST_NAME = 0
MAX_NAME = 253
_HOST_NAME = re.compile(rb"[A-Za-z0-9\-._*]+")  # what a DNS name (or a wildcard) may hold


class HelloError(ValueError):
    """Not a (well-formed, bounded) TLS ClientHello."""


@dataclass(frozen=True, slots=True)
class ClientHello:
    server_name: str  # lower case, no trailing dot; "" when the client sent none
    alpn: tuple[str, ...]  # the client's protocols, in its order


@dataclass(frozen=True, slots=True)
class Incomplete:
    need: int  # bytes that must be buffered before parsing can go on


def parse_client_hello(data: bytes) -> ClientHello | Incomplete:
    body = _handshake_bytes(data)
    if isinstance(body, Incomplete):
        return body
    return _parse_body(body)


def _handshake_bytes(data: bytes) -> bytes | Incomplete:
    """The ClientHello message body, reassembled from the records that carry it."""
    out = bytearray()
    pos = 0
    total = -1  # handshake message length once known (header included)
    while True:
        if len(data) < pos + RECORD_HEADER:
            return Incomplete(pos + RECORD_HEADER)
        if data[pos] != HANDSHAKE:
            raise HelloError("not a TLS handshake record")
        if data[pos + 1] != 3:
            raise HelloError("unsupported record version")
        length = int.from_bytes(data[pos + 3 : pos + 5], "big")
        if length == 0 or length > MAX_RECORD:
            raise HelloError("bad record length")
        end = pos + RECORD_HEADER + length
        if end > MAX_HELLO_BYTES:
            raise HelloError("ClientHello too large")
        if len(data) < end:
            return Incomplete(end)
        out += data[pos + RECORD_HEADER : end]
        pos = end
        if total < 0 and len(out) >= 4:
            if out[0] != CLIENT_HELLO:
                raise HelloError("first handshake message is not a ClientHello")
            total = 4 + int.from_bytes(out[1:4], "big")
        if total >= 0 and len(out) >= total:
            return bytes(out[4:total])


def _parse_body(body: bytes) -> ClientHello:
    """Walk the hello with plain index arithmetic (this runs once per TLS connection)."""
    span = _extensions(body)
    if span is None:
        return ClientHello(server_name="", alpn=())  # no extensions at all (TLS 1.2 allows it)
    pos, end = span
    name = ""
    alpn: tuple[str, ...] = ()
    seen: set[int] = set()
    while pos < end:
        if pos + 4 > end:
            raise HelloError("truncated ClientHello")
        kind = (body[pos] << 8) | body[pos + 1]
        size = (body[pos + 2] << 8) | body[pos + 3]
        pos += 4
        if pos + size > end:
            raise HelloError("truncated ClientHello")
        if kind in seen:
            raise HelloError("duplicate extension")
        seen.add(kind)
        if kind == EXT_SERVER_NAME:
            name = _server_name(body[pos : pos + size])
        elif kind == EXT_ALPN:
            alpn = _alpn(body[pos : pos + size])
        pos += size
    return ClientHello(server_name=name, alpn=alpn)


def _extensions(body: bytes) -> tuple[int, int] | None:
    """Where the extensions block starts and ends, past the fixed fields; None when there is none."""
    n = len(body)
    pos = 2 + 32  # legacy_version, random
    if pos >= n:
        raise HelloError("truncated ClientHello")
    pos += 1 + body[pos]  # legacy_session_id
    if pos + 2 > n:
        raise HelloError("truncated ClientHello")
    suites = (body[pos] << 8) | body[pos + 1]
    if suites % 2:
        raise HelloError("odd cipher suite list")
    pos += 2 + suites  # cipher_suites
    if pos >= n:
        raise HelloError("truncated ClientHello")
    pos += 1 + body[pos]  # legacy_compression_methods
    if pos == n:
        return None
    if pos + 2 > n:
        raise HelloError("truncated ClientHello")
    end = pos + 2 + ((body[pos] << 8) | body[pos + 1])
    if end > n:
        raise HelloError("truncated ClientHello")
    if end != n:
        raise HelloError("trailing bytes after extensions")
    return pos + 2, end


def _list(data: bytes, what: str) -> bytes:
    """The one 16-bit-length list an extension's data must consist of."""
    if len(data) < 2 or 2 + ((data[0] << 8) | data[1]) != len(data):
        raise HelloError(f"bad {what} extension")
    return data[2:]


def _server_name(data: bytes) -> str:
    names = _list(data, "server_name")
    pos, n = 0, len(names)
    found = ""
    while pos < n:
        if pos + 3 > n:
            raise HelloError("truncated ClientHello")
        kind = names[pos]
        size = (names[pos + 1] << 8) | names[pos + 2]
        value = names[pos + 3 : pos + 3 + size]
        pos += 3 + size
        if pos > n:
            raise HelloError("truncated ClientHello")
        if kind != HOST_NAME or found:
            continue
        if not value or len(value) > MAX_NAME + 1:
            raise HelloError("bad server name length")
        if _HOST_NAME.fullmatch(value) is None:
            raise HelloError("bad character in server name")
        found = value.decode("ascii").lower().rstrip(".")
    return found


def _alpn(data: bytes) -> tuple[str, ...]:
    protocols = _list(data, "ALPN")
    pos, n = 0, len(protocols)
    out = []
    while pos < n:
        size = protocols[pos]
        if not size:
            raise HelloError("empty ALPN protocol name")
        end = pos + 1 + size
        if end > n:
            raise HelloError("truncated ClientHello")
        out.append(protocols[pos + 1 : end].decode("latin-1"))
        pos = end
    return tuple(out)
