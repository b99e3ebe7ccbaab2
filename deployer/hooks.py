"""Local hooks: executables in ``<hooks_path>/<name>`` (default ``.kamal/hooks``) run with KAMAL_* env.

A non-zero exit aborts the command (:class:`~deployer.errors.HookError`). pre-connect, pre-deploy and
post-deploy also get every secret in their environment, as in Kamal.
"""

from __future__ import annotations

import os
import subprocess
from collections.abc import Mapping
from datetime import UTC, datetime
from pathlib import Path

from deployer.config import Config
from deployer.defaults import SECRET_HOOKS
from deployer.errors import HookError
from deployer.output import NORMAL, Output
from deployer.secrets import REDACTOR


def hook_env(
    config: Config,
    *,
    version: str | None,
    performer: str,
    command: str,
    subcommand: str | None,
    hosts: list[str],
    roles: list[str] | None = None,
    lock: bool = False,
    extra: Mapping[str, str] | None = None,
) -> dict[str, str]:
    version = version or ""
    env = {
        "KAMAL_RECORDED_AT": datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ"),
        "KAMAL_PERFORMER": performer,
        "KAMAL_VERSION": version,
        "KAMAL_SERVICE_VERSION": f"{config.service}@{version[:7]}",
        "KAMAL_SERVICE": config.service,
        "KAMAL_HOSTS": ",".join(hosts),
        "KAMAL_COMMAND": command,
        "KAMAL_SUBCOMMAND": subcommand or "",
    }
    if config.destination:
        env["KAMAL_DESTINATION"] = config.destination
    if roles:
        env["KAMAL_ROLES"] = ",".join(roles)
    if lock:
        env["KAMAL_LOCK"] = "true"
    env.update(extra or {})
    return env


def hook_paths(config: Config, name: str, root: Path) -> list[Path]:
    paths = []
    main = root / config.hooks_path / name
    if main.exists():
        paths.append(main)
    paths += [root / p for p in config.legacy_hooks.get(name, [])]
    return paths


def _show_output(config: Config, name: str, out: Output) -> bool:
    """Kamal: ``-q`` hides and ``-v`` shows every hook's output; at the normal level ``hooks_output``
    decides (quiet hides, verbose shows), and without it the output is shown."""
    if out.level != NORMAL:
        return out.level > NORMAL
    return config.hooks_output_for(name) != "quiet"


def run_hook(
    config: Config, name: str, env: Mapping[str, str], out: Output, root: Path, skip: bool = False
) -> bool:
    """Run hook ``name`` if present; returns whether anything ran. Raises HookError on failure."""
    if skip:
        return False
    paths = hook_paths(config, name, root)
    if not paths:
        return False
    full_env = {**os.environ, **env}
    if name in SECRET_HOOKS:
        full_env.update({k: config.secrets[k] for k in config.secrets})
    for path in paths:
        if not os.access(path, os.X_OK):
            raise HookError(f"hook {path} is not executable (chmod +x {path})")
        out.say(f"Running the {name} hook...")
        proc = subprocess.run(
            [str(path)], cwd=root, env=full_env, capture_output=True, text=True, check=False
        )
        text = REDACTOR((proc.stdout + proc.stderr).strip())
        if text and _show_output(config, name, out):
            out.info(text)
        if proc.returncode != 0:
            raise HookError(
                f"Hook `{name}` ({path}) failed with exit {proc.returncode}" + (f":\n{text}" if text else "")
            )
    return True
