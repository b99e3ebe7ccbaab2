"""An exact, small reimplementation of cobra/pflag flag parsing as kamal-proxy uses it.

kamal-proxy's CLI is cobra on top of spf13/pflag. Kamal drives it with command lines such as
``deploy app-web --target="172.1.0.2:80" --buffer-requests --buffer-responses="false"``, so the
details matter: a bool flag never consumes the next argument, ``--flag=value`` and ``--flag value``
are both accepted, string-slice flags take repeats and comma lists (parsed as one CSV record, like
pflag), flags and positionals may be interspersed, ``--`` ends flag parsing, and every error has the
exact pflag/cobra wording (the caller prints it after ``Error: `` and exits 1).

Value syntax follows Go: durations are ``time.ParseDuration``, ints are ``strconv.ParseInt(s, 0,
64)`` (so ``0x10`` and ``1_000`` work), bools are ``strconv.ParseBool``, floats ``ParseFloat``.
Durations come out as float seconds.
"""

from __future__ import annotations

import re
from collections.abc import Collection, Iterable, Mapping, Sequence
from dataclasses import dataclass, replace
from decimal import Decimal
from typing import Literal

from proxy.gotext import format_duration, go_quote, go_quote_rune, is_digit, parse_duration, utf8

__all__ = [
    "ENV_PREFIX",
    "Flag",
    "FlagError",
    "FlagKind",
    "HelpRequested",
    "Parsed",
    "apply_env_defaults",
    "check_required",
    "env_key",
    "env_value",
    "help_text",
    "parse_bool",
    "parse_flags",
]

FlagKind = Literal["bool", "string", "strings", "duration", "int", "bytes", "float"]

ENV_PREFIX = "KAMAL_PROXY_"

_INT64_MAX = (1 << 63) - 1
_UINT64_MAX = (1 << 64) - 1


class FlagError(Exception):
    """A command-line error; ``str(e)`` is the message cobra prints after ``Error: ``."""


class HelpRequested(FlagError):
    """``-h``/``--help`` was given but the command defines no ``help`` flag (pflag's ``ErrHelp``).

    Cobra reacts to this by printing the command's help and exiting 0. Callers that register a
    ``help`` bool flag (the normal case) never see it.
    """

    def __init__(self) -> None:
        super().__init__("pflag: help requested")


@dataclass(frozen=True)
class Flag:
    """One command-line flag, as declared with cobra's ``Flags().XxxVar``."""

    name: str
    kind: FlagKind
    default: object
    help: str
    shorthand: str | None = None
    required: bool = False


@dataclass(frozen=True)
class Parsed:
    """The result of :func:`parse_flags`."""

    values: dict[str, object]
    changed: frozenset[str]
    args: list[str]


def _num_error(func: str, text: str, reason: str) -> ValueError:
    return ValueError(f"strconv.{func}: parsing {go_quote(text)}: {reason}")


_TRUE = frozenset({"1", "t", "T", "TRUE", "true", "True"})
_FALSE = frozenset({"0", "f", "F", "FALSE", "false", "False"})


def parse_bool(text: str) -> bool:
    """Go's ``strconv.ParseBool``."""
    if text in _TRUE:
        return True
    if text in _FALSE:
        return False
    raise _num_error("ParseBool", text, "invalid syntax")


def _underscore_ok(text: str) -> bool:
    """Go's ``strconv.underscoreOK``: underscores only between digits (or after a base prefix)."""
    saw = "^"
    i = 0
    s = text
    if s and s[0] in "+-":
        s = s[1:]
    hexa = False
    if len(s) >= 2 and s[0] == "0" and s[1].lower() in "box":
        i = 2
        saw = "0"
        hexa = s[1].lower() == "x"
    while i < len(s):
        ch = s[i]
        if is_digit(ch) or (hexa and "a" <= ch.lower() <= "f"):
            saw = "0"
        elif ch == "_":
            if saw != "0":
                return False
            saw = "_"
        else:
            if saw == "_":
                return False
            saw = "!"
        i += 1
    return saw != "_"


