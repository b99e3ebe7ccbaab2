"""Header rules for the hop between client and target (kamal-proxy / Go ReverseProxy behaviour).

One pass over a head's fields (``scan_request`` / ``scan_response``) drops the hop-by-hop fields —
the fixed list and whatever a Connection field names — and notes what routing, logging and the
rules below need. The rules then each add their own fields to the kept lines, one function per rule
as kamal-proxy keeps one small middleware per rule:

- ``add_request_id``: ``X-Request-Id`` is kept, or one is made;
- ``add_request_start``: ``X-Request-Start: t=<ms>`` unless the client sent one;
- ``add_upgrade``: an upgrade request keeps ``Connection: Upgrade`` and its ``Upgrade``;
- ``add_forwarded``: ``X-Forwarded-For/Host/Proto`` are rebuilt from the connection and, with
  forward-headers on, extend what the client sent;
- ``add_kamal_target``: ``X-Kamal-Target`` names the target (extended likewise).

Everything works on raw byte pairs as the parser delivered them; the kept fields are field lines
(``Name: value``, no CRLF) that ``writer.py`` joins once. No dict of the headers is built.
"""

from __future__ import annotations

import random

from proxy.http.parser import Headers
from proxy.http.writer import COLON, Lines

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
_NO_TOKENS: frozenset[bytes] = frozenset()
CONTENT_LENGTH = frozenset({b"content-length"})


def new_request_id() -> str:
    """A random UUIDv4 in its canonical text form.

    From the Mersenne Twister rather than os.urandom: request IDs correlate log lines, they are
    not secrets, and a getrandom syscall per request is measurable on the hot path.
    """
    h = "%032x" % _random_bits(128)
    return f"{h[:8]}-{h[8:12]}-4{h[13:16]}-{'89ab'[int(h[16], 16) & 3]}{h[17:20]}-{h[20:32]}"


def connection_tokens(value: bytes) -> frozenset[bytes]:
    """Header names listed in a Connection field (they are hop-by-hop too)."""
    if value.lower() in _CONNECTION_OPTIONS:  # the usual `keep-alive` / `close`: nothing to drop
        return _NO_TOKENS
    return frozenset({t.strip().lower() for t in value.split(b",")} - _CONNECTION_OPTIONS - {b""})


def without(lines: Lines, names: frozenset[bytes]) -> Lines:
    """Field lines whose lower-cased name is not in ``names``."""
    out = []
    for line in lines:
        colon = line.find(b":")
        if colon < 0 or line[:colon].lower() not in names:
            out.append(line)
    return out


class RequestFields:
    """A request head's fields after ``scan_request``: the lines to forward and what was noted."""

    __slots__ = (
        "content_type",
        "has_request_start",
        "host",
        "kamal_target",
        "lines",
        "request_id",
        "upgrade",
        "user_agent",
        "xff",
        "xfh",
        "xfp",
    )

    def __init__(self) -> None:
        self.lines: Lines = []
        self.host = b""
        self.xff = b""  # X-Forwarded-For values the client sent, joined
        self.xfh = b""
        self.xfp = b""
        self.kamal_target = b""
        self.request_id = b""
        self.has_request_start = False
        self.user_agent = b""
        self.content_type = b""
        self.upgrade = b""


def scan_request(headers: Headers) -> RequestFields:
    """Drop hop-by-hop fields; take out the forwarding fields the rules rebuild; keep the rest."""
    fields = RequestFields()
    kept = fields.lines
    append = kept.append
    drop: frozenset[bytes] | None = None
    for name, value in headers:
        lname = name.lower()
        if lname in HOP_BY_HOP:
            if lname == b"connection":
                tokens = connection_tokens(value)
                if tokens:
                    drop = tokens if drop is None else drop | tokens
            elif lname == b"upgrade" and not fields.upgrade:
                fields.upgrade = value
            continue
        if lname[:2] == b"x-":
            if _take_forwarding(fields, lname, value):
                continue
        elif lname == b"host":
            fields.host = value
        elif lname == b"user-agent":
            fields.user_agent = value
        elif lname == b"content-type":
            fields.content_type = value
        append(name + COLON + value)
    if drop:
        fields.lines = without(kept, drop)
    return fields


