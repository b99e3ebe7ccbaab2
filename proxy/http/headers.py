"""Header rules for the hop between client and target (kamal-proxy / Go ReverseProxy behaviour).

One pass over a head's fields (``scan_request`` / ``scan_response``) drops the hop-by-hop fields —
the fixed list and whatever a Connection field names — and notes what routing, logging and the
rules below need. The rules then each add their own fields to the kept lines, one function per rule
as kamal-proxy keeps one small middleware per rule:

- ``add_request_id``: ``X-Request-Id`` is kept, or one is made;
- ``add_request_start``: ``X-Request-Start: t=<ms>`` unless the client sent one;
- ``add_upgrade``: an upgrade request keeps ``Connection: Upgrade`` and its ``Upgrade``;
- ``add_forwarded``: ``X-Forwarded-For/Host/Proto`` (and ``-Port``, ours) are rebuilt from the
  connection and, with forward-headers on, extend what the client sent;
- ``add_kamal_target``: ``X-Kamal-Target`` names the target (extended likewise).

Trailers pass as Go's ReverseProxy passes them: the hop-by-hop ``Trailer`` field is re-announced
(``announced_trailers``), and the trailer fields themselves are forwarded without those that must
never be trailers (``trailer_fields``: framing, routing, authentication, controls, content format).

Everything works on raw byte pairs as the parser delivered them; the kept fields are field lines
(``Name: value``, no CRLF) that ``writer.py`` joins once. No dict of the headers is built.
"""

from __future__ import annotations

import random
from typing import Final

from proxy.http.cookies import WRITER_AFFINITY_OPT_OUT, scope_cookie_path
from proxy.http.parser import Headers
from proxy.http.writer import COLON, Lines

_random_bits = random.Random().getrandbits
# UUIDv4: version nibble 4 (bits 76-79), variant 10 (bits 62-63)
_UUID4_KEEP: Final = ~(0xF << 76) & ~(0x3 << 62)
_UUID4_SET: Final = (0x4 << 76) | (0x2 << 62)