def _base_prefix(s: str) -> tuple[int, str]:
    """Go's base-0 prefixes: 0b, 0o, 0x, or a leading 0 for octal; otherwise decimal."""
    if s[0] != "0":
        return 10, s
    prefix = s[1].lower() if len(s) >= 3 else ""
    bases = {"b": 2, "o": 8, "x": 16}
    if prefix in bases:
        return bases[prefix], s[2:]
    return 8, s[1:]


def _digits(text: str, s: str, base: int) -> tuple[int, bool]:
    """The value of the digits ``s`` in ``base`` and whether there were underscores."""
    n = 0
    underscores = False
    for ch in s:
        if ch == "_":
            underscores = True
            continue
        if is_digit(ch):
            d = ord(ch) - 48
        elif "a" <= ch.lower() <= "z":
            d = ord(ch.lower()) - 87
        else:
            raise _num_error("ParseInt", text, "invalid syntax")
        if d >= base:
            raise _num_error("ParseInt", text, "invalid syntax")
        n = n * base + d
        if n > _UINT64_MAX:
            raise _num_error("ParseInt", text, "value out of range")
    return n, underscores


def _parse_int(text: str) -> int:
    """Go's ``strconv.ParseInt(text, 0, 64)`` (what pflag's int/int64 flags use)."""
    s = text
    neg = False
    if s and s[0] in "+-":
        neg = s[0] == "-"
        s = s[1:]
    if s == "":
        raise _num_error("ParseInt", text, "invalid syntax")
    base, s = _base_prefix(s)
    n, underscores = _digits(text, s, base)
    if underscores and not _underscore_ok(text):
        raise _num_error("ParseInt", text, "invalid syntax")
    if (not neg and n > _INT64_MAX) or (neg and n > 1 << 63):
        raise _num_error("ParseInt", text, "value out of range")
    return -n if neg else n


_ATOI = re.compile(r"[+-]?[0-9]+")


def _atoi(text: str) -> int:
    """Go's ``strconv.Atoi`` (base 10 only; what kamal-proxy's env lookups use)."""
    if not _ATOI.fullmatch(text):
        raise _num_error("Atoi", text, "invalid syntax")
    n = int(text)
    if not -(1 << 63) <= n <= _INT64_MAX:
        raise _num_error("Atoi", text, "value out of range")
    return n


_FLOAT_SPECIAL = re.compile(r"[+-]?(?:inf|infinity)|nan", re.IGNORECASE)
_FLOAT_DEC = re.compile(r"[+-]?(?:[0-9_]+(?:\.[0-9_]*)?|\.[0-9_]+)(?:[eE][+-]?[0-9_]+)?")
_FLOAT_HEX = re.compile(r"[+-]?0[xX](?:[0-9a-fA-F_]+(?:\.[0-9a-fA-F_]*)?|\.[0-9a-fA-F_]+)[pP][+-]?[0-9_]+")


def _parse_float(text: str) -> float:
    """Go's ``strconv.ParseFloat(text, 64)``."""
    if _FLOAT_SPECIAL.fullmatch(text):
        return float(text)
    is_hex = _FLOAT_HEX.fullmatch(text) is not None
    if not is_hex and not _FLOAT_DEC.fullmatch(text):
        raise _num_error("ParseFloat", text, "invalid syntax")
    if "_" in text and not _underscore_ok(text):
        raise _num_error("ParseFloat", text, "invalid syntax")
    plain = text.replace("_", "")
    if not any(is_digit(ch) for ch in plain.split("e")[0].split("E")[0]) and not is_hex:
        raise _num_error("ParseFloat", text, "invalid syntax")
    try:
        value = float.fromhex(plain) if is_hex else float(plain)
    except (ValueError, OverflowError):
        raise _num_error("ParseFloat", text, "value out of range") from None
    if value in (float("inf"), float("-inf")):
        raise _num_error("ParseFloat", text, "value out of range")
    return value


