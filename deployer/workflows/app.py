"""The app's containers on its hosts (Kamal's ``kamal app``): boot, maintenance, stop/start, status,
logs and exec. Every loop over hosts and roles lives here; the CLI only prints what comes back."""

from __future__ import annotations

import re
from collections.abc import Mapping

from deployer.commands.app import ACTIVE_STATUSES, App
from deployer.commands.base import Cmd
from deployer.commands.proxy import Proxy
from deployer.config import Config, Role
from deployer.errors import DeployerError
from deployer.runner import interactive_ssh_command
from deployer.workflows.boot import Boot
from deployer.workflows.context import Context
from deployer.workflows.lock import LockWorkflow

StatusRow = dict[str, str]


class AppWorkflow:
    def __init__(self, ctx: Context, lock: LockWorkflow) -> None:
        self.ctx = ctx
        self.lock = lock

    @property
    def config(self) -> Config:
        return self.ctx.config

    # -- versions ------------------------------------------------------------------------------------
    async def current_version(self, host: str, role: Role | None = None) -> str:
        app = App(self.config, role or self.config.primary_role, host)
        return await self.ctx.runner.capture(host, app.current_running_version(), check=False)

    async def previous_version(self, host: str) -> str:
        """The newest retained version on ``host`` that is not the current one (kamal#1658)."""
        current = await self.current_version(host)
        app = App(self.config, self.config.primary_role, host)
        names = (await self.ctx.runner.capture(host, app.list_container_names(), check=False)).split()
        prefix = f"{self.config.primary_role.container_prefix}-"
        for n in names:  # docker lists newest first
            v = n[len(prefix) :] if n.startswith(prefix) else None
            if v and v != current and "_replaced_" not in v:
                return v
        raise DeployerError(f"no previous version to roll back to on {host} (current: {current or 'none'})")

    # -- boot ----------------------------------------------------------------------------------------
    async def boot(self, version: str, hosts: list[str] | None = None) -> None:
        hosts = hosts if hosts is not None else self.ctx.app_hosts()
        await Boot(self.ctx, self.config.for_version(version)).run(hosts)

    async def restart(self) -> None:
        """Boot the given ``--version`` (default: the running one) again, with zero downtime."""
        version = self.ctx.options.version or await self.current_version(self.config.primary_host)
        if not version:
            raise DeployerError("no running version to restart (deploy first)")
        async with self.lock.held(f"Restarting {version}", version=version):
            await self.boot(version)

    async def stale_containers(self, hosts: list[str]) -> None:
        """Stop containers of other versions still running next to the current one (Kamal#1003)."""
        ctx = self.ctx

        async def one(host: str) -> None:
            for role in ctx.roles_on(host):
                app = App(self.config, role, host)
                listed = await ctx.runner.capture(
                    host, app.list_versions(statuses=ACTIVE_STATUSES), check=False
                )
                current = await ctx.runner.capture(host, app.current_running_version(), check=False)
                for version in listed.split():
                    if version != current:
                        ctx.out.info(f"Stopping stale container {role.container_name(version)}", host)
                        await ctx.runner.run(host, app.stop(version=version), check=False)

        await ctx.runner.on(hosts, one)

    # -- maintenance ---------------------------------------------------------------------------------
    async def maintenance(self, drain_timeout: int | None, message: str | None) -> None:
        ctx = self.ctx
        async with self.lock.held("Maintenance mode"):

            async def one(host: str) -> None:
                for role in ctx.roles_on(host):
                    if role.proxy:
                        app = App(self.config, role, host)
                        timeout = drain_timeout or self.config.drain_timeout
                        await ctx.runner.run(host, app.maintenance(timeout, message))
                        ctx.out.info(f"{role.container_prefix} is in maintenance mode", host)

            await ctx.audit(ctx.proxy_hosts(), "Set maintenance mode")
            await ctx.runner.on(ctx.proxy_hosts(), one)

    async def live(self) -> None:
        ctx = self.ctx
        async with self.lock.held("Leaving maintenance mode"):

            async def one(host: str) -> None:
                for role in ctx.roles_on(host):
                    if role.proxy:
                        await ctx.runner.run(host, App(self.config, role, host).live())
                        ctx.out.info(f"{role.container_prefix} is live", host)

            await ctx.audit(ctx.proxy_hosts(), "Set live")
            await ctx.runner.on(ctx.proxy_hosts(), one)

    # -- stop / start / remove -----------------------------------------------------------------------
    async def stop(self) -> None:
        ctx = self.ctx
        async with self.lock.held("Stopping the app"):

            async def one(host: str) -> None:
                for role in ctx.roles_on(host):
                    app = App(self.config, role, host)
                    if role.proxy and await ctx.runner.capture(
                        host, app.current_running_container_id(), check=False
                    ):
                        await ctx.runner.run(host, app.remove(), check=False)
                    await ctx.runner.run(host, app.stop(), check=False)
                    ctx.out.info(f"Stopped {role.container_prefix}", host)

            await ctx.audit(ctx.app_hosts(), "Stopped app")
            await ctx.runner.on(ctx.app_hosts(), one)

    async def start(self) -> None:
        ctx = self.ctx
        async with self.lock.held("Starting the app"):

            async def one(host: str) -> None:
                for role in ctx.roles_on(host):
                    latest = App(self.config, role, host).list_versions("--latest")
                    version = (
                        ctx.options.version or (await ctx.runner.capture(host, latest, check=False)).strip()
                    )
                    if not version:
                        raise DeployerError(f"host {host}: no {role.container_prefix} container to start")
                    app = App(self.config.for_version(version), role, host)
                    await ctx.runner.run(host, app.start())
                    if role.proxy:
                        cid = await ctx.runner.capture(host, app.container_id_for_version(version))
                        await ctx.runner.run(host, app.deploy(target=cid))
                    ctx.out.info(f"Started {role.container_name(version)}", host)

            await ctx.runner.on(ctx.app_hosts(), one)

    async def remove(self, hosts: list[str]) -> None:
        """Containers, images and the app's directories on ``hosts`` (no lock: the caller holds it)."""
        ctx, config = self.ctx, self.config

        async def one(host: str) -> None:
            for role in ctx.roles_on(host):
                app = App(config, role, host)
                if role.proxy:
                    await ctx.runner.run(host, app.remove(), check=False)
                await ctx.runner.run(host, app.stop(), check=False)
                await ctx.runner.run(host, app.remove_containers(), check=False)
            await ctx.runner.run(host, App(config, config.primary_role).remove_images(), check=False)
            await ctx.runner.run(host, ["rm", "-rf", config.apps_directory], check=False)
            await ctx.runner.run(host, ["rm", "-rf", config.proxy_apps_config_directory], check=False)

        await ctx.runner.on(hosts, one)

    # -- reading -------------------------------------------------------------------------------------
    async def status(self) -> dict[str, list[StatusRow]]:
        """Per host and role: containers with version/state, current version, and the proxy's view."""
        ctx = self.ctx
        proxy = Proxy(self.config)

        async def one(host: str) -> list[StatusRow]:
            listing = await ctx.runner.capture(host, proxy.list(), check=False)
            rows: list[StatusRow] = []
            for role in ctx.roles_on(host):
                app = App(self.config, role, host)
                current = await ctx.runner.capture(host, app.current_running_version(), check=False)
                details = await ctx.runner.capture(host, app.list_container_details(), check=False)
                proxy_view = proxy_line(listing, role.container_prefix) if role.proxy else "not proxied"
                rows += status_rows(role, details, current, proxy_view)
            return rows

        return await ctx.runner.on(ctx.app_hosts(), one)

    async def per_role(
        self,
        what: str,
        *,
        lines: int | None = None,
        since: str | None = None,
        grep: str | None = None,
    ) -> dict[str, list[str]]:
        """``details`` / ``containers`` / ``version`` / ``logs`` output per host, one text per role."""
        ctx = self.ctx
        check = what in ("details", "containers")

        def command(app: App) -> Cmd:
            if what == "details":
                return app.info()
            if what == "containers":
                return app.list_containers()
            if what == "version":
                return app.current_running_version()
            return app.logs(since=since, lines=lines, grep=grep)

        async def one(host: str) -> list[str]:
            return [
                await ctx.runner.capture(host, command(App(self.config, role, host)), check=check)
                for role in ctx.roles_on(host)
            ]

        return await ctx.runner.on(ctx.app_hosts(), one)

    async def exec(self, words: list[str], env: Mapping[str, str], reuse: bool) -> dict[str, str]:
        """Run ``words`` in a new (or with ``reuse`` the running) container of every role on every host."""
        ctx = self.ctx

        async def one(host: str) -> str:
            outputs = []
            for role in ctx.roles_on(host):
                version = ctx.options.version or await self.current_version(host, role)
                app = App(self.config.for_version(version or self.config.latest_tag), role, host)
                built = (
                    app.execute_in_existing_container(words, env)
                    if reuse
                    else app.execute_in_new_container(words, env)
                )
                outputs.append((await ctx.runner.run(host, built, check=False)).stdout)
            return "".join(outputs).rstrip()

        return await ctx.runner.on(ctx.app_hosts(), one)

    async def interactive_exec_argv(self, words: list[str], env: Mapping[str, str], reuse: bool) -> list[str]:
        """The ``ssh -t`` command line for ``app exec -i`` on the primary (or first ``--hosts``) host."""
        host = (self.ctx.options.hosts or [self.config.primary_host])[0]
        version = self.ctx.options.version or await self.current_version(host) or self.config.latest_tag
        app = App(self.config.for_version(version), self.config.primary_role, host)
        built = (
            app.execute_in_existing_container(words, env, interactive=True)
            if reuse
            else app.execute_in_new_container(words, env, interactive=True)
        )
        return interactive_ssh_command(self.config.ssh, host, " ".join(built))

    async def follow_logs_argv(self, lines: int | None, grep: str | None) -> list[str]:
        """The ``ssh -t`` command line for ``app logs -f`` on the primary (or first ``--hosts``) host."""
        host = self.ctx.options.hosts[0] if self.ctx.options.hosts else self.config.primary_host
        cmd = App(self.config, self.config.primary_role, host).follow_logs_command(
            lines=lines or 10, grep=grep
        )
        return interactive_ssh_command(self.config.ssh, host, " ".join(cmd))