HOP_BY_HOP: Final = frozenset(
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

# Field names as clients and targets usually spell them (as written, Go's canonical form, lower
# case), each with its lower-cased form: through mypyc, bytes.lower() is a generic method call of
# ~350 instructions, a look-up here a third of that, and a name looked up once hashes from cache.
_COMMON_NAMES: Final = (
    b"Accept",
    b"Accept-Encoding",
    b"Accept-Language",
    b"Accept-Ranges",
    b"Access-Control-Allow-Origin",
    b"Age",
    b"Alt-Svc",
    b"Authorization",
    b"Cache-Control",
    b"Connection",
    b"Content-Disposition",
    b"Content-Encoding",
    b"Content-Length",
    b"Content-Security-Policy",
    b"Content-Type",
    b"Cookie",
    b"Cross-Origin-Opener-Policy",
    b"Date",
    b"DNT",
    b"ETag",
    b"Expect",
    b"Expires",
    b"Host",
    b"If-Modified-Since",
    b"If-None-Match",
    b"Keep-Alive",
    b"Last-Modified",
    b"Link",
    b"Location",
    b"Origin",
    b"Permissions-Policy",
    b"Pragma",
    b"Priority",
    b"Referer",
    b"Referrer-Policy",
    b"Sec-CH-UA",
    b"Sec-CH-UA-Mobile",
    b"Sec-CH-UA-Platform",
    b"Sec-Fetch-Dest",
    b"Sec-Fetch-Mode",
    b"Sec-Fetch-Site",
    b"Sec-Fetch-User",
    b"Sec-WebSocket-Accept",
    b"Sec-WebSocket-Extensions",
    b"Sec-WebSocket-Key",
    b"Sec-WebSocket-Version",
    b"Server",
    b"Set-Cookie",
    b"Strict-Transport-Security",
    b"TE",
    b"Trailer",
    b"Transfer-Encoding",
    b"Upgrade",
    b"Upgrade-Insecure-Requests",
    b"User-Agent",
    b"Vary",
    b"Via",
    b"WWW-Authenticate",
    b"X-Content-Type-Options",
    b"X-CSRF-Token",
    b"X-Forwarded-For",
    b"X-Forwarded-Host",
    b"X-Forwarded-Port",
    b"X-Forwarded-Proto",
    b"X-Frame-Options",
    b"X-Real-IP",
    b"X-Request-Id",
    b"X-Request-Start",
    b"X-Requested-With",
    b"X-Runtime",
    b"X-XSS-Protection",
)


def _go_canonical(name: bytes) -> bytes:
    """Go's textproto.CanonicalMIMEHeaderKey of a token: each dash-separated word capitalised."""
    return b"-".join(word[:1].upper() + word[1:].lower() for word in name.split(b"-"))


_LOWERED: Final[dict[bytes, bytes]] = {
    spelling: name.lower() for name in _COMMON_NAMES for spelling in (name, _go_canonical(name), name.lower())
}


def lower_name(name: bytes) -> bytes:
    """A field name in lower case (the usual names from a table)."""
    lowered = _LOWERED.get(name)
    return name.lower() if lowered is None else lowered


def strip_trailing_ows(value: bytes) -> bytes:
    """A field value without trailing spaces and tabs (llhttp strips only the leading ones)."""
    if value and (value[-1] == 32 or value[-1] == 9):  # (rarely: bytes.rstrip is a generic call)
        return value.rstrip(b" \t")
    return value


# Connection tokens that name no header field
_CONNECTION_OPTIONS: Final = frozenset({b"close", b"keep-alive", b"upgrade"})
_NO_TOKENS: Final[frozenset[bytes]] = frozenset()
# What a body we buffered and send with its own Content-Length does not keep: the target's length,
# and the announcement of trailer fields that are dropped (they need a chunked body).
BUFFERED_BODY_DROPS: Final = frozenset({b"content-length", b"trailer"})

# Fields that are never forwarded as trailer fields (RFC 9110 section 6.5.1: framing, routing,
# authentication, request modifiers, response controls, content format): Go's list
# (``httpguts.badTrailer``, which its ReverseProxy's server side applies) plus ``upgrade``, the one
# connection-specific field missing from it; and every ``if-*`` field, as Go.
FORBIDDEN_TRAILERS: Final = frozenset(
    {
        b"authorization",
        b"cache-control",
        b"connection",
        b"content-encoding",
        b"content-length",
        b"content-range",
        b"content-type",
        b"expect",
        b"host",
        b"keep-alive",
        b"max-forwards",
        b"pragma",
        b"proxy-authenticate",
        b"proxy-authorization",
        b"proxy-connection",
        b"range",
        b"realm",
        b"te",
        b"trailer",
        b"transfer-encoding",
        b"upgrade",
        b"www-authenticate",
    }
)


def allowed_trailer(lname: bytes) -> bool:
    """Whether a (lower-case) field name may be forwarded as a trailer field."""
    return lname not in FORBIDDEN_TRAILERS and lname[:3] != b"if-" and lname[:1] != b":"


def trailer_fields(trailers: Headers) -> Headers:
    """The trailer fields to forward: those that may be trailers (``allowed_trailer``)."""
    return [(name, value) for name, value in trailers if allowed_trailer(name.lower())]


def announced_trailers(value: bytes) -> bytes:
    """A ``Trailer`` field's value re-announced (as Go's ReverseProxy does): the names it lists
    that may be trailer fields, b"" if none."""
    names = [token.strip(b" \t") for token in value.split(b",")]
    return b", ".join(name for name in names if name and allowed_trailer(name.lower()))


def new_request_id() -> str:
    """A random UUIDv4 in its canonical text form.

    From the Mersenne Twister rather than os.urandom: request IDs correlate log lines, they are
    not secrets, and a getrandom syscall per request is measurable on the hot path.
    """
    h = "%032x" % (_random_bits(128) & _UUID4_KEEP | _UUID4_SET)
    return f"{h[:8]}-{h[8:12]}-{h[12:16]}-{h[16:20]}-{h[20:]}"


def connection_tokens(value: bytes) -> frozenset[bytes]:
    """Header names listed in a Connection field (they are hop-by-hop too)."""
    if value.lower() in _CONNECTION_OPTIONS:  # the usual `keep-alive` / `close`: nothing to drop
        return _NO_TOKENS
    return frozenset({t.strip().lower() for t in value.split(b",")} - _CONNECTION_OPTIONS - {b""})


def _more_dropped(drop: frozenset[bytes] | None, value: bytes) -> frozenset[bytes] | None:
    """``drop`` plus the names a Connection field lists."""
    tokens = connection_tokens(value)
    if not tokens:
        return drop
    return tokens if drop is None else drop | tokens


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
        "xfport",
    )

    def __init__(
        self,
        lines: Lines,
        host: bytes = b"",
        user_agent: bytes = b"",
        content_type: bytes = b"",
        upgrade: bytes = b"",
        forwarding: tuple[bytes, bytes, bytes, bytes, bytes, bool, bytes] = (
            b"",
            b"",
            b"",
            b"",
            b"",
            False,
            b"",
        ),
    ) -> None:
        # positional: one of these is made per request, and a keyword call of a class costs a dict
        self.lines = lines
        self.host = host
        self.user_agent = user_agent
        self.content_type = content_type
        self.upgrade = upgrade
        # X-Forwarded-For (the client's values, joined), -Host, -Proto, X-Kamal-Target, X-Request-Id,
        # whether X-Request-Start was sent, and X-Forwarded-Port
        (
            self.xff,
            self.xfh,
            self.xfp,
            self.kamal_target,
            self.request_id,
            self.has_request_start,
            self.xfport,
        ) = forwarding