def _format_float(value: float) -> str:
    """Go's ``strconv.FormatFloat(v, 'g', -1, 64)`` (how pflag shows a float default)."""
    if value != value:
        return "NaN"
    if value in (float("inf"), float("-inf")):
        return "+Inf" if value > 0 else "-Inf"
    sign = "-" if str(value).startswith("-") else ""
    dec = Decimal(repr(abs(value))).normalize()
    _, digit_tuple, exponent = dec.as_tuple()
    assert isinstance(exponent, int)
    digits = "".join(map(str, digit_tuple))
    if digits == "0":
        return sign + "0"
    nd = len(digits)
    dp = nd + exponent
    exp = dp - 1
    if exp < -4 or exp >= 6:
        mant = digits[0] + ("." + digits[1:] if nd > 1 else "")
        return f"{sign}{mant}e{'-' if exp < 0 else '+'}{abs(exp):02d}"
    if dp <= 0:
        return f"{sign}0.{'0' * -dp}{digits}"
    if dp >= nd:
        return sign + digits + "0" * (dp - nd)
    return f"{sign}{digits[:dp]}.{digits[dp:]}"


# ---------------------------------------------------------------------------------------------
# encoding/csv (one record, as pflag's string-slice flags read it)


def _blen(text: str) -> int:
    return len(utf8(text))


def _csv_lines(text: str) -> list[str]:
    lines: list[str] = []
    start = 0
    while start < len(text):
        end = text.find("\n", start)
        if end < 0:
            line = text[start:]
            start = len(text)
            if line.endswith("\r"):
                line = line[:-1]
        else:
            line = text[start : end + 1]
            start = end + 1
            if line.endswith("\r\n"):
                line = line[:-2] + "\n"
        lines.append(line)
    return lines


def _csv_error(record_line: int, line: int, column: int, what: str) -> ValueError:
    where = f"parse error on line {line}, column {column}: {what}"
    if record_line != line:
        return ValueError(f"record on line {record_line}; {where}")
    return ValueError(where)


_BARE_QUOTE = 'bare " in non-quoted-field'
_BAD_QUOTE = 'extraneous or missing " in quoted-field'


class _CsvRecord:
    """Go's ``csv.Reader.readRecord`` over the lines of one text, default settings."""

    def __init__(self, text: str) -> None:
        self.lines = iter(_csv_lines(text))
        self.line_no = 0
        self.line = ""
        for candidate in self.lines:
            self.line_no += 1
            if candidate != "\n":  # empty lines are skipped
                self.line = candidate
                break
        else:
            raise ValueError("EOF")
        self.record_line = self.line_no
        self.column = 1
        self.fields: list[str] = []

    def error(self, column: int, what: str) -> ValueError:
        return _csv_error(self.record_line, self.line_no, column, what)

    def read(self) -> list[str]:
        done = False
        while not done:
            done = self.quoted_field() if self.line.startswith('"') else self.plain_field()
        return self.fields

    def plain_field(self) -> bool:
        """Read a field up to the next comma; True when it was the last."""
        line = self.line
        comma = line.find(",")
        if comma >= 0:
            field = line[:comma]
        else:
            field = line[:-1] if line.endswith("\n") else line
        quote = field.find('"')
        if quote >= 0:
            raise self.error(self.column + _blen(field[:quote]), _BARE_QUOTE)
        self.fields.append(field)
        if comma < 0:
            return True
        self.column += _blen(line[:comma]) + 1
        self.line = line[comma + 1 :]
        return False

    def quoted_field(self) -> bool:
        """Read a quoted field (it may span lines); True when it was the last."""
        parts: list[str] = []
        self.line = self.line[1:]
        self.column += 1
        while True:
            line = self.line
            quote = line.find('"')
            if quote < 0:
                if not line:
                    raise self.error(self.column, _BAD_QUOTE)
                parts.append(line)
                self.column += _blen(line)
                self.next_line()
                continue
            parts.append(line[:quote])
            self.column += _blen(line[:quote]) + 1
            line = self.line = line[quote + 1 :]
            if line.startswith('"'):
                parts.append('"')
                self.line = line[1:]
                self.column += 1
            elif line.startswith(","):
                self.line = line[1:]
                self.column += 1
                self.fields.append("".join(parts))
                return False
            elif line in ("", "\n"):
                self.fields.append("".join(parts))
                return True
            else:
                raise self.error(self.column - 1, _BAD_QUOTE)

    def next_line(self) -> None:
        following = next(self.lines, None)
        if following is None:
            self.line = ""
        else:
            self.line = following
            self.line_no += 1
            self.column = 1


