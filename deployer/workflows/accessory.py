"""Accessories — databases, caches — on their hosts (Kamal's ``kamal accessory``)."""

from __future__ import annotations

from deployer.commands.accessory import AccessoryCommands
from deployer.commands.base import Cmd
from deployer.commands.registry import RegistryCommands
from deployer.errors import DeployerError
from deployer.workflows.context import Context

SIMPLE_ACTIONS = ("stop", "start", "details", "logs")


class AccessoryWorkflow:
    def __init__(self, ctx: Context) -> None:
        self.ctx = ctx

    def names(self, name: str) -> list[str]:
        """``all`` or one configured accessory name."""
        accessories = self.ctx.config.accessories
        if name == "all":
            return list(accessories)
        if name not in accessories:
            raise DeployerError(f"no accessory named {name!r} (configured: {', '.join(accessories)})")
        return [name]

    def hosts(self, name: str) -> list[str]:
        hosts: list[str] = []
        for n in self.names(name):
            acc = self.ctx.config.accessories[n]
            hosts += [h for h in acc.hosts if self.ctx.host_selected(h) and h not in hosts]
        return hosts

    def _selected(self, acc: AccessoryCommands, only_hosts: list[str] | None = None) -> list[str]:
        return [
            h
            for h in acc.accessory.hosts
            if self.ctx.host_selected(h) and (only_hosts is None or h in only_hosts)
        ]

    async def boot(self, name: str) -> None:
        ctx = self.ctx
        for n in self.names(name):
            acc = AccessoryCommands(ctx.config, n)

            async def one(host: str, acc: AccessoryCommands = acc) -> None:
                with ctx.out.step(f"Booted accessory {acc.service_name}", host):
                    if acc.accessory.registry:
                        await ctx.runner.run(host, RegistryCommands(ctx.config).login(acc.accessory.registry))
                    for cmd in acc.make_directories():
                        await ctx.runner.run(host, cmd)
                    await ctx.runner.run(host, acc.ensure_env_directory())
                    await ctx.runner.upload(
                        host,
                        ctx.config.secret_env_content(acc.accessory.env),
                        ctx.config.accessory_env_file(acc.accessory),
                    )
                    running = await ctx.runner.capture(host, [*acc.info(), "--quiet"], check=False)
                    if not running:
                        await ctx.runner.run(host, acc.run())

            await ctx.runner.on(self._selected(acc), one)

    async def simple(self, name: str, action: str) -> dict[str, str]:
        """stop / start / details / logs: output per ``<service> on <host>``."""
        results: dict[str, str] = {}
        for n in self.names(name):
            acc = AccessoryCommands(self.ctx.config, n)
            cmd = {
                "stop": acc.stop(),
                "start": acc.start(),
                "details": acc.info(),
                "logs": acc.logs(lines=100),
            }[action]
            out = await self.ctx.capture_on(self._selected(acc), cmd, check=action != "stop")
            for host, text in out.items():
                results[f"{acc.service_name} on {host}"] = text
        return results

    async def remove(self, name: str, only_hosts: list[str] | None = None) -> None:
        ctx = self.ctx
        for n in self.names(name):
            acc = AccessoryCommands(ctx.config, n)

            async def one(host: str, acc: AccessoryCommands = acc) -> None:
                await ctx.runner.run(host, acc.stop(), check=False)
                await ctx.runner.run(host, acc.remove_container(), check=False)
                await ctx.runner.run(host, acc.remove_image(), check=False)
                await ctx.runner.run(host, ["rm", "-rf", f"$PWD/{acc.service_name}"], check=False)

            await ctx.runner.on(self._selected(acc, only_hosts), one)

    async def exec(self, name: str, words: list[str], reuse: bool) -> dict[str, str]:
        acc = AccessoryCommands(self.ctx.config, name)
        built: Cmd = (
            acc.execute_in_existing_container(words) if reuse else acc.execute_in_new_container(words)
        )
        return await self.ctx.capture_on(self._selected(acc), built)
