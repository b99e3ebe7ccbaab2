"""Commands for the ``kamal-proxy`` container on a host (Kamal's ``Kamal::Commands::Proxy``)."""

from __future__ import annotations

from deployer.commands.base import Cmd, any_of, docker, make_directory, pipe, remove_directory, xargs
from deployer.config import Config
from deployer.defaults import PROXY_CONTAINER, PROXY_DEFAULT_REPOSITORY, PROXY_MINIMUM_VERSION
from deployer.utils import argumentize, optionize

CONFIG_VOLUME = "kamal-proxy-config:/home/kamal-proxy/.config/kamal-proxy"
DEFAULT_BOOT_OPTIONS = "--publish 80:80 --publish 443:443 --log-opt max-size=10m"
IMAGE_TITLE_LABEL = "label=org.opencontainers.image.title=kamal-proxy"


class Proxy:
    def __init__(self, config: Config, host: str | None = None) -> None:
        self.config = config
        self.host = host  # run() boots the proxy as configured for this server

    @property
    def directory(self) -> str:
        return f"{self.config.run_directory}/proxy"

    @property
    def apps_config_directory(self) -> str:
        return f"{self.directory}/apps-config"

    def _base_run(self) -> Cmd:
        return docker(
            "run",
            "--name",
            PROXY_CONTAINER,
            "--network",
            "kamal",
            "--detach",
            "--restart",
            "unless-stopped",
            "--volume",
            CONFIG_VOLUME,
            "--volume",
            f"$PWD/{self.apps_config_directory}:/home/kamal-proxy/.apps-config",
        )

    def run(self) -> Cmd:
        run = self.config.proxy_run_for(self.host) if self.host else self.config.proxy_run
        if run.raw is None:
            return self._legacy_run()
        publish: list[str] = []
        if run.get("publish", True):
            http, https = run.get("http_port", 80), run.get("https_port", 443)
            ips = run.get("bind_ips") or [None]
            for ip in ips:
                prefix = "" if ip is None else (f"[{ip}]:" if ":" in ip else f"{ip}:")
                publish += [f"{prefix}{http}:80", f"{prefix}{https}:443"]
        metrics = run.get("metrics_port")
        run_args = optionize({"debug": True if run.get("debug") else None, "metrics-port": metrics})
        return [
            *self._base_run(),
            *argumentize("--publish", publish),
            "--log-opt",
            f"max-size={run.get('log_max_size', '10m')}",
            *([f"--expose={metrics}"] if metrics else []),
            *optionize(run.get("options") or {}, with_="="),
            run.image,
            "kamal-proxy",
            "run",
            *run_args,
        ]

    def _legacy_run(self) -> Cmd:
        d = self.directory
        options = f'$(cat {d}/options 2> /dev/null || echo "{DEFAULT_BOOT_OPTIONS}")'
        image = f'$(cat {d}/image 2> /dev/null || echo "{PROXY_DEFAULT_REPOSITORY}")'
        version = f'$(cat {d}/image_version 2> /dev/null || echo "{PROXY_MINIMUM_VERSION}")'
        run_command = f'$(cat {d}/run_command 2> /dev/null || echo "")'
        return pipe(["echo", options, f"{image}:{version}", run_command], xargs(self._base_run()))

    def start(self) -> Cmd:
        return docker("container", "start", PROXY_CONTAINER)

    def stop(self) -> Cmd:
        return docker("container", "stop", PROXY_CONTAINER)

    def start_or_run(self) -> Cmd:
        return any_of(self.start(), self.run())

    def info(self) -> Cmd:
        return docker("ps", "--filter", f"'name=^{PROXY_CONTAINER}$'")

    def status(self) -> Cmd:
        return docker(
            "container",
            "ls",
            "--all",
            "--filter",
            f"'name=^{PROXY_CONTAINER}$'",
            "--format",
            "'{{.State}}\\t{{.Status}}\\t{{.Image}}'",
        )

    def version(self) -> Cmd:
        return pipe(
            docker("inspect", PROXY_CONTAINER, "--format", "'{{.Config.Image}}'"),
            ["awk", "-F:", "'{print $NF}'"],
        )

    def list(self) -> Cmd:
        return docker("exec", PROXY_CONTAINER, "kamal-proxy", "list")

    def logs(
        self,
        timestamps: bool = True,
        since: str | None = None,
        lines: int | None = None,
        grep: str | None = None,
    ) -> Cmd:
        return pipe(
            docker(
                "logs",
                PROXY_CONTAINER,
                ["--since", since] if since else None,
                ["--tail", str(lines)] if lines else None,
                "--timestamps" if timestamps else None,
                "2>&1",
            ),
            ["grep", f"'{grep}'"] if grep else None,
        )

    def follow_logs_command(self, timestamps: bool = True, grep: str | None = None) -> Cmd:
        return pipe(
            docker(
                "logs",
                PROXY_CONTAINER,
                "--timestamps" if timestamps else None,
                "--tail",
                "10",
                "--follow",
                "2>&1",
            ),
            ["grep", f'"{grep}"'] if grep else None,
        )

    def remove_container(self) -> Cmd:
        return docker("container", "prune", "--force", "--filter", IMAGE_TITLE_LABEL)

    def remove_image(self) -> Cmd:
        return docker("image", "prune", "--all", "--force", "--filter", IMAGE_TITLE_LABEL)

    def ensure_proxy_directory(self) -> Cmd:
        return make_directory(self.directory)

    def ensure_apps_config_directory(self) -> Cmd:
        return make_directory(self.apps_config_directory)

    def remove_proxy_directory(self) -> Cmd:
        return remove_directory(self.directory)

    def count_installed_apps(self) -> Cmd:
        return pipe(["ls", f"{self.config.run_directory}/apps", "2>/dev/null"], ["wc", "-l"])