def _read_csv_record(text: str) -> list[str]:
    """Go's ``csv.NewReader(strings.NewReader(text)).Read()`` with default settings."""
    return _CsvRecord(text).read()


def _csv_needs_quotes(field: str) -> bool:
    if field == "":
        return False
    if field == "\\.":
        return True
    if any(ch in field for ch in ',"\r\n'):
        return True
    return field[0] in " \t" or field[0].isspace()


def _write_csv(values: Iterable[str]) -> str:
    out: list[str] = []
    for field in values:
        if _csv_needs_quotes(field):
            out.append('"' + field.replace('"', '""') + '"')
        else:
            out.append(field)
    return ",".join(out)


def _read_strings(text: str) -> list[str]:
    if text == "":
        return []
    return _read_csv_record(text)


# ---------------------------------------------------------------------------------------------
# Parsing


def _convert(kind: FlagKind, text: str) -> object:
    if kind == "bool":
        return parse_bool(text)
    if kind == "string":
        return text
    if kind == "strings":
        return _read_strings(text)
    if kind == "duration":
        return parse_duration(text)
    if kind in ("int", "bytes"):
        return _parse_int(text)
    if kind == "float":
        return _parse_float(text)
    raise AssertionError(f"unknown flag kind {kind!r}")


def _initial_value(flag: Flag) -> object:
    if isinstance(flag.default, list | tuple):
        return list(flag.default)
    if flag.kind == "duration" and isinstance(flag.default, int) and not isinstance(flag.default, bool):
        return float(flag.default)  # durations are always float seconds
    return flag.default


def _display_name(flag: Flag) -> str:
    if flag.shorthand:
        return f"-{flag.shorthand}, --{flag.name}"
    return f"--{flag.name}"


class _FlagSet:
    def __init__(self, *, flags: Sequence[Flag]) -> None:
        self.by_name: dict[str, Flag] = {}
        self.by_short: dict[str, Flag] = {}
        for flag in flags:
            if flag.name in self.by_name:
                raise ValueError(f"flag redefined: {flag.name}")
            self.by_name[flag.name] = flag
            if flag.shorthand:
                if len(flag.shorthand) != 1:
                    raise ValueError(f"{flag.shorthand!r} shorthand is more than one ASCII character")
                if flag.shorthand in self.by_short:
                    raise ValueError(f"unable to redefine {flag.shorthand!r} shorthand")
                self.by_short[flag.shorthand] = flag
        self.values: dict[str, object] = {f.name: _initial_value(f) for f in flags}
        self.changed: set[str] = set()
        self.args: list[str] = []

    def set(self, flag: Flag, text: str) -> None:
        try:
            value = _convert(flag.kind, text)
        except ValueError as exc:
            raise FlagError(
                f"invalid argument {go_quote(text)} for {go_quote(_display_name(flag))} flag: {exc}"
            ) from None
        if flag.kind == "strings" and flag.name in self.changed:
            current = self.values[flag.name]
            assert isinstance(current, list) and isinstance(value, list)
            value = current + value
        self.values[flag.name] = value
        self.changed.add(flag.name)

    def parse(self, argv: Sequence[str]) -> None:
        rest = list(argv)
        while rest:
            arg = rest.pop(0)
            if len(arg) <= 1 or arg[0] != "-":
                self.args.append(arg)
                continue
            if arg[1] == "-":
                if len(arg) == 2:  # "--" terminates the flags
                    self.args.extend(rest)
                    return
                rest = self.parse_long(arg, rest)
            else:
                rest = self.parse_short(arg, rest)

    def parse_long(self, arg: str, rest: list[str]) -> list[str]:
        name = arg[2:]
        if name == "" or name[0] in "-=":
            raise FlagError(f"bad flag syntax: {arg}")
        name, eq, inline = name.partition("=")
        flag = self.by_name.get(name)
        if flag is None:
            if name == "help":
                raise HelpRequested()
            raise FlagError(f"unknown flag: --{name}")
        if eq:
            value = inline
        elif flag.kind == "bool":
            value = "true"
        elif rest:
            value = rest.pop(0)
        else:
            raise FlagError(f"flag needs an argument: {arg}")
        self.set(flag, value)
        return rest

    def parse_short(self, arg: str, rest: list[str]) -> list[str]:
        shorthands = arg[1:]
        while shorthands:
            ch = shorthands[0]
            remaining = shorthands[1:]
            flag = self.by_short.get(ch)
            if flag is None:
                if ch == "h":
                    raise HelpRequested()
                first_byte = chr(utf8(ch)[0])  # pflag looks at bytes, not runes
                raise FlagError(f"unknown shorthand flag: {go_quote_rune(first_byte)} in -{shorthands}")
            if len(shorthands) > 2 and shorthands[1] == "=":
                value = shorthands[2:]
                remaining = ""
            elif flag.kind == "bool":
                value = "true"
            elif len(shorthands) > 1:
                value = shorthands[1:]
                remaining = ""
            elif rest:
                value = rest.pop(0)
            else:
                raise FlagError(f"flag needs an argument: {go_quote_rune(ch)} in -{shorthands}")
            self.set(flag, value)
            shorthands = remaining
        return rest


