"""The top-level workflows (Kamal's ``Kamal::Cli::Main``, ``Build`` and ``Prune``): setup, deploy,
redeploy, rollback, remove, prune and audit, in the order of deployer.md §2."""

from __future__ import annotations

import shutil
import tempfile
import time

from deployer.commands import docker as docker_cmds
from deployer.commands.app import App
from deployer.commands.auditor import Auditor
from deployer.commands.builder import Builder
from deployer.commands.prune import Prune
from deployer.commands.registry import RegistryCommands
from deployer.config import Config
from deployer.errors import DeployerError
from deployer.versions import resolve_version
from deployer.workflows.accessory import AccessoryWorkflow
from deployer.workflows.app import AppWorkflow
from deployer.workflows.context import Context
from deployer.workflows.lock import LockWorkflow
from deployer.workflows.proxy import ProxyWorkflow


class MainWorkflow:
    def __init__(
        self,
        ctx: Context,
        *,
        lock: LockWorkflow,
        proxy: ProxyWorkflow,
        app: AppWorkflow,
        accessory: AccessoryWorkflow,
    ) -> None:
        self.ctx = ctx
        self.lock = lock
        self.proxy = proxy
        self.app = app
        self.accessory = accessory

    def resolve_version(self) -> str:
        ctx = self.ctx
        return resolve_version(
            ctx.options.version, ctx.root, uncommitted_suffix=ctx.config.builder.context == "."
        )

    # -- build / pull --------------------------------------------------------------------------------
    def build_and_push(self, release: Config) -> None:
        ctx = self.ctx
        builder = Builder(release)
        ctx.out.say("Building and pushing the image...")
        ctx.local(builder.ensure_local_dependencies_installed())
        if not release.registry.local:
            ctx.local(RegistryCommands(release).login())
        ctx.hook("pre-build", release.version)
        if not release.builder.docker_driver and not ctx.local(builder.inspect_builder(), check=False):
            ctx.local(builder.create())
        context = release.builder.context
        tmp: str | None = None
        try:
            if context is None:
                tmp = tempfile.mkdtemp(prefix="deployer-build-")
                ctx.local(["git", "clone", "--quiet", "--depth", "1", f"file://{ctx.root}", tmp])
                context = tmp
            with ctx.out.step(f"Built and pushed {release.absolute_image}"):
                ctx.local(builder.push(context))
        finally:
            if tmp:
                shutil.rmtree(tmp, ignore_errors=True)

    async def pull(self, release: Config, hosts: list[str]) -> None:
        ctx = self.ctx
        builder = Builder(release)
        ctx.out.say(f"Pulling {release.absolute_image} on {len(hosts)} host(s)...")

        async def one(host: str) -> None:
            with ctx.out.step(f"Pulled {release.absolute_image}", host):
                if not release.registry.local:
                    await ctx.runner.run(host, RegistryCommands(release).login())
                await ctx.runner.run(host, builder.clean(), check=False)
                await ctx.runner.run(host, builder.pull())
                await ctx.runner.run(host, builder.validate_image())

        await ctx.runner.on(hosts, one)

    # -- prune ---------------------------------------------------------------------------------------
    async def prune(
        self, hosts: list[str], containers: bool = True, images: bool = True, retain: int | None = None
    ) -> None:
        ctx = self.ctx
        prune = Prune(ctx.config)
        keep = retain or ctx.config.retain_containers

        async def one(host: str) -> None:
            if containers:
                await ctx.runner.run(host, prune.app_containers(keep), check=False)
            if images:
                await ctx.runner.run(host, prune.dangling_images(), check=False)
                await ctx.runner.run(host, prune.tagged_images(), check=False)

        ctx.out.say(f"Pruning old containers and images (keeping {keep})...")
        await ctx.runner.on(hosts, one)

    async def prune_locked(self, what: str, retain: int | None) -> None:
        """``deployer prune all|images|containers``."""
        async with self.lock.held("Pruning"):
            await self.prune(
                self.ctx.app_hosts(),
                containers=what in ("all", "containers"),
                images=what in ("all", "images"),
                retain=retain,
            )

    # -- deploy --------------------------------------------------------------------------------------
    async def deploy(
        self, skip_push: bool = False, boot_accessories: bool = False, redeploy: bool = False
    ) -> None:
        ctx = self.ctx
        started = time.monotonic()
        hosts = ctx.app_hosts()
        version = self.resolve_version()
        release = ctx.config.for_version(version)
        ctx.config.check_secrets()  # before anything connects
        ctx.hook("pre-connect", version)
        if not skip_push:
            self.build_and_push(release)
        await self.pull(release, hosts)
        async with self.lock.held(f"Automatic deploy lock ({version})", hosts, version=version):
            ctx.hook("pre-deploy", version)
            if not redeploy:
                await self.proxy.boot(ctx.proxy_hosts())
            if boot_accessories:
                await self.accessory.boot("all")
            await self.app.stale_containers(hosts)
            await self.app.boot(version, hosts)
            if not redeploy:
                await self.prune(hosts)
        runtime = time.monotonic() - started
        ctx.hook("post-deploy", version, KAMAL_RUNTIME=str(round(runtime)))
        ctx.out.summary(
            f"Deployed {ctx.config.service} {version} to {len(hosts)} host(s) "
            f"({', '.join(hosts)}) in {runtime:.1f} seconds"
        )

    async def setup(self, skip_push: bool = False) -> None:
        ctx = self.ctx
        hosts = list(dict.fromkeys(ctx.app_hosts() + self.accessory.hosts("all")))
        ctx.config.check_secrets()
        ctx.out.say(f"Ensuring Docker is installed on {len(hosts)} host(s)...")

        async def bootstrap(host: str) -> None:
            if await ctx.runner.test(host, docker_cmds.installed()):
                return
            if not await ctx.runner.test(host, docker_cmds.superuser()):
                raise DeployerError(
                    f"host {host}: Docker is not installed and we are neither root nor sudoer"
                )
            ctx.out.info("Installing Docker...", host)
            await ctx.runner.run(host, docker_cmds.install())

        await ctx.runner.on(hosts, bootstrap)
        ctx.hook("docker-setup", ctx.config.version, hosts=hosts)
        await self.deploy(skip_push=skip_push, boot_accessories=True)

    async def rollback(self, version: str | None) -> None:
        ctx = self.ctx
        hosts = ctx.app_hosts()
        if version is None:
            version = await self.app.previous_version(ctx.config.primary_host)
        await self._ensure_available(version, hosts)
        started = time.monotonic()
        async with self.lock.held(f"Rollback to {version}", hosts, version=version):
            ctx.hook("pre-deploy", version)
            await self.app.boot(version, hosts)
        runtime = time.monotonic() - started
        ctx.hook("post-deploy", version, KAMAL_RUNTIME=str(round(runtime)))
        ctx.out.summary(
            f"Rolled back {ctx.config.service} to {version} on {len(hosts)} host(s) in {runtime:.1f} seconds"
        )

    async def _ensure_available(self, version: str, hosts: list[str]) -> None:
        ctx = self.ctx
        missing: list[str] = []

        async def check(host: str) -> None:
            for role in ctx.roles_on(host):
                cmd = App(ctx.config, role, host).container_id_for_version(version)
                if not await ctx.runner.capture(host, cmd, check=False):
                    missing.append(f"{role.name} on {host}")

        await ctx.runner.on(hosts, check)
        if missing:
            raise DeployerError(
                f"version {version} is not available as a container on: {', '.join(missing)} "
                "(see `deployer app status`)"
            )

    async def remove(self) -> None:
        ctx = self.ctx
        hosts = ctx.app_hosts()
        async with self.lock.held("Removing the app", hosts):
            ctx.out.say(f"Removing {ctx.config.service} from {len(hosts)} host(s)...")
            await ctx.audit(hosts, "Removed app")
            await self.app.remove(hosts)
            await self.proxy.remove(ctx.proxy_hosts(), force=False)
            await self.accessory.remove("all", only_hosts=hosts)
            if not ctx.config.registry.local:
                logout = RegistryCommands(ctx.config).logout()
                await ctx.runner.on(hosts, lambda h: ctx.runner.run(h, logout, check=False))
        ctx.out.summary(f"Removed {ctx.config.service} from {', '.join(hosts)}")

    async def audit(self) -> dict[str, str]:
        cmd = Auditor(self.ctx.config, self.ctx.performer).reveal()
        return await self.ctx.capture_on(self.ctx.app_hosts(), cmd, check=False)