def status_rows(role: Role, details: str, current: str, proxy_view: str) -> list[StatusRow]:
    rows: list[StatusRow] = []
    for line in details.splitlines():
        parts = line.split("\t")
        if len(parts) < 4:
            continue
        cid, name, state, status = parts[:4]
        version = name.removeprefix(f"{role.container_prefix}-")
        is_current = version == current
        rows.append(
            {
                "role": role.name,
                "container": name,
                "id": cid,
                "version": version,
                "state": state,
                "status": status,
                "current": "yes" if is_current else "",
                "proxy": proxy_view if is_current else "",
            }
        )
    if not details.strip():
        rows.append(
            {
                "role": role.name,
                "container": "-",
                "id": "",
                "version": "-",
                "state": "absent",
                "status": "",
                "current": "",
                "proxy": proxy_view,
            }
        )
    return rows


def proxy_line(listing: str, service: str) -> str:
    """Summarise the proxy's ``list`` row for ``service``: ``running → 1a2b3c:80``."""
    clean = re.sub(r"\x1b\[[0-9;]*m", "", listing)
    for line in clean.splitlines():
        cols = line.split()
        if cols and cols[0] == service and len(cols) >= 5:
            # Service Host Path Target State TLS
            return f"{cols[4]} → {cols[3]}"
    return "not registered" if clean.strip() else "proxy unreachable"
