"""The JSON boundary: typed readers for every kind of field the control socket and the state file carry.

One schema serves both (the option dataclasses in ``proxy/options.py`` name a reader per field and
the commands in ``proxy/commands.py`` use the same readers), so whatever the daemon accepts over the
wire it can also write and read back. Everything here is hostile until a reader said otherwise:

- bools are JSON ``true`` / ``false``; integers are JSON integers (never bools, never floats);
- durations are integer nanoseconds, 0 ≤ d ≤ 2⁶³-1 (Go's ``time.Duration``); NaN, ±Infinity and
  floats such as ``1e400`` are rejected;
- sizes are integers 0 ≤ n ≤ 2⁶³-1; ports 0-65535;
- strings are JSON strings without NUL and within a length bound; lists are JSON arrays of those
  (``null`` is an empty list, as Go writes a nil slice);
- host names, path prefixes, header names, targets and service names must look like what they are
  (whole-string matches: a trailing newline is not ignored, as Python's ``$`` would).

A reader raises ``SchemaError`` whose message names the field (``target_options.buffer_requests:
must be a boolean, got "no"``). ``Decoding`` says what to do with keys the schema does not know:
the control protocol rejects them (a typo must not be silently ignored), the state file ignores them
and reports them (a newer kamal-proxy may have written keys we do not know yet).
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Callable, Iterable
from typing import Any

NANOS = 1_000_000_000
INT64_MAX = (1 << 63) - 1
MAX_STRING = 4096  # characters of any one string field
MAX_LIST = 1024  # items of any one list field
MAX_NAME = 255  # service names, host names

# A target: host[:port]; host is a DNS name or an IPv4 address (kamal-proxy's pattern, ASCII only).
TARGET_PATTERN = re.compile(r"^\w[-_.\w+]+(:\d+)?$", re.ASCII)
# A host a service is bound to: a DNS name, optionally `*.`-prefixed; an empty string is the catch-all.
HOST_PATTERN = re.compile(
    r"(\*\.)?[A-Za-z0-9_]([A-Za-z0-9_-]*[A-Za-z0-9_])?(\.[A-Za-z0-9_]([A-Za-z0-9_-]*[A-Za-z0-9_])?)*\.?"
    r"|\[[0-9A-Fa-f:.]+\]"  # an IPv6 literal
)
HEADER_NAME_PATTERN = re.compile(r"^[!#$%&'*+\-.^_`|~0-9A-Za-z]+$")
SERVICE_NAME_PATTERN = re.compile(r"^[^\x00-\x20\x7f/]+$")


class SchemaError(ValueError):
    """A value that does not fit its field; the message names the field."""


class InvalidTarget(SchemaError):
    """A target address kamal-proxy would reject; the message is kamal-proxy's own."""


class Decoding:
    """How one document is read: strict (the wire) rejects unknown keys, lenient (the state file)
    ignores them and lists them in ``ignored``."""

    __slots__ = ("ignored", "strict")

    def __init__(self, *, strict: bool) -> None:
        self.strict = strict
        self.ignored: list[str] = []

    def check_keys(self, data: dict[str, Any], known: Iterable[str], where: str) -> None:
        unknown = sorted(set(data) - set(known))
        if not unknown:
            return
        names = [join(where, key) for key in unknown]
        if self.strict:
            raise SchemaError(f"unknown field{'s' if len(names) > 1 else ''}: {', '.join(names)}")
        self.ignored.extend(names)


STRICT = Decoding(strict=True)  # no state: strict decoding never records anything


def join(where: str, key: str) -> str:
    return f"{where}.{key}" if where else key


def show(value: Any) -> str:
    """A short JSON rendering of a rejected value, for the error message."""
    try:
        text = json.dumps(value, allow_nan=True)
    except (TypeError, ValueError):
        text = type(value).__name__
    return text if len(text) <= 40 else text[:37] + "..."


def _fail(where: str, what: str, value: Any) -> SchemaError:
    return SchemaError(f"{where}: must be {what}, got {show(value)}")


# --------------------------------------------------------------------------------------------- scalars
def read_object(value: Any, where: str) -> dict[str, Any]:
    """A JSON object; ``null`` reads as an empty one (all defaults)."""
    if value is None:
        return {}
    if not isinstance(value, dict):
        raise _fail(where, "an object", value)
    return value


def read_bool(value: Any, where: str) -> bool:
    if not isinstance(value, bool):
        raise _fail(where, "a boolean", value)
    return value


def read_int(value: Any, where: str, *, low: int = 0, high: int = INT64_MAX) -> int:
    if type(value) is not int:
        raise _fail(where, "an integer", value)
    if not low <= value <= high:
        raise _fail(where, f"between {low} and {high}", value)
    return value


