"""Audit log lines appended on every host (Kamal's ``Kamal::Commands::Auditor``)."""

from __future__ import annotations

from datetime import UTC, datetime

from deployer.commands.base import Cmd, append, combine, make_directory
from deployer.config import Config
from deployer.utils import escape_shell_value


class Auditor:
    def __init__(self, config: Config, performer: str, **details: str | None) -> None:
        self.config = config
        self.performer = performer
        self.details = details

    def tags(self, at: datetime | None = None, **details: str | None) -> str:
        recorded_at = (at or datetime.now(UTC)).strftime("%Y-%m-%dT%H:%M:%SZ")
        values = [recorded_at, self.performer, self.config.destination, *{**self.details, **details}.values()]
        return " ".join(f"[{v}]" for v in values if v)

    def record(self, line: str, at: datetime | None = None, **details: str | None) -> Cmd:
        text = f"{self.tags(at, **details)} {line}"
        return combine(
            make_directory(self.config.run_directory),
            append(["echo", escape_shell_value(text)], [self.config.audit_log_file]),
        )

    def reveal(self) -> Cmd:
        return ["tail", "-n", "50", self.config.audit_log_file]
