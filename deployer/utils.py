"""Shell quoting helpers that reproduce Kamal's exact command lines.

Commands are lists of shell *tokens*: joining them with a space gives the exact line Kamal runs.
Values are quoted the way Kamal quotes them (Ruby ``String#dump`` plus escaping of backticks and of
``$`` that is not a ``${...}`` expansion).
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from typing import Any

_DUMP_ESCAPES = {
    '"': '\\"',
    "\\": "\\\\",
    "\n": "\\n",
    "\t": "\\t",
    "\r": "\\r",
    "\f": "\\f",
    "\v": "\\v",
    "\b": "\\b",
    "\a": "\\a",
    "\x1b": "\\e",
}
_DOLLAR_WITHOUT_EXPANSION = re.compile(r"\$(?!\{[^}]*\})")


class Sensitive(str):
    """A command token whose value must never be printed; ``redacted`` is shown instead."""

    redacted: str

    def __new__(cls, value: str, redacted: str = "[REDACTED]") -> Sensitive:
        obj = super().__new__(cls, value)
        obj.redacted = redacted
        return obj


def to_s(value: Any) -> str:
    """Ruby's ``to_s`` for the scalar types YAML gives us."""
    if value is True:
        return "true"
    if value is False:
        return "false"
    if value is None:
        return ""
    return str(value)


def _dump_ascii(part: str) -> str:
    out: list[str] = []
    for i, ch in enumerate(part):
        if ch in _DUMP_ESCAPES:
            out.append(_DUMP_ESCAPES[ch])
        elif ch == "#" and i + 1 < len(part) and part[i + 1] in "{$@":
            out.append("\\#")
        elif ord(ch) < 0x20 or ord(ch) == 0x7F:
            out.append(f"\\x{ord(ch):02X}")
        else:
            out.append(ch)
    return "".join(out)


def escape_shell_value(value: Any) -> str:
    """Quote a value exactly like ``Kamal::Utils.escape_shell_value``."""
    text = to_s(value)
    parts = re.findall(r"[\x00-\x7f]+|[^\x00-\x7f]+", text)
    body = "".join(_dump_ascii(p) if p.isascii() else p for p in parts)
    body = body.replace("`", "\\`")
    body = _DOLLAR_WITHOUT_EXPANSION.sub(r"\\$", body)
    return f'"{body}"'


def argumentize(
    argument: str, attributes: Mapping[str, Any] | Iterable[str], sensitive: bool = False
) -> list[str]:
    """``Kamal::Utils.argumentize``: ``--env K="v"`` pairs from a mapping, ``--flag value`` from a list."""
    args: list[str] = []
    if isinstance(attributes, Mapping):
        for key, value in attributes.items():
            if value is not None and value is not False and to_s(value) != "":
                attr = f"{key}={escape_shell_value(value)}"
                args += [argument, Sensitive(attr, f"{key}=[REDACTED]") if sensitive else attr]
            elif value is False:
                args += [argument, f"{key}=false"]
            else:
                args += [argument, str(key)]
    else:
        for item in attributes:
            args += [argument, str(item)]
    return args


def optionize(options: Mapping[str, Any], with_: str | None = None) -> list[str]:
    """``Kamal::Utils.optionize``: ``--key "value"`` or ``--key="value"``; true = bare flag; lists repeat."""
    flat: list[tuple[str, Any]] = []
    for key, value in options.items():
        if value is None:
            continue
        if isinstance(value, list | tuple):
            flat.extend((key, v) for v in value)
        else:
            flat.append((key, value))
    out: list[str] = []
    for key, value in flat:
        if with_ is not None:
            out.append(f"--{key}" if value is True else f"--{key}{with_}{escape_shell_value(value)}")
        else:
            out.append(f"--{key}")
            if value is not True:
                out.append(escape_shell_value(value))
    return out


def shell_single_quote(text: str) -> str:
    """Wrap in single quotes the way Kamal's ``shell`` helper does (``'`` → ``'\\''``)."""
    return "'" + text.replace("'", "'\\''") + "'"


def seconds_duration(value: Any) -> str | None:
    return None if value is None else f"{value}s"


def join(cmd: Iterable[str]) -> str:
    return " ".join(cmd)


def redact(cmd: Iterable[str]) -> str:
    """Join a command for display, replacing every Sensitive token with its redacted form."""
    return " ".join(t.redacted if isinstance(t, Sensitive) else t for t in cmd)