def read_size(value: Any, where: str) -> int:
    """A byte count: a non-negative integer."""
    return read_int(value, where)


def read_port(value: Any, where: str) -> int:
    return read_int(value, where, high=65535)


def read_duration(value: Any, where: str) -> float:
    """Integer nanoseconds (Go's time.Duration), non-negative; returned as float seconds."""
    if type(value) is not int:
        if isinstance(value, float) and not math.isfinite(value):
            raise _fail(where, "a finite number of nanoseconds", value)
        raise _fail(where, "an integer number of nanoseconds", value)
    return read_int(value, where) / NANOS


def read_string(value: Any, where: str, *, limit: int = MAX_STRING) -> str:
    if not isinstance(value, str):
        raise _fail(where, "a string", value)
    if len(value) > limit:
        raise SchemaError(f"{where}: longer than {limit} characters")
    if "\x00" in value:
        raise SchemaError(f"{where}: contains a NUL character")
    return value


def read_list(value: Any, where: str, item: Callable[[Any, str], str]) -> tuple[str, ...]:
    """A JSON array of ``item``; ``null`` is empty (Go's nil slice)."""
    if value is None:
        return ()
    if not isinstance(value, list):
        raise _fail(where, "a list", value)
    if len(value) > MAX_LIST:
        raise SchemaError(f"{where}: more than {MAX_LIST} items")
    return tuple(item(v, f"{where}[{i}]") for i, v in enumerate(value))


def _matching(pattern: re.Pattern[str], what: str, limit: int = MAX_STRING) -> Callable[[Any, str], str]:
    def read(value: Any, where: str) -> str:
        text = read_string(value, where, limit=limit)
        if not pattern.fullmatch(text):
            raise _fail(where, what, value)
        return text

    return read


def read_host(value: Any, where: str) -> str:
    """A host name a service answers for (``*.`` wildcard allowed); "" is the catch-all."""
    text = read_string(value, where, limit=MAX_NAME)
    if text and not HOST_PATTERN.fullmatch(text):
        raise _fail(where, "a host name", value)
    return text


def read_path(value: Any, where: str) -> str:
    """A URL path (prefix): no whitespace, control characters, query or fragment."""
    text = read_string(value, where)
    if any(ch in text for ch in "?#") or any(ord(ch) <= 0x20 or ord(ch) == 0x7F for ch in text):
        raise _fail(where, "a URL path", value)
    return text


def check_target(address: str) -> str:
    """``host[:port]`` with a port 1-65535; the message is kamal-proxy's."""
    if not TARGET_PATTERN.fullmatch(address):
        raise InvalidTarget(f"{address} :invalid host pattern")
    _, sep, port = address.rpartition(":")
    if sep and not 0 < int(port) <= 65535:
        raise InvalidTarget(f"{address} :invalid port")
    return address


def read_target(value: Any, where: str) -> str:
    return check_target(read_string(value, where, limit=MAX_NAME + 6))


read_header_name = _matching(HEADER_NAME_PATTERN, "an HTTP header name", limit=MAX_NAME)
read_service_name = _matching(
    SERVICE_NAME_PATTERN, "a service name (no spaces, slashes or control characters)", limit=MAX_NAME
)


HOST_HEADER_PATTERN = re.compile(r"[^\x00-\x20\x7f]*")
read_host_header = _matching(HOST_HEADER_PATTERN, "a Host header value (no spaces or control characters)")


def read_optional_header_name(value: Any, where: str) -> str:
    """A header name, or "" for none."""
    return "" if value == "" else read_header_name(value, where)


def read_strings(value: Any, where: str) -> tuple[str, ...]:
    return read_list(value, where, read_string)


def read_hosts(value: Any, where: str) -> tuple[str, ...]:
    return read_list(value, where, read_host)


def read_paths(value: Any, where: str) -> tuple[str, ...]:
    return read_list(value, where, read_path)


def read_header_names(value: Any, where: str) -> tuple[str, ...]:
    return read_list(value, where, read_header_name)


def read_targets(value: Any, where: str) -> tuple[str, ...]:
    return read_list(value, where, read_target)


# --------------------------------------------------------------------------------------------- JSON
def _reject_constant(name: str) -> Any:
    raise ValueError(f"{name} is not valid JSON")


def loads(data: bytes | str) -> Any:
    """``json.loads`` without NaN / Infinity, and with too-deep nesting a ValueError."""
    try:
        return json.loads(data, parse_constant=_reject_constant)
    except RecursionError:
        raise ValueError("JSON nested too deeply") from None
