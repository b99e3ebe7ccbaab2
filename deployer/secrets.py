"""Kamal 2 secrets: dotenv files with ``$VAR``/``${VAR}`` and ``$(command)`` substitution.

Files read, in order (later wins): ``<secrets_path>-common`` then ``<secrets_path>`` or, with a
destination, ``<secrets_path>.<dest>`` (plain ``<secrets_path>`` is then not read).
Every resolved value is registered with :data:`REDACTOR` so it never reaches the terminal.
"""

from __future__ import annotations

import os
import re
import subprocess
import threading
from collections.abc import Iterator, Mapping
from pathlib import Path

from deployer.errors import SecretError, warn
from deployer.loading import display_path

_LINE = re.compile(r"^\s*(?:export\s+)?([A-Za-z_][A-Za-z0-9_.-]*)\s*=\s*(.*)$")
_VAR = re.compile(r"(\\?)\$(?:\{([A-Za-z_][A-Za-z0-9_]*)\}|([A-Za-z_][A-Za-z0-9_]*))")


class Redactor:
    """Replaces every registered secret value with ``[REDACTED]`` in text meant for people."""

    MIN_LENGTH = 4

    def __init__(self) -> None:
        self._values: set[str] = set()
        self._lock = threading.Lock()

    def add(self, value: str) -> None:
        if len(value) >= self.MIN_LENGTH:
            with self._lock:
                self._values.add(value)
                for line in value.splitlines():
                    if len(line) >= self.MIN_LENGTH:
                        self._values.add(line)

    def clear(self) -> None:
        with self._lock:
            self._values.clear()

    def __call__(self, text: str) -> str:
        with self._lock:
            values = sorted(self._values, key=len, reverse=True)
        for value in values:
            if value in text:
                text = text.replace(value, "[REDACTED]")
        return text


REDACTOR = Redactor()


def _run_command(command: str, env: Mapping[str, str], source: str) -> str:
    proc = subprocess.run(
        ["sh", "-c", command], capture_output=True, text=True, env=dict(env), check=False, timeout=120
    )
    if proc.returncode != 0:
        raise SecretError(f"{source}: command $({command}) exited {proc.returncode}: {proc.stderr.strip()}")
    return proc.stdout.rstrip("\n")


def _substitute(value: str, known: Mapping[str, str], source: str, commands: bool) -> str:
    env = {**os.environ, **known}

    def var(m: re.Match[str]) -> str:
        if m.group(1):
            return m.group(0)[1:]
        name = m.group(2) or m.group(3)
        return env.get(name, "")

    text = _VAR.sub(var, value)
    if commands:
        text = _substitute_commands(text, env, source)
    return text


def _substitute_commands(text: str, env: Mapping[str, str], source: str) -> str:
    out: list[str] = []
    i = 0
    while i < len(text):
        if text.startswith("$(", i) and (i == 0 or text[i - 1] != "\\"):
            depth, j = 1, i + 2
            while j < len(text) and depth:
                depth += {"(": 1, ")": -1}.get(text[j], 0)
                j += 1
            if depth:
                raise SecretError(f"{source}: unterminated $( in value")
            out.append(_run_command(text[i + 2 : j - 1], env, source))
            i = j
        else:
            out.append(text[i])
            i += 1
    return "".join(out)


def parse_dotenv(
    text: str, source: str = "<secrets>", known: Mapping[str, str] | None = None, evaluate: bool = True
) -> dict[str, str]:
    """Parse dotenv text. ``known`` values (earlier files) are visible to substitutions.

    With ``evaluate=False`` values are kept as written: no ``$VAR`` or ``$(command)`` is expanded.
    """
    result: dict[str, str] = {}
    lines = text.splitlines()
    i = 0
    while i < len(lines):
        raw = lines[i]
        lineno = i + 1
        i += 1
        if not raw.strip() or raw.lstrip().startswith("#"):
            continue
        m = _LINE.match(raw)
        if not m:
            raise SecretError(f"{source}:{lineno}: expected NAME=value, got {raw.strip()[:40]!r}")
        name, rest = m.group(1), m.group(2)
        scope = {**(known or {}), **result}
        if rest[:1] in ("'", '"'):
            quote = rest[0]
            body = rest[1:]
            while True:
                end = _closing_quote(body, quote)
                if end >= 0:
                    break
                if i >= len(lines):
                    raise SecretError(f"{source}:{lineno}: unterminated {quote} quote for {name}")
                body += "\n" + lines[i]
                i += 1
            value = body[:end]
            if quote == '"':
                value = value.replace("\\n", "\n").replace('\\"', '"')
                if evaluate:
                    value = _substitute(value, scope, f"{source}:{lineno}", commands=True)
        else:
            value = re.sub(r"\s+#.*$", "", rest).strip()
            if evaluate:
                value = _substitute(value, scope, f"{source}:{lineno}", commands=True)
        result[name] = value
    return result


def _closing_quote(body: str, quote: str) -> int:
    j = 0
    while j < len(body):
        if body[j] == "\\" and quote == '"':
            j += 2
            continue
        if body[j] == quote:
            return j
        j += 1
    return -1


class Secrets(Mapping[str, str]):
    """Lazily loaded secrets for one destination."""

    def __init__(
        self,
        secrets_path: str | Path = ".kamal/secrets",
        destination: str | None = None,
        root: Path | None = None,
        env_fallback: bool = True,
    ) -> None:
        base = Path(secrets_path)
        if root is not None and not base.is_absolute():
            base = root / base
        self.files = [Path(f"{base}-common"), Path(f"{base}.{destination}") if destination else base]
        self.env_fallback = env_fallback
        self._values: dict[str, str] | None = None

    def declares(self, key: str) -> bool:
        """Whether a secrets file (or, as a fallback, the environment) has ``key``, without running
        the files' ``$(commands)``."""
        if self._values is not None and key in self._values:
            return True
        for path in self.files:
            if path.exists() and key in parse_dotenv(path.read_text(), str(path), evaluate=False):
                return True
        return self.env_fallback and key in os.environ

    def describe(self) -> str:
        return " or ".join(display_path(f) for f in self.files)

    def _load(self) -> dict[str, str]:
        if self._values is None:
            values: dict[str, str] = {}
            for path in self.files:
                if path.exists():
                    values.update(parse_dotenv(path.read_text(), str(path), values))
            for v in values.values():
                REDACTOR.add(v)
            self._values = values
        return self._values

    def __getitem__(self, key: str) -> str:
        values = self._load()
        if key in values:
            return values[key]
        if self.env_fallback and key in os.environ:
            warn(
                f"secret {key} is not in {' or '.join(map(str, self.files))}; using the environment "
                f"variable (add `{key}=${key}` to {self.files[-1]})"
            )
            value = os.environ[key]
            REDACTOR.add(value)
            values[key] = value
            return value
        raise SecretError(
            f"secret {key} not found in {' or '.join(map(str, self.files))} "
            f"(add a line `{key}=...` or `{key}=${key}` to {self.files[-1]})"
        )

    def __iter__(self) -> Iterator[str]:
        return iter(self._load())

    def __len__(self) -> int:
        return len(self._load())

    def __contains__(self, key: object) -> bool:
        return key in self._load() or (self.env_fallback and isinstance(key, str) and key in os.environ)
