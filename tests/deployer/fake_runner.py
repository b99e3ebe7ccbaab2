"""A scripted stand-in for Runner: records every command per host and answers from rules."""

from __future__ import annotations

import re
from collections.abc import Awaitable, Callable, Sequence
from typing import Any

from deployer.errors import CommandFailed
from deployer.runner import Result, Runner
from deployer.utils import redact

Rule = tuple[str, str | None, Any]  # (regex on the command line, host or None, answer)


class FakeRunner:
    def __init__(self) -> None:
        self.log: list[tuple[str, str]] = []
        self.rules: list[Rule] = []
        self.uploads: dict[tuple[str, str], bytes] = {}

    def when(self, pattern: str, answer: Any, host: str | None = None) -> None:
        """answer: stdout string, or (status, stdout, stderr), or a callable(host, line) -> either."""
        self.rules.insert(0, (pattern, host, answer))

    def _answer(self, host: str, line: str) -> tuple[int, str, str]:
        for pattern, h, answer in self.rules:
            if (h is None or h == host) and re.search(pattern, line):
                value = answer(host, line) if callable(answer) else answer
                if isinstance(value, tuple):
                    return value
                return 0, str(value), ""
        return 0, "", ""

    async def run(
        self,
        host: str,
        command: Sequence[str] | str,
        *,
        check: bool = True,
        stdin: bytes | None = None,
        timeout: float | None = None,
        on_line: Any = None,
        quiet: bool = False,
    ) -> Result:
        line = command if isinstance(command, str) else redact(command)
        self.log.append((host, line))
        status, out, err = self._answer(host, line)
        if check and status != 0:
            raise CommandFailed(host, line, status, out, err)
        return Result(host, line, status, out, err, 0.0)

    async def capture(self, host: str, command: Sequence[str] | str, check: bool = True) -> str:
        return (await self.run(host, command, check=check)).stdout.strip()

    async def test(self, host: str, command: Sequence[str] | str) -> bool:
        return (await self.run(host, command, check=False)).ok

    async def upload(self, host: str, content: str | bytes, path: str, mode: str = "600") -> None:
        self.log.append((host, f"upload {path} {mode}"))
        self.uploads[(host, path)] = content.encode() if isinstance(content, str) else content

    async def on(self, hosts: Any, fn: Callable[[str], Awaitable[Any]]) -> dict[str, Any]:
        return await Runner.on(self, hosts, fn)  # type: ignore[arg-type]

    async def close(self) -> None:
        pass

    def lines(self, host: str | None = None) -> list[str]:
        return [line for h, line in self.log if host is None or h == host]

    def index(self, pattern: str, host: str | None = None) -> int:
        for i, line in enumerate(self.lines(host)):
            if re.search(pattern, line):
                return i
        raise AssertionError(f"no command matching {pattern!r} on {host}:\n" + "\n".join(self.lines(host)))

    def has(self, pattern: str, host: str | None = None) -> bool:
        return any(re.search(pattern, line) for line in self.lines(host))
