"""Booting one release of the app on its hosts, group by group (Kamal's ``Kamal::Cli::App::Boot``).

Per host and role: rename a container already holding the version, start the new one, register it
with the proxy (which health-checks it) or wait for readiness, then stop the old one. The first
healthy primary-role container opens a barrier the other roles wait on.
"""

from __future__ import annotations

import asyncio
import secrets as _random
import time

from deployer.commands.app import App
from deployer.commands.auditor import Auditor
from deployer.commands.base import docker
from deployer.config import Config, Role
from deployer.errors import BootError, CommandFailed
from deployer.workflows.context import Context


class Barrier:
    """Opened by the first healthy primary-role container; non-primary roles wait for it."""

    def __init__(self) -> None:
        self._event = asyncio.Event()
        self._closed = False

    def open(self) -> None:
        self._event.set()

    def close(self) -> None:
        self._closed = True
        self._event.set()

    async def wait(self) -> None:
        await self._event.wait()
        if self._closed:
            raise BootError("Halted at barrier: the first primary-role container failed to boot")


class Boot:
    def __init__(self, ctx: Context, release: Config) -> None:
        self.ctx = ctx
        self.release = release  # the config with the version being booted
        self.version = release.require_version()

    async def upload_support_files(self, hosts: list[str]) -> None:
        """Custom TLS PEMs and error pages, on all app hosts before booting (deploy step 9.1)."""
        ctx, config = self.ctx, self.release
        pages_dir = ctx.root / config.error_pages_path if config.error_pages_path else None

        async def one(host: str) -> None:
            for role in ctx.roles_on(host):
                if role.proxy and role.proxy.custom_ssl_certificate:
                    ssl = role.proxy.raw["ssl"]
                    base = f"{config.proxy_apps_config_directory}/tls/{role.name}"
                    await ctx.runner.upload(host, config.secrets[ssl["certificate_pem"]], f"{base}/cert.pem")
                    await ctx.runner.upload(host, config.secrets[ssl["private_key_pem"]], f"{base}/key.pem")
            if pages_dir and any(r.proxy for r in ctx.roles_on(host)):
                target = f"{config.proxy_apps_config_directory}/error_pages/{self.version}"
                for page in sorted(pages_dir.glob("*.html")):
                    await ctx.runner.upload(host, page.read_bytes(), f"{target}/{page.name}", mode="644")

        await ctx.runner.on(hosts, one)

    async def role_on_host(self, role: Role, host: str, barrier: Barrier | None) -> None:
        ctx, version = self.ctx, self.version
        app = App(self.release, role, host)
        name = role.container_name(version)
        if barrier and not role.primary:
            await barrier.wait()
        existing = await ctx.runner.capture(host, app.container_id_for_version(version), check=False)
        if existing:
            await ctx.runner.run(
                host, app.rename_container(version, f"{version}_replaced_{_random.token_hex(8)}")
            )
        old = await ctx.runner.capture(host, app.current_running_version(), check=False)
        await ctx.runner.run(
            host,
            Auditor(self.release, ctx.performer).record(f"Booted app version {version}", role=role.name),
            quiet=True,
        )
        await ctx.runner.run(host, app.ensure_env_directory())
        await ctx.runner.upload(
            host, self.release.secret_env_content(role.env_for_host(host)), app.env_file_path()
        )
        start = time.monotonic()
        await ctx.runner.run(host, app.run(hostname=f"{host[:51]}-{_random.token_hex(6)}"))
        try:
            await self._become_healthy(app, role, host)
        except Exception as e:
            if barrier and role.primary:
                barrier.close()
            raise await self._boot_failed(app, host, old, e) from e
        if barrier and role.primary:
            barrier.open()
        ctx.out.info(f"Booted {name} ({time.monotonic() - start:.1f}s)", host)
        if old and old != version:
            await ctx.runner.run(host, app.stop(version=old), check=False)

    async def _become_healthy(self, app: App, role: Role, host: str) -> None:
        if not role.proxy:
            await self.wait_for_ready(app, host)
            return
        ctx, name = self.ctx, role.container_name(self.version)
        cid = await ctx.runner.capture(host, app.container_id_for_version(self.version))
        if not cid:
            raise BootError(f"Failed to get endpoint for {name} on {host}, did the container boot?")
        with ctx.out.waiting(
            f"Waiting for {name} to pass the health check (GET {role.proxy.healthcheck_path} on port "
            f"{role.proxy.app_port}, up to {self.release.deploy_timeout}s)",
            host,
        ):
            await ctx.runner.run(host, app.deploy(target=cid))

    async def _boot_failed(self, app: App, host: str, old: str, error: Exception) -> BootError:
        ctx, name = self.ctx, app.container_name(self.version)
        logs = await ctx.runner.capture(host, docker("logs", "--tail", "30", name, "2>&1"), check=False)
        await ctx.runner.run(host, app.stop(version=self.version), check=False)
        if isinstance(error, CommandFailed) and error.stderr.strip():
            detail = error.stderr.strip()
        else:
            detail = str(error)
        keeps = ("the old version " + old) if old else "nothing else"
        return BootError(
            f"host {host}: {name} failed to become healthy: {detail}\n"
            f"  the new container was stopped; {keeps} keeps serving\n  last container logs:\n    "
            + "\n    ".join(logs.splitlines()[-30:])
        )

    async def wait_for_ready(self, app: App, host: str) -> None:
        """A role without the proxy: healthy, or still running after ``readiness_delay``."""
        ctx, config, version = self.ctx, self.release, self.version
        deadline = time.monotonic() + config.deploy_timeout
        delay = 1
        while True:
            status = await ctx.runner.capture(host, app.status(version), check=False)
            if status == "healthy":
                return
            if status == "running":
                await ctx.sleep(min(config.readiness_delay, max(deadline - time.monotonic(), 0)))
                if await ctx.runner.capture(host, app.status(version), check=False) in ("running", "healthy"):
                    return
                raise BootError(f"container {app.container_name(version)} stopped after starting")
            if status in ("unhealthy", "exited", "dead"):
                raise BootError(f"container {app.container_name(version)} is {status}")
            if time.monotonic() >= deadline:
                raise BootError(
                    f"container {app.container_name(version)} not ready after "
                    f"{config.deploy_timeout}s (status {status or 'unknown'})"
                )
            await ctx.sleep(delay)
            delay += 1

    async def run(self, hosts: list[str]) -> None:
        """Boot the release on ``hosts`` in boot groups, then tag it as the latest image."""
        ctx, config, version = self.ctx, self.release, self.version
        await self.upload_support_files(hosts)
        barrier = Barrier() if any(r.primary for h in hosts for r in ctx.roles_on(h)) else None
        groups = config.boot_groups(hosts)
        ctx.out.say(
            f"Booting {config.service} {version} on {len(hosts)} host(s) in {len(groups)} group(s)..."
        )
        for index, group in enumerate(groups):
            ctx.hook("pre-app-boot", version, hosts=group)
            await ctx.runner.on(group, lambda host: self._host(host, barrier))
            ctx.hook("post-app-boot", version, hosts=group)
            if config.boot.wait and index < len(groups) - 1:
                ctx.out.info(f"Waiting {config.boot.wait}s before the next group")
                await ctx.sleep(config.boot.wait)
        await ctx.audit(hosts, f"Tagging {config.absolute_image} as the latest image")
        tag = App(config, config.primary_role).tag_latest_image()
        await ctx.runner.on(hosts, lambda h: ctx.runner.run(h, tag))

    async def _host(self, host: str, barrier: Barrier | None) -> None:
        roles = self.ctx.roles_on(host)
        if self.release.boot.parallel_roles:
            await asyncio.gather(*(self.role_on_host(r, host, barrier) for r in roles))
        else:
            for role in roles:
                await self.role_on_host(role, host, barrier)
