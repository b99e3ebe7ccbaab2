"""Go's text formats that kamal-proxy's messages and flags use: durations and quoted strings.

`time.ParseDuration` / `Duration.String` and `strconv.Quote`, ported closely so that durations read
and printed (`30s`, `500ms`, `1m30s`) and error messages match the Go program's.
"""

from __future__ import annotations

_INT64_MAX = (1 << 63) - 1

__all__ = [
    "format_duration",
    "go_quote",
    "go_quote_rune",
    "is_digit",
    "parse_duration",
    "parse_duration_ns",
    "utf8",
]


# ---------------------------------------------------------------------------------------------
# Go string quoting


_ESCAPES = {
    "\a": "\\a",
    "\b": "\\b",
    "\f": "\\f",
    "\n": "\\n",
    "\r": "\\r",
    "\t": "\\t",
    "\v": "\\v",
    "\\": "\\\\",
}


def utf8(text: str) -> bytes:
    # argv/environ strings carry undecodable bytes as lone surrogates (surrogateescape).
    return text.encode("utf-8", "surrogateescape")


def _quote_body(text: str, quote: str) -> str:
    out: list[str] = []
    for ch in text:
        code = ord(ch)
        if ch == quote:
            out.append("\\" + ch)
        elif ch in _ESCAPES:
            out.append(_ESCAPES[ch])
        elif 0xDC80 <= code <= 0xDCFF:  # an invalid UTF-8 byte smuggled in by surrogateescape
            out.append(f"\\x{code - 0xDC00:02x}")
        elif ch.isprintable():
            out.append(ch)
        elif code < 0x80:
            out.append(f"\\x{code:02x}")
        elif code < 0x10000:
            out.append(f"\\u{code:04x}")
        else:
            out.append(f"\\U{code:08x}")
    return "".join(out)


def go_quote(text: str) -> str:
    """Go's ``strconv.Quote`` (what ``%q`` does to a string)."""
    return '"' + _quote_body(text, '"') + '"'


def go_quote_rune(ch: str) -> str:
    """Go's ``strconv.QuoteRune`` (what ``%q`` does to a byte/rune)."""
    return "'" + _quote_body(ch, "'") + "'"


def _time_quote(text: str) -> str:
    """The ``time`` package's private ``quote``: non-ASCII and control bytes become ``\\xNN``."""
    out = ['"']
    for ch in text:
        code = ord(ch)
        if code >= 0x80 or code < 0x20:
            out.extend(f"\\x{b:02x}" for b in utf8(ch))
        else:
            if ch in '"\\':
                out.append("\\")
            out.append(ch)
    out.append('"')
    return "".join(out)


# ---------------------------------------------------------------------------------------------
# Durations (time.ParseDuration / Duration.String)

_UNITS: dict[str, int] = {
    "ns": 1,
    "us": 1_000,
    "\u00b5s": 1_000,  # micro sign
    "\u03bcs": 1_000,  # Greek mu
    "ms": 1_000_000,
    "s": 1_000_000_000,
    "m": 60 * 1_000_000_000,
    "h": 3600 * 1_000_000_000,
}


def is_digit(ch: str) -> bool:
    return "0" <= ch <= "9"


class _Overflow(ValueError):
    pass


_LIMIT = 1 << 63


def _leading_int(s: str) -> tuple[int, str]:
    """Go's ``leadingInt``: the digits at the start of ``s`` (overflowing 1<<63 is an error)."""
    i = 0
    v = 0
    while i < len(s) and is_digit(s[i]):
        if v > _LIMIT // 10:
            raise _Overflow
        v = v * 10 + ord(s[i]) - 48
        if v > _LIMIT:
            raise _Overflow
        i += 1
    return v, s[i:]


def _leading_fraction(s: str) -> tuple[int, float, int, str]:
    """Go's ``leadingFraction``: (digits as an int, their scale, how many were read, rest).
    Digits past int64 precision are consumed but ignored."""
    i = 0
    frac = 0
    scale = 1.0
    overflow = False
    while i < len(s) and is_digit(s[i]):
        if not overflow:
            y = frac * 10 + ord(s[i]) - 48
            if frac > _INT64_MAX // 10 or y > _LIMIT:
                overflow = True
            else:
                frac = y
                scale *= 10
        i += 1
    return frac, scale, i, s[i:]