def _take_forwarding(fields: RequestFields, lname: bytes, value: bytes) -> bool:
    """Note an ``x-`` field; True if it is one the rules rebuild (so it is not kept as it is)."""
    if lname == b"x-forwarded-for":
        fields.xff = value if not fields.xff else fields.xff + b", " + value
    elif lname == b"x-forwarded-host":
        fields.xfh = value
    elif lname == b"x-forwarded-proto":
        fields.xfp = value
    elif lname == b"x-kamal-target":
        fields.kamal_target = value
    else:
        if lname == b"x-request-id":
            fields.request_id = value
        elif lname == b"x-request-start":
            fields.has_request_start = True
        return False
    return True


def add_request_id(fields: RequestFields) -> str:
    """Keep the client's X-Request-Id, else add a new one. Returns the new ID, or "" if kept."""
    if fields.request_id:
        return ""
    rid = new_request_id()
    fields.lines.append(b"X-Request-Id: " + rid.encode())
    return rid


def add_request_start(fields: RequestFields, now: float) -> None:
    """X-Request-Start: t=<milliseconds since the epoch>, unless the client sent one."""
    if not fields.has_request_start:
        fields.lines.append(b"X-Request-Start: t=%d" % int(now * 1000))


def add_upgrade(fields: RequestFields) -> None:
    """An upgrade request keeps the two hop-by-hop fields that ask the target to switch."""
    fields.lines.append(b"Connection: Upgrade\r\nUpgrade: " + fields.upgrade)


def add_forwarded(fields: RequestFields, *, peer: bytes, scheme: bytes, trust_client: bool) -> None:
    """X-Forwarded-For / -Host / -Proto: extended from the client's (trust_client) or replaced."""
    append = fields.lines.append
    if trust_client:
        xff = fields.xff
        append(b"X-Forwarded-For: " + (xff + b", " + peer if xff else peer))
        append(b"X-Forwarded-Host: " + (fields.xfh or fields.host))
        append(b"X-Forwarded-Proto: " + (fields.xfp or scheme))
    else:
        append(b"X-Forwarded-For: " + peer)
        append(b"X-Forwarded-Host: " + fields.host)
        append(b"X-Forwarded-Proto: " + scheme)


def add_kamal_target(fields: RequestFields, target: bytes, *, trust_client: bool) -> None:
    """X-Kamal-Target: the target's address (after the client's value when trusted)."""
    kamal_target = fields.kamal_target
    if trust_client and kamal_target:
        fields.lines.append(b"X-Kamal-Target: " + kamal_target + b", " + target)
    else:
        fields.lines.append(b"X-Kamal-Target: " + target)


class ResponseFields:
    """A response head's fields after ``scan_response``."""

    __slots__ = ("content_type", "lines")

    def __init__(self, lines: Lines, content_type: bytes) -> None:
        self.lines = lines
        self.content_type = content_type


def scan_response(headers: Headers) -> ResponseFields:
    """Drop hop-by-hop fields (the fixed list and the Connection-listed ones); keep the rest."""
    out: Lines = []
    append = out.append
    content_type = b""
    drop: frozenset[bytes] | None = None
    for name, value in headers:
        lname = name.lower()
        if lname in HOP_BY_HOP:
            if lname == b"connection":
                tokens = connection_tokens(value)
                if tokens:
                    drop = tokens if drop is None else drop | tokens
            continue
        if lname == b"content-type":
            content_type = value
        append(name + COLON + value)
    if drop:
        out = without(out, drop)
    return ResponseFields(out, content_type)


def all_lines(headers: Headers) -> Lines:
    """Every field as it came (a 101 response: its Connection and Upgrade go to the client)."""
    return [name + COLON + value for name, value in headers]