_NO_FORWARDING: Final = (b"", b"", b"", b"", b"", False, b"")


def scan_request(headers: Headers) -> RequestFields:
    """Drop hop-by-hop fields; take out the forwarding fields the rules rebuild; keep the rest."""
    kept: Lines = []
    drop: frozenset[bytes] | None = None
    host = user_agent = content_type = upgrade = b""
    x_fields: list[tuple[bytes, bytes]] | None = None
    for name, value in headers:
        lname = lower_name(name)
        if lname in HOP_BY_HOP:
            if lname == b"connection":
                if value.lower() not in _CONNECTION_OPTIONS:  # (the usual keep-alive/close names nothing)
                    drop = _more_dropped(drop, value)
            elif lname == b"upgrade":
                if not upgrade:
                    upgrade = value
            elif lname == b"trailer":
                _announce(kept, name, value)
            continue
        if lname[:2] == b"x-":
            if x_fields is None:
                x_fields = []
            x_fields.append((lname, value))
            if lname in _REBUILT:
                continue
        elif lname == b"host":
            host = value
        elif lname == b"user-agent":
            user_agent = value
        elif lname == b"content-type":
            content_type = value
        kept.append(name + COLON + value)
    if drop:
        kept = without(kept, drop)
    forwarding = _forwarding(x_fields) if x_fields is not None else _NO_FORWARDING
    return RequestFields(kept, host, user_agent, content_type, upgrade, forwarding)


def _announce(lines: Lines, name: bytes, value: bytes) -> None:
    """Keep a ``Trailer`` field (hop-by-hop, but re-announced as Go does), without forbidden names."""
    announced = announced_trailers(value)
    if announced:
        lines.append(name + COLON + announced)


_REBUILT: Final = frozenset(
    {b"x-forwarded-for", b"x-forwarded-host", b"x-forwarded-proto", b"x-forwarded-port", b"x-kamal-target"}
)


def _forwarding(
    x_fields: list[tuple[bytes, bytes]],
) -> tuple[bytes, bytes, bytes, bytes, bytes, bool, bytes]:
    """What the ``x-`` fields of a request say for the forwarding rules."""
    xff = xfh = xfp = kamal_target = request_id = xfport = b""
    has_request_start = False
    for lname, value in x_fields:
        if lname == b"x-forwarded-for":
            xff = value if not xff else xff + b", " + value
        elif lname == b"x-forwarded-host":
            xfh = value
        elif lname == b"x-forwarded-proto":
            xfp = value
        elif lname == b"x-forwarded-port":
            xfport = value
        elif lname == b"x-kamal-target":
            kamal_target = value
        elif lname == b"x-request-id":
            request_id = value
        elif lname == b"x-request-start":
            has_request_start = True
    return xff, xfh, xfp, kamal_target, request_id, has_request_start, xfport


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


