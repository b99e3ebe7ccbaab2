"""Orchestration: the deploy sequence of deployer.md §2 and the other workflows, over a Runner.

This layer owns locking, hooks, boot groups, the primary-role barrier, failure handling and output.
Every remote action is a command built by :mod:`deployer.commands` and run through the runner.
"""

from __future__ import annotations

import asyncio
import fnmatch
import os
import secrets as _random
import shutil
import subprocess
import tempfile
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

from deployer.commands import docker as docker_cmds
from deployer.commands.accessory import AccessoryCommands
from deployer.commands.app import ACTIVE_STATUSES, App
from deployer.commands.auditor import Auditor
from deployer.commands.base import Cmd, create_network, docker, make_directory
from deployer.commands.builder import Builder
from deployer.commands.lock import Lock
from deployer.commands.proxy import Proxy
from deployer.commands.prune import Prune
from deployer.commands.registry import RegistryCommands
from deployer.config import PROXY_CONTAINER, PROXY_MINIMUM_VERSION, Config, Role
from deployer.errors import BootError, CommandFailed, DeployerError, HookError, LockError
from deployer.hooks import hook_env, run_hook
from deployer.output import Output
from deployer.utils import join


class RunnerLike(Protocol):
    async def run(
        self,
        host: str,
        command: Cmd | str,
        *,
        check: bool = True,
        stdin: bytes | None = None,
        timeout: float | None = None,
        on_line: Any = None,
        quiet: bool = False,
    ) -> Any: ...

    async def capture(self, host: str, command: Cmd | str, check: bool = True) -> str: ...

    async def test(self, host: str, command: Cmd | str) -> bool: ...

    async def upload(self, host: str, content: str | bytes, path: str, mode: str = "600") -> None: ...

    async def on(self, hosts: list[str], fn: Callable[[str], Awaitable[Any]]) -> dict[str, Any]: ...

    async def close(self) -> None: ...


@dataclass
class Options:
    hosts: list[str] | None = None  # shell-style patterns
    roles: list[str] | None = None
    primary: bool = False
    skip_hooks: bool = False
    version: str | None = None


def _version_key(version: str) -> tuple[int, tuple[int, ...] | str]:
    parts = version.lstrip("v").split(".")
    if all(p.isdigit() for p in parts):
        return (1, tuple(int(p) for p in parts))
    return (0, version)


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


