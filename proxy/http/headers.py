"""Header rules for the hop between client and target (kamal-proxy / Go ReverseProxy behaviour).

Hop-by-hop fields never cross the proxy; `X-Forwarded-*` are rebuilt from the connection (and,
with forward-headers on, extend what the client sent). Everything works on raw byte pairs as the
parser delivered them and is written out with one join.
"""

from __future__ import annotations

import random

_random_bits = random.Random().getrandbits

HOP_BY_HOP = frozenset(
    {
        b"connection",
        b"keep-alive",
        b"proxy-connection",
        b"proxy-authenticate",
        b"proxy-authorization",
        b"te",
        b"trailer",
        b"transfer-encoding",
        b"upgrade",
    }
)

# Connection tokens that name no header field
_CONNECTION_OPTIONS = frozenset({b"close", b"keep-alive", b"upgrade"})

CRLF = b"\r\n"
COLON = b": "


def new_request_id() -> str:
    """A random UUIDv4 in its canonical text form.

    From the Mersenne Twister rather than os.urandom: request IDs correlate log lines, they are
    not secrets, and a getrandom syscall per request is measurable on the hot path.
    """
    h = "%032x" % _random_bits(128)
    return f"{h[:8]}-{h[8:12]}-4{h[13:16]}-{'89ab'[int(h[16], 16) & 3]}{h[17:20]}-{h[20:32]}"


def connection_tokens(value: bytes) -> set[bytes]:
    """Header names listed in a Connection field (they are hop-by-hop too)."""
    if value.lower() in _CONNECTION_OPTIONS:  # the usual `keep-alive` / `close`: nothing to drop
        return _NO_TOKENS
    return {t.strip().lower() for t in value.split(b",")} - _CONNECTION_OPTIONS - {b""}


_NO_TOKENS: set[bytes] = set()


def chunk(data: bytes) -> bytes:
    return b"%x\r\n%b\r\n" % (len(data), data)


LAST_CHUNK = b"0\r\n\r\n"
