"""Orchestration, split along Kamal's own seams: ``main`` (setup, deploy, rollback, remove, prune),
``app``, ``proxy``, ``accessory`` and ``lock``, sharing one :class:`Context`.

Every remote action is a command built by :mod:`deployer.commands` and run through the runner.
"""

from __future__ import annotations

import asyncio
import os
from collections.abc import Awaitable, Callable
from pathlib import Path

from deployer.config import Config
from deployer.output import Output
from deployer.workflows.accessory import AccessoryWorkflow
from deployer.workflows.app import AppWorkflow
from deployer.workflows.boot import Barrier
from deployer.workflows.context import Context, Options, RunnerLike
from deployer.workflows.lock import LockWorkflow
from deployer.workflows.main import MainWorkflow
from deployer.workflows.proxy import ProxyWorkflow


class Deployer:
    """One command's workflows over one config and runner."""

    def __init__(
        self,
        *,
        config: Config,
        runner: RunnerLike,
        out: Output,
        options: Options | None = None,
        root: Path | None = None,
        command: str = "",
        subcommand: str | None = None,
        lock_held: bool | None = None,
        sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
    ) -> None:
        self.ctx = Context(
            config=config,
            runner=runner,
            out=out,
            options=options or Options(),
            root=root or Path.cwd(),
            command=command,
            subcommand=subcommand,
            lock_held=os.environ.get("KAMAL_LOCK") == "true" if lock_held is None else lock_held,
            sleep=sleep,
        )
        self.lock = LockWorkflow(self.ctx)
        self.proxy = ProxyWorkflow(self.ctx, self.lock)
        self.accessory = AccessoryWorkflow(self.ctx)
        self.app = AppWorkflow(self.ctx, self.lock)
        self.main = MainWorkflow(
            self.ctx, lock=self.lock, proxy=self.proxy, app=self.app, accessory=self.accessory
        )

    @property
    def config(self) -> Config:
        return self.ctx.config

    @property
    def out(self) -> Output:
        return self.ctx.out


__all__ = ["Barrier", "Context", "Deployer", "Options"]