@dataclass
class Deployer:
    config: Config
    runner: RunnerLike
    out: Output
    options: Options = field(default_factory=Options)
    root: Path = field(default_factory=Path.cwd)
    command: str = ""
    subcommand: str | None = None
    lock_held: bool = field(default_factory=lambda: os.environ.get("KAMAL_LOCK") == "true")
    sleep: Callable[[float], Awaitable[None]] = asyncio.sleep

    # -- targeting -----------------------------------------------------------------------------------
    def _host_selected(self, host: str) -> bool:
        if not self.options.hosts:
            return True
        return any(fnmatch.fnmatchcase(host, pattern) for pattern in self.options.hosts)

    def target_roles(self) -> list[Role]:
        roles = self.config.roles
        if self.options.roles:
            patterns = self.options.roles
            roles = [r for r in roles if any(fnmatch.fnmatchcase(r.name, p) for p in patterns)]
            if not roles:
                raise DeployerError(f"--roles {','.join(patterns)} matches no role")
        return roles

    def role_hosts(self, role: Role) -> list[str]:
        hosts = [h for h in role.hosts if self._host_selected(h)]
        if self.options.primary:
            hosts = [h for h in hosts if h == self.config.primary_host]
        return hosts

    def app_hosts(self) -> list[str]:
        hosts: list[str] = []
        for role in self.target_roles():
            hosts += [h for h in self.role_hosts(role) if h not in hosts]
        if self.options.hosts and not hosts:
            raise DeployerError(f"--hosts {','.join(self.options.hosts)} matches no configured host")
        return hosts

    def proxy_hosts(self) -> list[str]:
        hosts: list[str] = []
        for role in self.target_roles():
            if role.running_proxy:
                hosts += [h for h in self.role_hosts(role) if h not in hosts]
        return hosts

    def roles_on(self, host: str) -> list[Role]:
        return [r for r in self.target_roles() if host in self.role_hosts(r)]

    # -- helpers -------------------------------------------------------------------------------------
    @property
    def performer(self) -> str:
        for argv in (["git", "config", "user.email"], ["whoami"]):
            try:
                value = subprocess.run(
                    argv, capture_output=True, text=True, cwd=self.root, check=False
                ).stdout
            except OSError:
                continue
            if value.strip():
                return value.strip()
        return "deployer"

    def hook(self, name: str, hosts: list[str] | None = None, **extra: str) -> None:
        env = hook_env(
            self.config,
            self.performer,
            self.command,
            self.subcommand,
            hosts if hosts is not None else self.app_hosts(),
            self.options.roles,
            lock=self.lock_held,
            extra=extra,
        )
        run_hook(self.config, name, env, self.out, self.root, skip=self.options.skip_hooks)

    async def audit(self, hosts: list[str], message: str, role: str | None = None) -> None:
        auditor = Auditor(self.config, self.performer)
        cmd = auditor.record(message, role=role)
        await self.runner.on(hosts, lambda h: self.runner.run(h, cmd, quiet=True))

    def resolve_version(self) -> str:
        if self.options.version:
            return self.options.version
        if os.environ.get("VERSION"):
            return os.environ["VERSION"]
        proc = subprocess.run(
            ["git", "rev-parse", "HEAD"], cwd=self.root, capture_output=True, text=True, check=False
        )
        if proc.returncode != 0:
            raise DeployerError("cannot determine the version: not a git checkout (pass --version V)")
        version = proc.stdout.strip()
        if self.config.builder.context == ".":
            dirty = subprocess.run(
                ["git", "status", "--porcelain"], cwd=self.root, capture_output=True, text=True, check=False
            ).stdout.strip()
            if dirty:
                version += f"_uncommitted_{_random.token_hex(8)}"
        return version

    # -- lock ----------------------------------------------------------------------------------------
    @asynccontextmanager
    async def lock(self, message: str, hosts: list[str] | None = None) -> AsyncIterator[None]:
        if self.lock_held:
            yield
            return
        lock = Lock(self.config)
        primary = self.config.primary_host  # the configured primary, never the first --hosts entry
        targets = list(dict.fromkeys([primary, *(hosts if hosts is not None else self.app_hosts())]))
        self.out.say("Acquiring the deploy lock...")
        await self.runner.on(targets, lambda h: self.runner.run(h, lock.ensure_run_directory(), quiet=True))
        version = self.config.version or "-"
        result = await self.runner.run(primary, lock.acquire(message, version, self.performer), check=False)
        if not result.ok:
            if "cannot create directory" in result.stderr or "File exists" in result.stderr:
                details = await self.runner.capture(primary, lock.status(), check=False)
                raise LockError(
                    f"Deploy lock already in place on {primary}:\n{details}\n"
                    "Wait for it to finish, or run `deployer lock release` if it is stale."
                )
            raise CommandFailed(
                primary, join(lock.acquire(message, version, "")), result.status, result.stdout, result.stderr
            )
        self.lock_held = True
        try:
            yield
        finally:
            self.lock_held = False
            self.out.say("Releasing the deploy lock...")
            await self.runner.run(primary, lock.release(), check=False)

    # -- build / pull --------------------------------------------------------------------------------
    def build_and_push(self) -> None:
        builder = Builder(self.config)
        self.out.say("Building and pushing the image...")
        self._local(builder.ensure_local_dependencies_installed())
        if not self.config.registry.local:
            self._local(RegistryCommands(self.config).login())
        self.hook("pre-build")
        if not self.config.builder.docker_driver and not self._local(builder.inspect_builder(), check=False):
            self._local(builder.create())
        context = self.config.builder.context
        tmp: str | None = None
        try:
            if context is None:
                tmp = tempfile.mkdtemp(prefix="deployer-build-")
                self._local(["git", "clone", "--quiet", "--depth", "1", f"file://{self.root}", tmp])
                context = tmp
            with self.out.step(f"Built and pushed {self.config.absolute_image}"):
                self._local(builder.push(context))
        finally:
            if tmp:
                shutil.rmtree(tmp, ignore_errors=True)

    def _local(self, cmd: Cmd, check: bool = True) -> bool:
        self.out.debug(f"Running locally: {join(cmd)}")
        proc = subprocess.run(
            join(cmd), shell=True, cwd=self.root, capture_output=True, text=True, check=False
        )
        if check and proc.returncode != 0:
            raise CommandFailed("localhost", join(cmd), proc.returncode, proc.stdout, proc.stderr)
        return proc.returncode == 0

    async def pull(self, hosts: list[str]) -> None:
        builder = Builder(self.config)
        self.out.say(f"Pulling {self.config.absolute_image} on {len(hosts)} host(s)...")

        async def one(host: str) -> None:
            with self.out.step(f"Pulled {self.config.absolute_image}", host):
                if not self.config.registry.local:
                    await self.runner.run(host, RegistryCommands(self.config).login())
                await self.runner.run(host, builder.clean(), check=False)
                await self.runner.run(host, builder.pull())
                await self.runner.run(host, builder.validate_image())

        await self.runner.on(hosts, one)

    # -- proxy ---------------------------------------------------------------------------------------
    async def proxy_boot(self, hosts: list[str]) -> None:
        if not hosts:
            return
        proxy = Proxy(self.config)
        self.out.say(f"Ensuring the proxy is running on {len(hosts)} host(s)...")

        async def one(host: str) -> None:
            with self.out.step("Proxy running", host):
                net = await self.runner.run(host, create_network(), check=False)
                if not net.ok and "already exists" not in net.stderr:
                    raise CommandFailed(host, join(create_network()), net.status, net.stdout, net.stderr)
                tag = await self.runner.capture(host, proxy.version(), check=False)
                if tag and tag.startswith("v") and _version_key(tag) < _version_key(PROXY_MINIMUM_VERSION):
                    raise DeployerError(
                        f"host {host}: kamal-proxy version {tag} is too old (minimum "
                        f"{PROXY_MINIMUM_VERSION}); run `deployer proxy reboot`"
                    )
                await self.runner.run(host, proxy.ensure_apps_config_directory())
                await self.runner.run(host, proxy.start_or_run())

        await self.runner.on(hosts, one)

    async def proxy_reboot(self, rolling: bool = False) -> None:
        hosts = self.proxy_hosts()
        proxy = Proxy(self.config)
        async with self.lock("Rebooting the proxy", hosts):
            groups = [[h] for h in hosts] if rolling else [hosts]
            for group in groups:
                self.hook("pre-proxy-reboot", hosts=group)

                async def one(host: str) -> None:
                    with self.out.step("Rebooted the proxy", host):
                        await self.audit([host], f"Rebooted proxy {self.config.proxy_run.image}")
                        net = await self.runner.run(host, create_network(), check=False)
                        del net
                        await self.runner.run(host, proxy.stop(), check=False)
                        await self.runner.run(host, proxy.remove_container(), check=False)
                        await self.runner.run(
                            host, docker("container", "rm", "--force", PROXY_CONTAINER), check=False
                        )
                        await self.runner.run(host, proxy.ensure_apps_config_directory())
                        await self.runner.run(host, proxy.run())

                await self.runner.on(group, one)
                self.hook("post-proxy-reboot", hosts=group)

    # -- app boot ------------------------------------------------------------------------------------
    async def stale_containers(self, hosts: list[str]) -> None:
        async def one(host: str) -> None:
            for role in self.roles_on(host):
                app = App(self.config, role, host)
                versions = (
                    await self.runner.capture(host, app.list_versions(statuses=ACTIVE_STATUSES), check=False)
                ).split()
                current = await self.runner.capture(host, app.current_running_version(), check=False)
                for version in versions:
                    if version != current:
                        self.out.info(f"Stopping stale container {role.container_name(version)}", host)
                        await self.runner.run(host, app.stop(version=version), check=False)

        await self.runner.on(hosts, one)

    async def upload_support_files(self, hosts: list[str]) -> None:
        """Custom TLS PEMs and error pages, on all app hosts before booting (deploy step 9.1)."""
        version = self.config.require_version()
        pages_dir = self.root / self.config.error_pages_path if self.config.error_pages_path else None

        async def one(host: str) -> None:
            for role in self.roles_on(host):
                if role.proxy and role.proxy.custom_ssl_certificate:
                    ssl = role.proxy.raw["ssl"]
                    base = f"{self.config.proxy_apps_config_directory}/tls/{role.name}"
                    await self.runner.upload(
                        host, self.config.secrets[ssl["certificate_pem"]], f"{base}/cert.pem"
                    )
                    await self.runner.upload(
                        host, self.config.secrets[ssl["private_key_pem"]], f"{base}/key.pem"
                    )
            if pages_dir and any(r.proxy for r in self.roles_on(host)):
                target = f"{self.config.proxy_apps_config_directory}/error_pages/{version}"
                for page in sorted(pages_dir.glob("*.html")):
                    await self.runner.upload(host, page.read_bytes(), f"{target}/{page.name}", mode="644")

        await self.runner.on(hosts, one)

    async def boot_role(self, role: Role, host: str, version: str, barrier: Barrier | None) -> None:
        app = App(self.config, role, host)
        name = role.container_name(version)
        if barrier and not role.primary:
            await barrier.wait()
        existing = await self.runner.capture(host, app.container_id_for_version(version), check=False)
        if existing:
            await self.runner.run(
                host, app.rename_container(version, f"{version}_replaced_{_random.token_hex(8)}")
            )
        old = await self.runner.capture(host, app.current_running_version(), check=False)
        await self.runner.run(
            host,
            Auditor(self.config, self.performer).record(f"Booted app version {version}", role=role.name),
            quiet=True,
        )
        await self.runner.run(host, app.ensure_env_directory())
        await self.runner.upload(
            host, self.config.secret_env_content(role.env_for_host(host)), app.env_file_path()
        )
        start = time.monotonic()
        await self.runner.run(host, app.run(hostname=f"{host[:51]}-{_random.token_hex(6)}"))
        try:
            if role.proxy:
                cid = await self.runner.capture(host, app.container_id_for_version(version))
                if not cid:
                    raise BootError(f"Failed to get endpoint for {name} on {host}, did the container boot?")
                hc = role.proxy.healthcheck_path
                with self.out.waiting(
                    f"Waiting for {name} to pass the health check (GET {hc} on port "
                    f"{role.proxy.app_port}, up to {self.config.deploy_timeout}s)",
                    host,
                ):
                    await self.runner.run(host, app.deploy(target=cid))
            else:
                await self.wait_for_ready(app, host, version)
        except Exception as e:
            if barrier and role.primary:
                barrier.close()
            logs = await self.runner.capture(host, docker("logs", "--tail", "30", name, "2>&1"), check=False)
            await self.runner.run(host, app.stop(version=version), check=False)
            detail = e.stderr.strip() if isinstance(e, CommandFailed) and e.stderr.strip() else str(e)
            raise BootError(
                f"host {host}: {name} failed to become healthy: {detail}\n"
                f"  the new container was stopped; {('the old version ' + old) if old else 'nothing else'} "
                f"keeps serving\n  last container logs:\n    " + "\n    ".join(logs.splitlines()[-30:])
            ) from e
        if barrier and role.primary:
            barrier.open()
        self.out.info(f"Booted {name} ({time.monotonic() - start:.1f}s)", host)
        if old and old != version:
            await self.runner.run(host, app.stop(version=old), check=False)

    async def wait_for_ready(self, app: App, host: str, version: str) -> None:
        deadline = time.monotonic() + self.config.deploy_timeout
        delay = 1
        while True:
            status = await self.runner.capture(host, app.status(version), check=False)
            if status == "healthy":
                return
            if status == "running":
                await self.sleep(min(self.config.readiness_delay, max(deadline - time.monotonic(), 0)))
                if await self.runner.capture(host, app.status(version), check=False) in (
                    "running",
                    "healthy",
                ):
                    return
                raise BootError(f"container {app.container_name(version)} stopped after starting")
            if status in ("unhealthy", "exited", "dead"):
                raise BootError(f"container {app.container_name(version)} is {status}")
            if time.monotonic() >= deadline:
                raise BootError(
                    f"container {app.container_name(version)} not ready after "
                    f"{self.config.deploy_timeout}s (status {status or 'unknown'})"
                )
            await self.sleep(delay)
            delay += 1

    async def app_boot(self, version: str, hosts: list[str] | None = None) -> None:
        hosts = hosts if hosts is not None else self.app_hosts()
        self.config.version = version
        await self.upload_support_files(hosts)
        barrier = Barrier() if any(r.primary for h in hosts for r in self.roles_on(h)) else None
        groups = self.config.boot_groups(hosts)
        self.out.say(
            f"Booting {self.config.service} {version} on {len(hosts)} host(s) in {len(groups)} group(s)..."
        )
        for index, group in enumerate(groups):
            self.hook("pre-app-boot", hosts=group)

            async def boot_host(host: str) -> None:
                roles = self.roles_on(host)
                if self.config.boot.parallel_roles:
                    await asyncio.gather(*(self.boot_role(r, host, version, barrier) for r in roles))
                else:
                    for role in roles:
                        await self.boot_role(role, host, version, barrier)

            await self.runner.on(group, boot_host)
            self.hook("post-app-boot", hosts=group)
            if self.config.boot.wait and index < len(groups) - 1:
                self.out.info(f"Waiting {self.config.boot.wait}s before the next group")
                await self.sleep(self.config.boot.wait)
        await self.audit(hosts, f"Tagging {self.config.absolute_image} as the latest image")
        tag = App(self.config, self.config.primary_role).tag_latest_image()
        await self.runner.on(hosts, lambda h: self.runner.run(h, tag))

    # -- prune ---------------------------------------------------------------------------------------
    async def prune(
        self, hosts: list[str], containers: bool = True, images: bool = True, retain: int | None = None
    ) -> None:
        prune = Prune(self.config)
        keep = retain or self.config.retain_containers

        async def one(host: str) -> None:
            if containers:
                await self.runner.run(host, prune.app_containers(keep), check=False)
            if images:
                await self.runner.run(host, prune.dangling_images(), check=False)
                await self.runner.run(host, prune.tagged_images(), check=False)

        self.out.say(f"Pruning old containers and images (keeping {keep})...")
        await self.runner.on(hosts, one)

    # -- top-level workflows -------------------------------------------------------------------------
    async def deploy(
        self, skip_push: bool = False, boot_accessories: bool = False, redeploy: bool = False
    ) -> None:
        started = time.monotonic()
        hosts = self.app_hosts()
        version = self.resolve_version()
        self.config.version = version
        self.hook("pre-connect")
        if not skip_push:
            self.build_and_push()
        await self.pull(hosts)
        async with self.lock(f"Automatic deploy lock ({version})", hosts):
            self.hook("pre-deploy")
            if not redeploy:
                await self.proxy_boot(self.proxy_hosts())
            if boot_accessories:
                await self.accessory_boot("all")
            await self.stale_containers(hosts)
            await self.app_boot(version, hosts)
            if not redeploy:
                await self.prune(hosts)
        runtime = time.monotonic() - started
        self.hook("post-deploy", KAMAL_RUNTIME=str(round(runtime)))
        self.out.summary(
            f"Deployed {self.config.service} {version} to {len(hosts)} host(s) "
            f"({', '.join(hosts)}) in {runtime:.1f} seconds"
        )

    async def setup(self, skip_push: bool = False) -> None:
        hosts = list(dict.fromkeys(self.app_hosts() + self._accessory_hosts("all")))
        self.out.say(f"Ensuring Docker is installed on {len(hosts)} host(s)...")

        async def bootstrap(host: str) -> None:
            if await self.runner.test(host, docker_cmds.installed()):
                return
            if not await self.runner.test(host, docker_cmds.superuser()):
                raise DeployerError(
                    f"host {host}: Docker is not installed and we are neither root nor sudoer"
                )
            self.out.info("Installing Docker...", host)
            await self.runner.run(host, docker_cmds.install())

        await self.runner.on(hosts, bootstrap)
        self.hook("docker-setup", hosts=hosts)
        await self.deploy(skip_push=skip_push, boot_accessories=True)

    async def rollback(self, version: str | None) -> None:
        hosts = self.app_hosts()
        primary = self.config.primary_host
        if version is None:
            version = await self.previous_version(primary)
        self.config.version = version
        missing: list[str] = []

        async def check(host: str) -> None:
            for role in self.roles_on(host):
                cid = await self.runner.capture(
                    host, App(self.config, role, host).container_id_for_version(version), check=False
                )
                if not cid:
                    missing.append(f"{role.name} on {host}")

        await self.runner.on(hosts, check)
        if missing:
            raise DeployerError(
                f"version {version} is not available as a container on: {', '.join(missing)} "
                "(see `deployer app status`)"
            )
        started = time.monotonic()
        async with self.lock(f"Rollback to {version}", hosts):
            self.hook("pre-deploy")
            await self.app_boot(version, hosts)
        runtime = time.monotonic() - started
        self.hook("post-deploy", KAMAL_RUNTIME=str(round(runtime)))
        self.out.summary(
            f"Rolled back {self.config.service} to {version} on {len(hosts)} host(s) in {runtime:.1f} seconds"
        )

    async def previous_version(self, host: str) -> str:
        """The newest retained version on ``host`` that is not the current one (kamal#1658)."""
        app = App(self.config, self.config.primary_role, host)
        current = await self.runner.capture(host, app.current_running_version(), check=False)
        names = (await self.runner.capture(host, app.list_container_names(), check=False)).split()
        prefix = f"{self.config.primary_role.container_prefix}-"
        for n in names:  # docker lists newest first
            v = n[len(prefix) :] if n.startswith(prefix) else None
            if v and v != current and "_replaced_" not in v:
                return v
        raise DeployerError(f"no previous version to roll back to on {host} (current: {current or 'none'})")

    async def maintenance(self, drain_timeout: int | None, message: str | None) -> None:
        async with self.lock("Maintenance mode"):

            async def one(host: str) -> None:
                for role in self.roles_on(host):
                    if role.proxy:
                        app = App(self.config, role, host)
                        await self.runner.run(
                            host, app.maintenance(drain_timeout or self.config.drain_timeout, message)
                        )
                        self.out.info(f"{role.container_prefix} is in maintenance mode", host)

            await self.audit(self.proxy_hosts(), "Set maintenance mode")
            await self.runner.on(self.proxy_hosts(), one)

    async def live(self) -> None:
        async with self.lock("Leaving maintenance mode"):

            async def one(host: str) -> None:
                for role in self.roles_on(host):
                    if role.proxy:
                        await self.runner.run(host, App(self.config, role, host).live())
                        self.out.info(f"{role.container_prefix} is live", host)

            await self.audit(self.proxy_hosts(), "Set live")
            await self.runner.on(self.proxy_hosts(), one)

    async def app_stop(self) -> None:
        async with self.lock("Stopping the app"):

            async def one(host: str) -> None:
                for role in self.roles_on(host):
                    app = App(self.config, role, host)
                    if role.proxy and await self.runner.capture(
                        host, app.current_running_container_id(), check=False
                    ):
                        await self.runner.run(host, app.remove(), check=False)
                    await self.runner.run(host, app.stop(), check=False)
                    self.out.info(f"Stopped {role.container_prefix}", host)

            await self.audit(self.app_hosts(), "Stopped app")
            await self.runner.on(self.app_hosts(), one)

    async def app_start(self) -> None:
        async with self.lock("Starting the app"):

            async def one(host: str) -> None:
                for role in self.roles_on(host):
                    app = App(self.config, role, host)
                    version = (
                        self.options.version
                        or (
                            await self.runner.capture(host, app.list_versions("--latest"), check=False)
                        ).strip()
                    )
                    if not version:
                        raise DeployerError(f"host {host}: no {role.container_prefix} container to start")
                    self.config.version = version
                    await self.runner.run(host, app.start())
                    if role.proxy:
                        cid = await self.runner.capture(host, app.container_id_for_version(version))
                        await self.runner.run(host, app.deploy(target=cid))
                    self.out.info(f"Started {role.container_name(version)}", host)

            await self.runner.on(self.app_hosts(), one)

    async def app_restart(self) -> None:
        version = self.options.version or await self.runner.capture(
            self.config.primary_host,
            App(self.config, self.config.primary_role).current_running_version(),
            check=False,
        )
        if not version:
            raise DeployerError("no running version to restart (deploy first)")
        async with self.lock(f"Restarting {version}"):
            await self.app_boot(version)

    async def app_remove(self, hosts: list[str]) -> None:
        async def one(host: str) -> None:
            for role in self.roles_on(host):
                app = App(self.config, role, host)
                if role.proxy:
                    await self.runner.run(host, app.remove(), check=False)
                await self.runner.run(host, app.stop(), check=False)
                await self.runner.run(host, app.remove_containers(), check=False)
            await self.runner.run(
                host, App(self.config, self.config.primary_role).remove_images(), check=False
            )
            await self.runner.run(host, ["rm", "-rf", self.config.apps_directory], check=False)
            await self.runner.run(host, ["rm", "-rf", self.config.proxy_apps_config_directory], check=False)

        await self.runner.on(hosts, one)

    async def remove(self) -> None:
        hosts = self.app_hosts()
        async with self.lock("Removing the app", hosts):
            self.out.say(f"Removing {self.config.service} from {len(hosts)} host(s)...")
            await self.audit(hosts, "Removed app")
            await self.app_remove(hosts)
            await self.proxy_remove(self.proxy_hosts(), force=False)
            await self.accessory_remove("all", only_hosts=hosts)
            if not self.config.registry.local:
                await self.runner.on(
                    hosts, lambda h: self.runner.run(h, RegistryCommands(self.config).logout(), check=False)
                )
        self.out.summary(f"Removed {self.config.service} from {', '.join(hosts)}")

    async def proxy_remove(self, hosts: list[str], force: bool) -> None:
        proxy = Proxy(self.config)

        async def one(host: str) -> None:
            remaining = await self.runner.capture(host, proxy.count_installed_apps(), check=False)
            if not force and remaining.strip() not in ("", "0"):
                self.out.info(f"Keeping the proxy: {remaining.strip()} other app(s) still use it", host)
                return
            await self.runner.run(host, proxy.stop(), check=False)
            await self.runner.run(host, proxy.remove_container(), check=False)
            await self.runner.run(host, docker("container", "rm", "--force", PROXY_CONTAINER), check=False)
            await self.runner.run(host, proxy.remove_proxy_directory(), check=False)
            self.out.info("Removed the proxy", host)

        await self.runner.on(hosts, one)

    # -- status --------------------------------------------------------------------------------------
    async def app_status(self) -> dict[str, list[dict[str, str]]]:
        """Per host and role: containers with version/state, current version, and the proxy's view."""
        proxy = Proxy(self.config)

        async def one(host: str) -> list[dict[str, str]]:
            listing = await self.runner.capture(host, proxy.list(), check=False)
            rows: list[dict[str, str]] = []
            for role in self.roles_on(host):
                app = App(self.config, role, host)
                current = await self.runner.capture(host, app.current_running_version(), check=False)
                details = await self.runner.capture(host, app.list_container_details(), check=False)
                proxy_view = _proxy_line(listing, role.container_prefix) if role.proxy else "not proxied"
                for line in details.splitlines():
                    parts = line.split("\t")
                    if len(parts) < 4:
                        continue
                    cid, name, state, status = parts[:4]
                    version = name.removeprefix(f"{role.container_prefix}-")
                    rows.append(
                        {
                            "role": role.name,
                            "container": name,
                            "id": cid,
                            "version": version,
                            "state": state,
                            "status": status,
                            "current": "yes" if version == current else "",
                            "proxy": proxy_view if version == current else "",
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

        return await self.runner.on(self.app_hosts(), one)

    async def proxy_status(self) -> dict[str, tuple[str, str]]:
        proxy = Proxy(self.config)

        async def one(host: str) -> tuple[str, str]:
            state = await self.runner.capture(host, proxy.status(), check=False)
            listing = await self.runner.capture(host, proxy.list(), check=False)
            return state or "absent", listing

        return await self.runner.on(self.proxy_hosts(), one)

    # -- accessories ---------------------------------------------------------------------------------
    def _accessory_names(self, name: str) -> list[str]:
        if name == "all":
            return list(self.config.accessories)
        if name not in self.config.accessories:
            raise DeployerError(
                f"no accessory named {name!r} (configured: {', '.join(self.config.accessories)})"
            )
        return [name]

    def _accessory_hosts(self, name: str) -> list[str]:
        hosts: list[str] = []
        for n in self._accessory_names(name):
            hosts += [
                h for h in self.config.accessories[n].hosts if self._host_selected(h) and h not in hosts
            ]
        return hosts

    async def accessory_boot(self, name: str) -> None:
        for n in self._accessory_names(name):
            acc = AccessoryCommands(self.config, n)
            hosts = [h for h in acc.accessory.hosts if self._host_selected(h)]

            async def one(host: str, acc: AccessoryCommands = acc) -> None:
                with self.out.step(f"Booted accessory {acc.service_name}", host):
                    if acc.accessory.registry:
                        await self.runner.run(
                            host, RegistryCommands(self.config).login(acc.accessory.registry)
                        )
                    for cmd in acc.make_directories():
                        await self.runner.run(host, cmd)
                    await self.runner.run(host, acc.ensure_env_directory())
                    await self.runner.upload(
                        host,
                        self.config.secret_env_content(acc.accessory.env),
                        self.config.accessory_env_file(acc.accessory),
                    )
                    running = await self.runner.capture(host, [*acc.info(), "--quiet"], check=False)
                    if not running:
                        await self.runner.run(host, acc.run())

            await self.runner.on(hosts, one)

    async def accessory_simple(self, name: str, action: str) -> dict[str, str]:
        results: dict[str, str] = {}
        for n in self._accessory_names(name):
            acc = AccessoryCommands(self.config, n)
            cmd = {
                "stop": acc.stop(),
                "start": acc.start(),
                "details": acc.info(),
                "logs": acc.logs(lines=100),
            }[action]
            hosts = [h for h in acc.accessory.hosts if self._host_selected(h)]
            check = action != "stop"

            async def capture(h: str, c: Cmd = cmd, check: bool = check) -> str:
                return await self.runner.capture(h, c, check=check)

            out = await self.runner.on(hosts, capture)
            for host, text in out.items():
                results[f"{acc.service_name} on {host}"] = text
        return results

    async def accessory_remove(self, name: str, only_hosts: list[str] | None = None) -> None:
        for n in self._accessory_names(name):
            acc = AccessoryCommands(self.config, n)
            hosts = [
                h
                for h in acc.accessory.hosts
                if self._host_selected(h) and (only_hosts is None or h in only_hosts)
            ]

            async def one(host: str, acc: AccessoryCommands = acc) -> None:
                await self.runner.run(host, acc.stop(), check=False)
                await self.runner.run(host, acc.remove_container(), check=False)
                await self.runner.run(host, acc.remove_image(), check=False)
                await self.runner.run(host, ["rm", "-rf", f"$PWD/{acc.service_name}"], check=False)

            await self.runner.on(hosts, one)

    # -- misc ----------------------------------------------------------------------------------------
    async def ensure_directories(self, hosts: list[str]) -> None:
        await self.runner.on(hosts, lambda h: self.runner.run(h, make_directory(self.config.run_directory)))


def _proxy_line(listing: str, service: str) -> str:
    """Summarise the proxy's ``list`` row for ``service``: ``running → 1a2b3c:80``."""
    import re

    clean = re.sub(r"\x1b\[[0-9;]*m", "", listing)
    for line in clean.splitlines():
        cols = line.split()
        if cols and cols[0] == service and len(cols) >= 5:
            # Service Host Path Target State TLS
            return f"{cols[4]} → {cols[3]}"
    return "not registered" if clean.strip() else "proxy unreachable"


__all__ = ["Barrier", "Deployer", "HookError", "Options"]
