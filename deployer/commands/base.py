"""Helpers for building command token lists (Kamal's ``Kamal::Commands::Base``)."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Any

from deployer.utils import shell_single_quote

Cmd = list[str]


def _flatten(parts: Iterable[Any]) -> Cmd:
    out: Cmd = []
    for part in parts:
        if part is None:
            continue
        if isinstance(part, list | tuple):
            out.extend(_flatten(part))
        else:
            out.append(part if isinstance(part, str) else str(part))
    return out


def cmd(*parts: Any) -> Cmd:
    """Flatten nested parts into one command, dropping ``None``."""
    return _flatten(parts)


def docker(*parts: Any) -> Cmd:
    return ["docker", *_flatten(parts)]


def combine(*commands: Sequence[str] | None, by: str = "&&") -> Cmd:
    out: Cmd = []
    for c in commands:
        if c is None:
            continue
        if out:
            out.append(by)
        out.extend(c)
    return out


def chain(*commands: Sequence[str] | None) -> Cmd:
    return combine(*commands, by=";")


def pipe(*commands: Sequence[str] | None) -> Cmd:
    return combine(*commands, by="|")


def append(*commands: Sequence[str] | None) -> Cmd:
    return combine(*commands, by=">>")


def write(*commands: Sequence[str] | None) -> Cmd:
    return combine(*commands, by=">")


def any_of(*commands: Sequence[str] | None) -> Cmd:
    return combine(*commands, by="||")


def xargs(command: Sequence[str]) -> Cmd:
    return ["xargs", *command]


def shell(command: Sequence[str]) -> Cmd:
    """``sh -c '<command>'`` with single quotes escaped, as Kamal's ``shell`` does."""
    return ["sh", "-c", shell_single_quote(" ".join(command))]


def container_id_for(container_name: str, only_running: bool = False) -> Cmd:
    return docker(
        "container",
        "ls",
        None if only_running else "--all",
        "--filter",
        f"'name=^{container_name}$'",
        "--quiet",
    )


def make_directory(path: str) -> Cmd:
    return ["mkdir", "-p", path]


def remove_directory(path: str) -> Cmd:
    return ["rm", "-r", path]


def create_network(name: str = "kamal") -> Cmd:
    return docker("network", "create", name)