def add_forwarded(
    fields: RequestFields, *, peer: bytes, scheme: bytes, port: bytes = b"", trust_client: bool
) -> None:
    """X-Forwarded-For / -Host / -Proto / -Port: extended from the client's (trust_client) or replaced.

    X-Forwarded-Port (the listener's port; not sent by kamal-proxy) goes out when ``port`` is given.
    """
    lines = fields.lines
    if trust_client:
        xff = fields.xff
        lines.append(b"X-Forwarded-For: " + (xff + b", " + peer if xff else peer))
        lines.append(b"X-Forwarded-Host: " + (fields.xfh or fields.host))
        lines.append(b"X-Forwarded-Proto: " + (fields.xfp or scheme))
        if port:
            lines.append(b"X-Forwarded-Port: " + (fields.xfport or port))
    else:
        lines.append(b"X-Forwarded-For: " + peer)
        lines.append(b"X-Forwarded-Host: " + fields.host)
        lines.append(b"X-Forwarded-Proto: " + scheme)
        if port:
            lines.append(b"X-Forwarded-Port: " + port)


def add_kamal_target(fields: RequestFields, target: bytes, *, trust_client: bool) -> None:
    """X-Kamal-Target: the target's address (after the client's value when trusted)."""
    kamal_target = fields.kamal_target
    if trust_client and kamal_target:
        fields.lines.append(b"X-Kamal-Target: " + kamal_target + b", " + target)
    else:
        fields.lines.append(b"X-Kamal-Target: " + target)


def scan_response(headers: Headers) -> tuple[Lines, bytes]:
    """Drop hop-by-hop fields (the fixed list and the Connection-listed ones); keep the rest.

    Returns the kept field lines and the Content-Type value (a tuple: this runs per response).
    """
    out: Lines = []
    content_type = b""
    drop: frozenset[bytes] | None = None
    for name, value in headers:
        lname = lower_name(name)
        if lname in HOP_BY_HOP:
            if lname == b"connection":
                if value.lower() not in _CONNECTION_OPTIONS:
                    drop = _more_dropped(drop, value)
            elif lname == b"trailer":
                _announce(out, name, value)
            continue
        if lname == b"content-type":
            content_type = value
        out.append(name + COLON + value)
    if drop:
        out = without(out, drop)
    return out, content_type


def all_lines(headers: Headers) -> Lines:
    """Every field as it came (a 101 response: its Connection and Upgrade go to the client)."""
    return [name + COLON + value for name, value in headers]


_SET_COOKIE: Final = b"set-cookie"
_OPT_OUT: Final = WRITER_AFFINITY_OPT_OUT.encode()


def scope_cookie_paths(lines: Lines, *, prefix: str, host: str) -> Lines:
    """--scope-cookie-paths: each Set-Cookie for ``host`` (or no domain) gets its Path under ``prefix``."""
    out = []
    for line in lines:
        colon = line.find(b":")
        if colon > 0 and line[:colon].lower() == _SET_COOKIE:
            value = line[colon + 1 :].strip().decode("latin-1")
            scoped = scope_cookie_path(value, prefix=prefix, host=host)
            line = line[: colon + 1] + b" " + scoped.encode("latin-1")
        out.append(line)
    return out


def writer_affinity(lines: Lines, cookie: str | None) -> Lines:
    """Writer affinity on a response: ``X-Writer-Affinity`` is removed, and ``cookie`` (the
    ``kamal-writer`` Set-Cookie, for a write) is added unless the target sent ``X-Writer-Affinity: false``."""
    out = []
    opted_out = False
    for line in lines:
        colon = line.find(b":")
        if colon > 0 and line[:colon].lower() == _OPT_OUT:
            opted_out = opted_out or line[colon + 1 :].strip() == b"false"
            continue
        out.append(line)
    if cookie is not None and not opted_out:
        out.append(b"Set-Cookie: " + cookie.encode("latin-1"))
    return out
