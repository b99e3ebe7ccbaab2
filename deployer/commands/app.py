"""Commands for app containers of one role on one host (Kamal's ``Kamal::Commands::App``)."""

from __future__ import annotations

import secrets as _random
from collections.abc import Mapping

from deployer.commands.base import (
    Cmd,
    chain,
    cmd,
    container_id_for,
    docker,
    make_directory,
    pipe,
    remove_directory,
    shell,
    xargs,
)
from deployer.config import Config, Role
from deployer.defaults import PROXY_CONTAINER
from deployer.utils import argumentize, optionize, seconds_duration

ACTIVE_STATUSES = ("running", "restarting")


class App:
    def __init__(self, config: Config, role: Role, host: str | None = None) -> None:
        self.config = config
        self.role = role
        self.host = host

    # -- names ---------------------------------------------------------------------------------------
    @property
    def version(self) -> str:
        return self.config.require_version()

    def container_name(self, version: str | None = None) -> str:
        return self.role.container_name(version or self.version)

    # -- argument groups -----------------------------------------------------------------------------
    def env_args(self) -> Cmd:
        env = self.role.env_for_host(self.host) if self.host else self.role.env
        return [*argumentize("--env", env.clear), "--env-file", self.config.role_env_file(self.role)]

    def label_args(self) -> Cmd:
        labels: dict[str, str | None] = {
            "service": self.config.service,
            "role": self.role.name,
            "destination": self.config.destination,
        }
        labels.update(self.config.labels)
        labels.update(self.role.labels)
        return argumentize("--label", labels)

    def volume_args(self) -> Cmd:
        return argumentize("--volume", self.config.volumes)

    def option_args(self) -> Cmd:
        return optionize(self.role.docker_options)

    def stop_args(self) -> Cmd:
        if self.role.stop_timeout is not None:
            return ["-t", str(self.role.stop_timeout)]
        if not self.role.running_proxy:
            return ["-t", str(self.config.drain_timeout)]
        return []

    def container_filters(self, statuses: tuple[str, ...] | None = None) -> list[str]:
        filters = [
            f"label=service={self.config.service}",
            f"label=destination={self.config.destination or ''}",
            f"label=role={self.role.name}",
        ]
        filters += [f"status={s}" for s in statuses or ()]
        return filters

    def container_filter_args(self, statuses: tuple[str, ...] | None = None) -> Cmd:
        return argumentize("--filter", self.container_filters(statuses))

    # -- lifecycle -----------------------------------------------------------------------------------
    def run(self, hostname: str | None = None) -> Cmd:
        name = self.container_name()
        kamal_env = [
            "--env",
            f'KAMAL_CONTAINER_NAME="{name}"',
            "--env",
            f'KAMAL_VERSION="{self.version}"',
            "--env",
            f'KAMAL_HOST="{self.host}"',
        ]
        if self.config.destination:
            kamal_env += ["--env", f'KAMAL_DESTINATION="{self.config.destination}"']
        return docker(
            "run",
            "--detach",
            "--restart",
            self.role.restart_policy,
            "--name",
            name,
            "--network",
            "kamal",
            ["--hostname", hostname] if hostname else None,
            kamal_env,
            self.env_args(),
            self.role.logging.args(),
            self.volume_args(),
            self.label_args(),
            self.option_args(),
            self.config.absolute_image,
            self.role.cmd,
        )

    def start(self) -> Cmd:
        return docker("start", self.container_name())

    def stop(self, version: str | None = None) -> Cmd:
        source = self.container_id_for_version(version) if version else self.current_running_container_id()
        return pipe(source, xargs(docker("stop", self.stop_args())))

    def info(self) -> Cmd:
        return docker("ps", self.container_filter_args())

    def rename_container(self, version: str, new_version: str) -> Cmd:
        return docker("rename", self.container_name(version), self.container_name(new_version))

    def container_id_for_version(self, version: str, only_running: bool = False) -> Cmd:
        return container_id_for(self.container_name(version), only_running)

    def status(self, version: str) -> Cmd:
        """The health status if the image has a HEALTHCHECK, else the container state."""
        return pipe(
            self.container_id_for_version(version),
            xargs(
                docker(
                    "inspect",
                    "--format",
                    "'{{if .State.Health}}{{.State.Health.Status}}{{else}}{{.State.Status}}{{end}}'",
                )
            ),
        )

    # -- proxy ---------------------------------------------------------------------------------------
    def _proxy_exec(self, *args: str) -> Cmd:
        return docker("exec", PROXY_CONTAINER, "kamal-proxy", *args)

    def deploy(self, target: str) -> Cmd:
        assert self.role.proxy is not None, f"role {self.role.name} does not run behind the proxy"
        return self._proxy_exec(
            "deploy",
            self.role.container_prefix,
            *self.role.proxy.deploy_command_args(target, self.config.version),
        )

    def remove(self) -> Cmd:
        return self._proxy_exec("remove", self.role.container_prefix)

    def maintenance(self, drain_timeout: int | None = None, message: str | None = None) -> Cmd:
        opts = {"drain-timeout": seconds_duration(drain_timeout), "message": message}
        return self._proxy_exec("stop", self.role.container_prefix, *optionize(opts, with_="="))

    def live(self) -> Cmd:
        return self._proxy_exec("resume", self.role.container_prefix)

    def remove_proxy_app_directory(self) -> Cmd:
        return remove_directory(self.config.proxy_apps_config_directory)

    # -- current container ---------------------------------------------------------------------------
    def _latest_image_id(self) -> Cmd:
        return docker(
            "image", "ls", "--filter", f"reference={self.config.latest_image}", "--format", "'{{.ID}}'"
        )

    def _latest_container(self, fmt: list[str], filters: list[str] | None = None) -> Cmd:
        return docker(
            "ps",
            "--latest",
            fmt,
            self.container_filter_args(ACTIVE_STATUSES),
            argumentize("--filter", filters or []),
        )

    def _current_running_container(self, fmt: list[str]) -> Cmd:
        latest_image = self._latest_container(fmt, [f"ancestor=$({' '.join(self._latest_image_id())})"])
        return pipe(shell(chain(latest_image, self._latest_container(fmt))), ["head", "-1"])

    def current_running_container_id(self) -> Cmd:
        return self._current_running_container(["--quiet"])

    def _extract_version_from_name(self) -> Cmd:
        return ["while", "read", "line;", "do", f"echo ${{line#{self.role.container_prefix}-}};", "done"]

    def current_running_version(self) -> Cmd:
        return pipe(
            self._current_running_container(["--format", "'{{.Names}}'"]), self._extract_version_from_name()
        )

    def list_versions(self, *docker_args: str, statuses: tuple[str, ...] | None = None) -> Cmd:
        return pipe(
            docker("ps", self.container_filter_args(statuses), list(docker_args), "--format", '"{{.Names}}"'),
            self._extract_version_from_name(),
        )

    def list_containers(self) -> Cmd:
        return docker("container", "ls", "--all", self.container_filter_args())

    def list_container_names(self) -> Cmd:
        return docker("container", "ls", "--all", self.container_filter_args(), "--format", "'{{ .Names }}'")

    def list_container_details(self) -> Cmd:
        """Name, state and status of every container of this role (for ``app status``)."""
        return docker(
            "container",
            "ls",
            "--all",
            self.container_filter_args(),
            "--format",
            "'{{.ID}}\\t{{.Names}}\\t{{.State}}\\t{{.Status}}'",
        )

    def remove_container(self, version: str) -> Cmd:
        return pipe(self.container_id_for_version(version), xargs(docker("container", "rm")))

    def remove_containers(self) -> Cmd:
        return docker("container", "prune", "--force", self.container_filter_args())

    # -- images --------------------------------------------------------------------------------------
    def list_images(self) -> Cmd:
        return docker("image", "ls", self.config.repository)

    def remove_images(self) -> Cmd:
        return docker(
            "image", "prune", "--all", "--force", "--filter", f"label=service={self.config.service}"
        )

    def tag_latest_image(self) -> Cmd:
        return docker("tag", self.config.absolute_image, self.config.latest_image)

    # -- logs ----------------------------------------------------------------------------------------
    def logs(
        self,
        container_id: str | None = None,
        timestamps: bool = True,
        since: str | None = None,
        lines: int | str | None = None,
        grep: str | None = None,
        grep_options: str | None = None,
    ) -> Cmd:
        source = ["echo", container_id] if container_id else self.current_running_container_id()
        logs = (
            "xargs docker logs"
            + (" --timestamps" if timestamps else "")
            + (f" --since {since}" if since else "")
        )
        logs += (f" --tail {lines}" if lines else "") + " 2>&1"
        grep_cmd = [f"grep '{grep}'" + (f" {grep_options}" if grep_options else "")] if grep else None
        return pipe(source, [logs], grep_cmd)

    def follow_logs_command(
        self,
        container_id: str | None = None,
        timestamps: bool = True,
        lines: int | None = None,
        grep: str | None = None,
    ) -> Cmd:
        source = ["echo", container_id] if container_id else self.current_running_container_id()
        logs = (
            "xargs docker logs"
            + (" --timestamps" if timestamps else "")
            + (f" --tail {lines}" if lines else "")
        )
        logs += " --follow 2>&1"
        return pipe(source, [logs], [f'grep "{grep}"'] if grep else None)

    # -- exec ----------------------------------------------------------------------------------------
    def exec_container_name(self) -> str:
        return f"{self.role.container_prefix}-exec-{self.version}-{_random.token_hex(3)}"

    def execute_in_new_container(
        self,
        command: list[str],
        env: Mapping[str, str] | None = None,
        interactive: bool = False,
        detach: bool = False,
    ) -> Cmd:
        return docker(
            "run",
            "-it" if interactive else None,
            "--detach" if detach else None,
            None if detach else "--rm",
            "--name",
            self.exec_container_name(),
            "--network",
            "kamal",
            self.env_args(),
            argumentize("--env", dict(env or {})),
            self.role.logging.args(),
            self.volume_args(),
            self.option_args(),
            self.config.absolute_image,
            command,
        )

    def execute_in_existing_container(
        self,
        command: list[str],
        env: Mapping[str, str] | None = None,
        interactive: bool = False,
        tty: bool = True,
    ) -> Cmd:
        flag = ("-it" if tty else "-i") if interactive else None
        return docker("exec", flag, argumentize("--env", dict(env or {})), self.container_name(), command)

    # -- env file ------------------------------------------------------------------------------------
    def ensure_env_directory(self) -> Cmd:
        return make_directory(f"{self.config.env_directory}/roles")

    def env_file_path(self) -> str:
        return self.config.role_env_file(self.role)


def stale_versions(app: App) -> Cmd:
    """Running versions of this role other than the current one (Kamal lists, then filters)."""
    return app.list_versions(statuses=ACTIVE_STATUSES)


__all__ = ["ACTIVE_STATUSES", "App", "cmd", "stale_versions"]