def _duration_component(s: str, text: str) -> tuple[int, str]:
    """One ``<number>[.<fraction>]<unit>`` of a duration: its nanoseconds and the rest of ``s``."""
    if not (s[0] == "." or is_digit(s[0])):
        raise _Overflow
    before = len(s)
    v, s = _leading_int(s)
    pre = len(s) != before
    frac, scale, post = 0, 1.0, 0
    if s and s[0] == ".":
        frac, scale, post, s = _leading_fraction(s[1:])
    if not pre and not post:
        raise _Overflow
    i = 0
    while i < len(s) and not (s[i] == "." or is_digit(s[i])):
        i += 1
    if i == 0:
        raise ValueError("time: missing unit in duration " + _time_quote(text))
    unit_text, s = s[:i], s[i:]
    unit = _UNITS.get(unit_text)
    if unit is None:
        raise ValueError("time: unknown unit " + _time_quote(unit_text) + " in duration " + _time_quote(text))
    if v > _LIMIT // unit:
        raise _Overflow
    v *= unit
    if frac > 0:
        v += int(float(frac) * (float(unit) / scale))
        if v > _LIMIT:
            raise _Overflow
    return v, s


def parse_duration_ns(text: str) -> int:
    """Go's ``time.ParseDuration``, returning integer nanoseconds (a Go ``time.Duration``)."""
    s = text
    neg = False
    if s and s[0] in "+-":
        neg = s[0] == "-"
        s = s[1:]
    if s == "0":
        return 0
    total = 0
    try:
        if s == "":
            raise _Overflow
        while s:
            v, s = _duration_component(s, text)
            total += v
            if total > _LIMIT:
                raise _Overflow
        if not neg and total > _INT64_MAX:
            raise _Overflow
    except _Overflow:
        raise ValueError("time: invalid duration " + _time_quote(text)) from None
    return -total if neg else total


def parse_duration(text: str) -> float:
    """Go's ``time.ParseDuration``, returning float seconds.

    ``"30s"``, ``"500ms"``, ``"1m30s"``, ``"1.5s"``, ``"2µs"``, ``"-1s"`` and ``"0"`` parse; errors
    carry Go's exact text: ``time: invalid duration "abc"``, ``time: missing unit in duration
    "30"``, ``time: unknown unit "x" in duration "3x"``.
    """
    return parse_duration_ns(text) / 1e9


def _fmt_frac(v: int, prec: int) -> tuple[str, int]:
    digits: list[str] = []
    printing = False
    for _ in range(prec):
        digit = v % 10
        printing = printing or digit != 0
        if printing:
            digits.append(chr(48 + digit))
        v //= 10
    if not printing:
        return "", v
    return "." + "".join(reversed(digits)), v


def _format_duration_ns(ns: int) -> str:
    neg = ns < 0
    u = -ns if neg else ns
    if u < 1_000_000_000:
        if u == 0:
            return "0s"
        if u < 1_000:
            frac, u = _fmt_frac(u, 0)
            out = f"{u}{frac}ns"
        elif u < 1_000_000:
            frac, u = _fmt_frac(u, 3)
            out = f"{u}{frac}\u00b5s"
        else:
            frac, u = _fmt_frac(u, 6)
            out = f"{u}{frac}ms"
    else:
        frac, u = _fmt_frac(u, 9)
        out = f"{u % 60}{frac}s"
        u //= 60
        if u > 0:
            out = f"{u % 60}m{out}"
            u //= 60
            if u > 0:
                out = f"{u}h{out}"
    return "-" + out if neg else out


def format_duration(seconds: float) -> str:
    """Go's ``Duration.String()`` for a duration given in (float) seconds.

    ``30 -> "30s"``, ``90 -> "1m30s"``, ``0.5 -> "500ms"``, ``0 -> "0s"``, ``3600 -> "1h0m0s"``.
    """
    ns = round(seconds * 1e9)
    ns = max(-(1 << 63), min(_INT64_MAX, ns))
    return _format_duration_ns(ns)


# ---------------------------------------------------------------------------------------------
# strconv
