"""The deploy lock: an atomic ``mkdir`` on the primary host (Kamal's ``Kamal::Commands::Lock``)."""

from __future__ import annotations

import base64
from datetime import UTC, datetime

from deployer.commands.base import Cmd, combine, make_directory, pipe, write
from deployer.config import Config


class Lock:
    def __init__(self, config: Config) -> None:
        self.config = config

    @property
    def lock_dir(self) -> str:
        return self.config.lock_directory

    @property
    def details_file(self) -> str:
        return f"{self.lock_dir}/details"

    @staticmethod
    def details(message: str, version: str, locked_by: str, at: datetime | None = None) -> str:
        when = (at or datetime.now(UTC)).strftime("%Y-%m-%dT%H:%M:%SZ")
        return f"Locked by: {locked_by} at {when}\nVersion: {version}\nMessage: {message}"

    def acquire(
        self, message: str, version: str, locked_by: str = "deployer", at: datetime | None = None
    ) -> Cmd:
        encoded = base64.b64encode(self.details(message, version, locked_by, at).encode()).decode()
        return combine(["mkdir", self.lock_dir], write(["echo", f'"{encoded}"'], [self.details_file]))

    def release(self) -> Cmd:
        return combine(["rm", self.details_file], ["rm", "-r", self.lock_dir])

    def status(self) -> Cmd:
        return combine(
            ["stat", self.lock_dir, ">", "/dev/null"], pipe(["cat", self.details_file], ["base64", "-d"])
        )

    def ensure_run_directory(self) -> Cmd:
        return make_directory(self.config.run_directory)