def check_required(flags: Sequence[Flag], parsed: Parsed) -> None:
    """Cobra's ``ValidateRequiredFlags``: ``required flag(s) "a", "b" not set`` (names sorted).

    Cobra runs this after argument validation, so a caller that validates positionals itself can
    call ``parse_flags(..., validate_required=False)``, check the args, then call this.
    """
    missing = sorted(f.name for f in flags if f.required and f.name not in parsed.changed)
    if missing:
        raise FlagError('required flag(s) "' + '", "'.join(missing) + '" not set')


def parse_flags(flags: Sequence[Flag], argv: Sequence[str], *, validate_required: bool = True) -> Parsed:
    """Parse ``argv`` (the arguments after the subcommand name) the way cobra/pflag does.

    Raises :class:`FlagError` with pflag/cobra's exact message. Required flags are not checked when
    ``help`` is set (cobra shows the help instead).
    """
    flag_set = _FlagSet(flags=flags)
    flag_set.parse(argv)
    parsed = Parsed(values=flag_set.values, changed=frozenset(flag_set.changed), args=flag_set.args)
    if validate_required and parsed.values.get("help") is not True:
        check_required(flags, parsed)
    return parsed


# ---------------------------------------------------------------------------------------------
# Environment defaults (kamal-proxy run)


def env_key(name: str) -> str:
    """``http-port`` -> ``HTTP_PORT``."""
    return name.upper().replace("-", "_")


def env_value(name: str, environ: Mapping[str, str]) -> str | None:
    """kamal-proxy's ``findEnv``: ``KAMAL_PROXY_<NAME>`` wins over ``<NAME>``.

    A variable that is set wins even when empty (Go's ``os.LookupEnv``).
    """
    key = env_key(name)
    prefixed = environ.get(ENV_PREFIX + key)
    if prefixed is not None:
        return prefixed
    return environ.get(key)


def _convert_env(kind: FlagKind, text: str) -> object:
    if kind in ("int", "bytes"):
        return _atoi(text)  # getEnvInt uses strconv.Atoi
    return _convert(kind, text)


def apply_env_defaults(
    flags: Sequence[Flag], environ: Mapping[str, str], *, exclude: Collection[str] = ("help",)
) -> list[Flag]:
    """Return ``flags`` with defaults taken from the environment where a parsable value is set.

    Unparsable values are silently ignored (the default stays), as kamal-proxy's ``getEnvInt`` /
    ``getEnvBool`` do. Flags named in ``exclude`` are left alone (kamal-proxy has no env for
    ``--http3``, for instance).
    """
    out: list[Flag] = []
    for flag in flags:
        text = None if flag.name in exclude else env_value(flag.name, environ)
        if text is not None:
            try:
                flag = replace(flag, default=_convert_env(flag.kind, text))
            except ValueError:
                pass
        out.append(flag)
    return out


