"""What every workflow shares: the config, the runner, the output, the targeting options, hooks, audit.

Workflows never change the configuration: a release is ``config.for_version(version)``, a copy with the
version set, passed to the command builders explicitly.
"""

from __future__ import annotations

import asyncio
import fnmatch
import os
import subprocess
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path
from typing import Any, Protocol

from deployer.commands.auditor import Auditor
from deployer.commands.base import Cmd
from deployer.config import Config, Role
from deployer.errors import CommandFailed, DeployerError
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


@dataclass(frozen=True, kw_only=True)
class Options:
    """Kamal's targeting options: ``--hosts``, ``--roles`` (shell patterns), ``--primary``, ``-H``."""

    hosts: list[str] | None = None
    roles: list[str] | None = None
    primary: bool = False
    skip_hooks: bool = False
    version: str | None = None


@dataclass(kw_only=True)
class Context:
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
    def host_selected(self, host: str) -> bool:
        if not self.options.hosts:
            return True
        return any(fnmatch.fnmatchcase(host, pattern) for pattern in self.options.hosts)

    def target_roles(self) -> list[Role]:
        """The targeted roles, the primary role first (as Kamal's commander orders them)."""
        roles = sorted(self.config.roles, key=lambda r: not r.primary)
        if self.options.roles:
            patterns = self.options.roles
            roles = [r for r in roles if any(fnmatch.fnmatchcase(r.name, p) for p in patterns)]
            if not roles:
                raise DeployerError(f"--roles {','.join(patterns)} matches no role")
        return roles

    def role_hosts(self, role: Role) -> list[str]:
        hosts = [h for h in role.hosts if self.host_selected(h)]
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
    @cached_property
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

    def hook(self, name: str, version: str | None, hosts: list[str] | None = None, **extra: str) -> None:
        env = hook_env(
            self.config,
            version=version,
            performer=self.performer,
            command=self.command,
            subcommand=self.subcommand,
            hosts=hosts if hosts is not None else self.app_hosts(),
            roles=self.options.roles,
            lock=self.lock_held,
            extra=extra,
        )
        run_hook(self.config, name, env, self.out, self.root, skip=self.options.skip_hooks)

    async def audit(self, hosts: list[str], message: str, role: str | None = None) -> None:
        cmd = Auditor(self.config, self.performer).record(message, role=role)
        await self.runner.on(hosts, lambda h: self.runner.run(h, cmd, quiet=True))

    async def capture_on(self, hosts: list[str], cmd: Cmd, check: bool = True) -> dict[str, str]:
        """``cmd``'s output on every host."""
        return await self.runner.on(hosts, lambda h: self.runner.capture(h, cmd, check=check))

    def local(self, cmd: Cmd, check: bool = True) -> bool:
        self.out.debug(f"Running locally: {join(cmd)}")
        proc = subprocess.run(
            join(cmd), shell=True, cwd=self.root, capture_output=True, text=True, check=False
        )
        if check and proc.returncode != 0:
            raise CommandFailed("localhost", join(cmd), proc.returncode, proc.stdout, proc.stderr)
        return proc.returncode == 0
