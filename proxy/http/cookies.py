"""Cookies the proxy reads and writes, as kamal-proxy (Go's net/http) reads and writes them.

- ``request_cookie``: the first valid cookie of that name in the request's Cookie headers (Go's
  ``r.Cookie``): the rollout split (``kamal-rollout``) and writer affinity (``kamal-writer``) read it.
- ``writer_affinity_cookie`` / ``writer_affinity_active``: the ``kamal-writer=<expiry ms>`` cookie that
  sends a client's reads to writers for a while after it wrote (spec §3.3).
- ``scope_cookie_path``: ``--scope-cookie-paths`` — a target's ``Set-Cookie`` for the request's host gets
  its ``Path`` moved under the matched prefix (spec §3.12). Go parses the cookie and writes it out anew;
  we change only the ``Path`` attribute in place, so every other attribute reaches the client as the
  target wrote it.

Pure functions over strings: no I/O, no clock of their own (``now`` is passed in).
"""

from __future__ import annotations

import posixpath
from collections.abc import Iterable
from email.utils import formatdate

ROLLOUT_COOKIE = "kamal-rollout"
WRITER_COOKIE = "kamal-writer"
WRITER_AFFINITY_OPT_OUT = "x-writer-affinity"  # a target's response header; "false" opts out

_TOKEN = frozenset("!#$%&'*+-.^_`|~0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz")


def _valid_name(name: str) -> bool:
    return bool(name) and all(c in _TOKEN for c in name)


def _cookie_value(raw: str) -> str | None:
    """Go's parseCookieValue with double quotes allowed: the value, or None when it is invalid."""
    if len(raw) > 1 and raw[0] == '"' and raw[-1] == '"':
        raw = raw[1:-1]
    for c in raw:
        if not (" " <= c < "\x7f") or c in '";\\':
            return None
    return raw


def request_cookie(headers: Iterable[str], name: str) -> str | None:
    """The value of the first valid ``name`` cookie among the request's ``Cookie`` header values."""
    for header in headers:
        for part in header.split(";"):
            key, sep, raw = part.strip().partition("=")
            if sep and key == name and _valid_name(key):
                value = _cookie_value(raw)
                if value is not None:
                    return value
    return None


def writer_affinity_cookie(*, now: float, timeout: float) -> str:
    """The Set-Cookie value that pins a client's reads to writers until ``now + timeout`` (seconds)."""
    expires = now + timeout
    return f"{WRITER_COOKIE}={int(expires * 1000)}; Path=/; Expires={formatdate(int(expires + 1), usegmt=True)}; HttpOnly"


def writer_affinity_active(value: str | None, *, now: float) -> bool:
    """True while a ``kamal-writer`` cookie's expiry (unix milliseconds) lies ahead of ``now``."""
    if value is None or not value.lstrip("-").isdigit() or len(value) > 20:
        return False
    return now * 1000 < int(value)


def scope_cookie_path(set_cookie: str, *, prefix: str, host: str) -> str:
    """``set_cookie`` with its Path under ``prefix`` when its Domain is empty or ``host``; else as is."""
    parts = set_cookie.split(";")
    name, sep, value = parts[0].strip().partition("=")
    if not sep or not _valid_name(name) or _cookie_value(value.strip()) is None:
        return set_cookie  # unparsable: untouched, as Go's ParseSetCookie error path leaves it
    path_index = -1
    path = ""
    for i, attribute in enumerate(parts[1:], start=1):
        key, _, val = attribute.strip().partition("=")
        lowered = key.lower()
        if lowered == "domain" and val.strip().lower() not in ("", host.lower()):
            return set_cookie
        if lowered == "path":
            path_index, path = i, val.strip()
    trimmed = path.strip("/")
    scoped = posixpath.normpath(f"{prefix}/{trimmed}" if trimmed else prefix)
    if not scoped.startswith("/"):
        scoped = "/" + scoped
    if path_index < 0:
        return f"{set_cookie.rstrip()}; Path={scoped}"
    parts[path_index] = f" Path={scoped}"
    return ";".join(parts)
