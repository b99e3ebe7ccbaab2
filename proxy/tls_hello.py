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


class _Reader:
    __slots__ = ("data", "pos")

    def __init__(self, data: bytes) -> None:
        self.data = data
        self.pos = 0

    def take(self, n: int) -> bytes:
        end = self.pos + n
        if end > len(self.data):
            raise HelloError("truncated ClientHello")
        out = self.data[self.pos : end]
        self.pos = end
        return out

    def u8(self) -> int:
        return self.take(1)[0]

    def u16(self) -> int:
        return int.from_bytes(self.take(2), "big")

    def vector8(self) -> bytes:
        return self.take(self.u8())

    def vector16(self) -> bytes:
        return self.take(self.u16())

    @property
    def done(self) -> bool:
        return self.pos >= len(self.data)


def _parse_body(body: bytes) -> ClientHello:
    r = _Reader(body)
    r.take(2 + 32)  # legacy_version, random
    r.vector8()  # legacy_session_id
    if r.u16() % 2:
        raise HelloError("odd cipher suite list")
    r.pos -= 2
    r.vector16()  # cipher_suites
    r.vector8()  # legacy_compression_methods
    name = ""
    alpn: tuple[str, ...] = ()
    if r.done:
        return ClientHello(server_name=name, alpn=alpn)  # no extensions at all (TLS 1.2 allows it)
    extensions = _Reader(r.vector16())
    if not r.done:
        raise HelloError("trailing bytes after extensions")
    seen: set[int] = set()
    while not extensions.done:
        kind = extensions.u16()
        data = extensions.vector16()
        if kind in seen:
            raise HelloError("duplicate extension")
        seen.add(kind)
        if kind == EXT_SERVER_NAME:
            name = _server_name(data)
        elif kind == EXT_ALPN:
            alpn = _alpn(data)
    return ClientHello(server_name=name, alpn=alpn)


def _server_name(data: bytes) -> str:
    outer = _Reader(data)
    names = _Reader(outer.vector16())
    if not outer.done:
        raise HelloError("bad server_name extension")
    found = ""
    while not names.done:
        kind = names.u8()
        value = names.vector16()
        if kind != HOST_NAME or found:
            continue
        if not value or len(value) > MAX_NAME + 1:
            raise HelloError("bad server name length")
        try:
            text = value.decode("ascii")
        except UnicodeDecodeError:
            raise HelloError("server name is not ASCII") from None
        if not all(c.isalnum() or c in "-._*" for c in text):
            raise HelloError("bad character in server name")
        found = text.lower().rstrip(".")
    return found


def _alpn(data: bytes) -> tuple[str, ...]:
    outer = _Reader(data)
    protocols = _Reader(outer.vector16())
    if not outer.done:
        raise HelloError("bad ALPN extension")
    out = []
    while not protocols.done:
        proto = protocols.vector8()
        if not proto:
            raise HelloError("empty ALPN protocol name")
        out.append(proto.decode("latin-1"))
    return tuple(out)
