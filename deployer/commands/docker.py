"""Docker presence/installation on hosts (Kamal's ``Kamal::Commands::Docker``)."""

from __future__ import annotations

from deployer.commands.base import Cmd, any_of, docker, pipe


def installed() -> Cmd:
    return docker("-v")


def running() -> Cmd:
    return docker("version")


def install() -> Cmd:
    return pipe(
        [
            "sh",
            "-c",
            "'curl -fsSL https://get.docker.com || wget -O - https://get.docker.com || echo \"exit 1\"'",
        ],
        ["sh"],
    )


def superuser() -> Cmd:
    return any_of(root(), ["sudo", "-nl", "usermod", ">/dev/null"])


def root() -> Cmd:
    return ["[", '"${EUID:-$(id -u)}"', "-eq", "0", "]"]


def in_docker_group() -> Cmd:
    return pipe(["id", "-nG", '"${USER:-$(id -un)}"'], ["grep", "-qw", "docker"])


def add_to_docker_group() -> Cmd:
    return ["sudo", "-n", "usermod", "-aG", "docker", '"${USER:-$(id -un)}"']


def refresh_session() -> Cmd:
    return ["kill", "-HUP", "$PPID"]
