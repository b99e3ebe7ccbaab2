"""The deploy lock around every workflow that changes hosts (Kamal's ``kamal lock``)."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from deployer.commands.lock import Lock
from deployer.errors import CommandFailed, LockError
from deployer.utils import join
from deployer.workflows.context import Context

NO_LOCK = "There is no deploy lock"


class LockWorkflow:
    def __init__(self, ctx: Context) -> None:
        self.ctx = ctx
        self.commands = Lock(ctx.config)

    @asynccontextmanager
    async def held(
        self, message: str, hosts: list[str] | None = None, *, version: str | None = None
    ) -> AsyncIterator[None]:
        """Hold the lock on the configured primary host (never the first ``--hosts`` entry)."""
        ctx = self.ctx
        if ctx.lock_held:
            yield
            return
        primary = ctx.config.primary_host
        targets = list(dict.fromkeys([primary, *(hosts if hosts is not None else ctx.app_hosts())]))
        ctx.out.say("Acquiring the deploy lock...")
        ensure = self.commands.ensure_run_directory()
        await ctx.runner.on(targets, lambda h: ctx.runner.run(h, ensure, quiet=True))
        acquire = self.commands.acquire(message, version or "-", ctx.performer)
        result = await ctx.runner.run(primary, acquire, check=False)
        if not result.ok:
            if "cannot create directory" in result.stderr or "File exists" in result.stderr:
                details = await ctx.runner.capture(primary, self.commands.status(), check=False)
                raise LockError(
                    f"Deploy lock already in place on {primary}:\n{details}\n"
                    "Wait for it to finish, or run `deployer lock release` if it is stale."
                )
            raise CommandFailed(
                primary,
                join(self.commands.acquire(message, version or "-", "")),
                result.status,
                result.stdout,
                result.stderr,
            )
        ctx.lock_held = True
        try:
            yield
        finally:
            ctx.lock_held = False
            ctx.out.say("Releasing the deploy lock...")
            await ctx.runner.run(primary, self.commands.release(), check=False)

    async def acquire(self, message: str, version: str | None) -> str:
        """Take the lock by hand (``deployer lock acquire``); returns the primary host."""
        ctx = self.ctx
        primary = ctx.config.primary_host
        await ctx.runner.run(primary, self.commands.ensure_run_directory())
        result = await ctx.runner.run(
            primary, self.commands.acquire(message, version or "-", ctx.performer), check=False
        )
        if not result.ok:
            details = await ctx.runner.capture(primary, self.commands.status(), check=False)
            raise LockError(f"Deploy lock already in place on {primary}:\n{details}")
        return primary

    async def release(self) -> str:
        primary = self.ctx.config.primary_host
        await self.ctx.runner.run(primary, self.commands.release(), check=False)
        return primary

    async def status(self) -> str:
        result = await self.ctx.runner.run(self.ctx.config.primary_host, self.commands.status(), check=False)
        return str(result.stdout).strip() if result.ok else NO_LOCK
