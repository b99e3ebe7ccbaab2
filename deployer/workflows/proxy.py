"""The proxy container on every proxy host (Kamal's ``kamal proxy``)."""

from __future__ import annotations

from deployer.commands.base import create_network, docker
from deployer.commands.proxy import Proxy
from deployer.defaults import PROXY_CONTAINER, PROXY_MINIMUM_VERSION
from deployer.errors import CommandFailed, DeployerError
from deployer.utils import join
from deployer.workflows.context import Context
from deployer.workflows.lock import LockWorkflow


def version_key(version: str) -> tuple[int, tuple[int, ...] | str]:
    parts = version.lstrip("v").split(".")
    if all(p.isdigit() for p in parts):
        return (1, tuple(int(p) for p in parts))
    return (0, version)


class ProxyWorkflow:
    def __init__(self, ctx: Context, lock: LockWorkflow) -> None:
        self.ctx = ctx
        self.lock = lock
        self.commands = Proxy(ctx.config)

    async def boot(self, hosts: list[str]) -> None:
        """Create the network and start (or run) the proxy container where it is not running."""
        if not hosts:
            return
        ctx = self.ctx
        ctx.out.say(f"Ensuring the proxy is running on {len(hosts)} host(s)...")

        async def one(host: str) -> None:
            proxy = Proxy(ctx.config, host)
            with ctx.out.step("Proxy running", host):
                net = await ctx.runner.run(host, create_network(), check=False)
                if not net.ok and "already exists" not in net.stderr:
                    raise CommandFailed(host, join(create_network()), net.status, net.stdout, net.stderr)
                tag = await ctx.runner.capture(host, proxy.version(), check=False)
                if tag and tag.startswith("v") and version_key(tag) < version_key(PROXY_MINIMUM_VERSION):
                    raise DeployerError(
                        f"host {host}: kamal-proxy version {tag} is too old (minimum "
                        f"{PROXY_MINIMUM_VERSION}); run `deployer proxy reboot`"
                    )
                await ctx.runner.run(host, proxy.ensure_apps_config_directory())
                await ctx.runner.run(host, proxy.start_or_run())

        await ctx.runner.on(hosts, one)

    async def boot_locked(self) -> None:
        """``deployer proxy boot``."""
        hosts = self.ctx.proxy_hosts()
        async with self.lock.held("Booting the proxy", hosts):
            await self.boot(hosts)

    async def reboot(self, rolling: bool = False) -> None:
        ctx = self.ctx
        hosts = ctx.proxy_hosts()
        async with self.lock.held("Rebooting the proxy", hosts):
            groups = [[h] for h in hosts] if rolling else [hosts]
            for group in groups:
                ctx.hook("pre-proxy-reboot", ctx.config.version, hosts=group)

                async def one(host: str) -> None:
                    proxy = Proxy(ctx.config, host)
                    with ctx.out.step("Rebooted the proxy", host):
                        await ctx.audit([host], f"Rebooted proxy {ctx.config.proxy_run_for(host).image}")
                        await ctx.runner.run(host, create_network(), check=False)
                        await ctx.runner.run(host, proxy.stop(), check=False)
                        await ctx.runner.run(host, proxy.remove_container(), check=False)
                        await ctx.runner.run(
                            host, docker("container", "rm", "--force", PROXY_CONTAINER), check=False
                        )
                        await ctx.runner.run(host, proxy.ensure_apps_config_directory())
                        await ctx.runner.run(host, proxy.run())

                await ctx.runner.on(group, one)
                ctx.hook("post-proxy-reboot", ctx.config.version, hosts=group)

    async def remove(self, hosts: list[str], force: bool) -> None:
        """Remove the proxy where no other app still uses it (or everywhere with ``force``)."""
        ctx, proxy = self.ctx, self.commands

        async def one(host: str) -> None:
            remaining = await ctx.runner.capture(host, proxy.count_installed_apps(), check=False)
            if not force and remaining.strip() not in ("", "0"):
                ctx.out.info(f"Keeping the proxy: {remaining.strip()} other app(s) still use it", host)
                return
            await ctx.runner.run(host, proxy.stop(), check=False)
            await ctx.runner.run(host, proxy.remove_container(), check=False)
            await ctx.runner.run(host, docker("container", "rm", "--force", PROXY_CONTAINER), check=False)
            await ctx.runner.run(host, proxy.remove_proxy_directory(), check=False)
            ctx.out.info("Removed the proxy", host)

        await ctx.runner.on(hosts, one)

    async def remove_locked(self, force: bool) -> None:
        """``deployer proxy remove``."""
        hosts = self.ctx.proxy_hosts()
        async with self.lock.held("Removing the proxy", hosts):
            await self.remove(hosts, force)

    async def status(self) -> dict[str, tuple[str, str]]:
        """Per proxy host: the container's state and ``kamal-proxy list``."""
        ctx, proxy = self.ctx, self.commands

        async def one(host: str) -> tuple[str, str]:
            state = await ctx.runner.capture(host, proxy.status(), check=False)
            listing = await ctx.runner.capture(host, proxy.list(), check=False)
            return state or "absent", listing

        return await ctx.runner.on(ctx.proxy_hosts(), one)

    async def details(self) -> dict[str, str]:
        return await self.ctx.capture_on(self.ctx.proxy_hosts(), self.commands.info())

    async def logs(self, lines: int | None, since: str | None, grep: str | None) -> dict[str, str]:
        n = lines or (None if since or grep else 100)
        cmd = self.commands.logs(since=since, lines=n, grep=grep)
        return await self.ctx.capture_on(self.ctx.proxy_hosts(), cmd, check=False)