# ---------------------------------------------------------------------------------------------
# Help


_VARNAMES: dict[str, str] = {
    "bool": "",
    "string": "string",
    "strings": "strings",
    "duration": "duration",
    "int": "int",
    "bytes": "int",
    "float": "float",
}


def _default_text(flag: Flag) -> str:
    value = flag.default
    if flag.kind == "bool":
        return "true" if value else "false"
    if flag.kind == "duration":
        assert isinstance(value, int | float)
        return format_duration(float(value))
    if flag.kind == "strings":
        assert isinstance(value, list | tuple)
        return "[" + _write_csv(str(v) for v in value) + "]"
    if flag.kind == "float":
        assert isinstance(value, int | float)
        return _format_float(float(value))
    return str(value)


def _default_is_zero(flag: Flag, text: str) -> bool:
    if flag.kind == "bool":
        return text == "false"
    if flag.kind == "duration":
        return text in ("0", "0s")
    if flag.kind in ("int", "bytes", "float"):
        return text == "0"
    if flag.kind == "string":
        return text == ""
    return text == "[]"


def _unquote_usage(flag: Flag) -> tuple[str, str]:
    usage = flag.help
    start = usage.find("`")
    if start >= 0:
        end = usage.find("`", start + 1)
        if end >= 0:
            name = usage[start + 1 : end]
            return name, usage[:start] + name + usage[end + 1 :]
    return _VARNAMES[flag.kind], usage


def _flag_usages(flags: Sequence[Flag]) -> str:
    """pflag's ``FlagUsages``: sorted, aligned, three spaces before the longest flag's help."""
    lines: list[str] = []
    maxlen = 0
    for flag in sorted(flags, key=lambda f: f.name):
        line = f"  -{flag.shorthand}, --{flag.name}" if flag.shorthand else f"      --{flag.name}"
        varname, usage = _unquote_usage(flag)
        if varname:
            line += " " + varname
        line += "\x00"
        maxlen = max(maxlen, len(line))
        line += usage
        text = _default_text(flag)
        if not _default_is_zero(flag, text):
            line += f" (default {go_quote(text)})" if flag.kind == "string" else f" (default {text})"
        lines.append(line)
    out: list[str] = []
    for line in lines:
        sidx = line.index("\x00")
        usage = line[sidx + 1 :].replace("\n", "\n" + " " * (maxlen + 2))
        out.append(line[:sidx] + " " + " " * (maxlen - sidx) + " " + usage + "\n")
    return "".join(out)


def help_text(
    command: str,
    usage: str,
    flags: Sequence[Flag],
    *,
    description: str = "",
    aliases: Sequence[str] = (),
) -> str:
    """Cobra's help output for a command.

    ``command`` is the command path (``"kamal-proxy deploy"``; a bare ``"deploy"`` gets the
    ``kamal-proxy`` root prepended) and ``usage`` the cobra ``Use`` string (``"deploy <service>"``,
    or just the argument part ``"<service>"``). ``description`` (cobra's Short/Long text) comes
    first when given. ``[flags]`` is appended to the use line when there are flags.
    """
    path = " ".join(command.split()) or "kamal-proxy"
    if path != "kamal-proxy" and not path.startswith("kamal-proxy "):
        path = "kamal-proxy " + path
    parent, _, name = path.rpartition(" ")
    use = " ".join(usage.split())
    if use == path or use.startswith(path + " "):
        use_line = use
    elif use.split(" ", 1)[0] == name:
        use_line = f"{parent} {use}" if parent else use
    else:
        use_line = f"{path} {use}" if use else path
    if flags and "[flags]" not in use_line:
        use_line += " [flags]"

    out: list[str] = []
    if description.strip():
        out.append(description.rstrip() + "\n\n")
    out.append("Usage:\n  " + use_line)
    if aliases:
        out.append("\n\nAliases:\n  " + ", ".join([name, *aliases]))
    if flags:
        out.append("\n\nFlags:\n" + _flag_usages(flags).rstrip())
    out.append("\n")
    return "".join(out)
