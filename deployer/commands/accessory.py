"""Accessory containers (Kamal's ``Kamal::Commands::Accessory``)."""

from __future__ import annotations

from collections.abc import Mapping

from deployer.commands.base import Cmd, docker, make_directory, pipe
from deployer.config import Accessory, Config
from deployer.defaults import PROXY_CONTAINER, RESTART_POLICY
from deployer.utils import argumentize, optionize, to_s


class AccessoryCommands:
    def __init__(self, config: Config, name: str) -> None:
        self.config = config
        self.accessory: Accessory = config.accessories[name]

    @property
    def service_name(self) -> str:
        return self.accessory.service_name

    def env_args(self) -> Cmd:
        return [
            *argumentize("--env", self.accessory.env.clear),
            "--env-file",
            self.config.accessory_env_file(self.accessory),
        ]

    def volume_args(self) -> Cmd:
        vols: list[str] = []
        for d in self.accessory.directories:
            volume = f"{self._expand(d.local)}:{d.remote}"
            vols.append(f"{volume}:{d.options}" if d.options else volume)
        vols += self.accessory.volumes
        return argumentize("--volume", vols)

    def _expand(self, host_path: str) -> str:
        return host_path if host_path.startswith("/") else f"$PWD/{self.service_name}/{host_path}"

    def directories(self) -> list[str]:
        return [self._expand(d.local) for d in self.accessory.directories]

    def docker_options(self) -> dict[str, object]:
        """The accessory's ``options``, without ``restart`` (that is ``--restart``)."""
        return {k: v for k, v in self.accessory.options.items() if k != "restart"}

    def label_args(self) -> Cmd:
        return argumentize("--label", {"service": self.service_name, **self.accessory.labels})

    def run(self) -> Cmd:
        a = self.accessory
        return docker(
            "run",
            "--name",
            self.service_name,
            "--detach",
            "--restart",
            to_s(a.options.get("restart", RESTART_POLICY)),
            "--network",
            a.network,
            self.config.logging.args(),
            ["--publish", a.port] if a.port else None,
            self.env_args(),
            self.volume_args(),
            self.label_args(),
            optionize(self.docker_options()),
            a.image,
            a.cmd,
        )

    def start(self) -> Cmd:
        return docker("container", "start", self.service_name)

    def stop(self) -> Cmd:
        return docker("container", "stop", self.service_name)

    def info(self) -> Cmd:
        return docker("ps", "--filter", f"label=service={self.service_name}")

    def logs(
        self,
        timestamps: bool = True,
        since: str | None = None,
        lines: int | None = None,
        grep: str | None = None,
        grep_options: str | None = None,
    ) -> Cmd:
        logs = f"docker logs {self.service_name}"
        logs += f"  --since {since}" if since else ""
        logs += f"  --tail {lines}" if lines else ""
        logs += " --timestamps" if timestamps else ""
        logs += " 2>&1"
        grep_cmd = [f"grep '{grep}'" + (f" {grep_options}" if grep_options else "")] if grep else None
        return pipe([logs], grep_cmd)

    def execute_in_new_container(self, command: list[str], interactive: bool = False) -> Cmd:
        a = self.accessory
        return docker(
            "run",
            "-it" if interactive else None,
            "--rm",
            "--network",
            a.network,
            self.env_args(),
            self.volume_args(),
            optionize(self.docker_options()),
            a.image,
            command,
        )

    def execute_in_existing_container(self, command: list[str], interactive: bool = False) -> Cmd:
        return docker("exec", "-it" if interactive else None, self.service_name, command)

    def remove_container(self) -> Cmd:
        return docker("container", "prune", "--force", "--filter", f"label=service={self.service_name}")

    def pull_image(self) -> Cmd:
        return docker("image", "pull", self.accessory.image)

    def remove_image(self) -> Cmd:
        return docker("image", "rm", "--force", self.accessory.image)

    def make_directories(self) -> list[Cmd]:
        """mkdir -p each directory, then chmod / chown it when the map form gives mode / owner."""
        cmds: list[Cmd] = []
        for d in self.accessory.directories:
            path = self._expand(d.local)
            cmds.append(make_directory(path))
            if d.mode:
                cmds.append(["chmod", d.mode, path])
            if d.owner:
                cmds.append(["chown", d.owner, path])
        return cmds

    def ensure_env_directory(self) -> Cmd:
        return make_directory(f"{self.config.env_directory}/accessories")

    def deploy(self, target: str) -> Cmd:
        assert self.accessory.proxy is not None
        return docker(
            "exec",
            PROXY_CONTAINER,
            "kamal-proxy",
            "deploy",
            self.service_name,
            *self.accessory.proxy.deploy_command_args(target),
        )

    def remove(self) -> Cmd:
        return docker("exec", PROXY_CONTAINER, "kamal-proxy", "remove", self.service_name)


def env_file_content(config: Config, accessory: Accessory, extra: Mapping[str, str] | None = None) -> str:
    return config.secret_env_content(accessory.env)
