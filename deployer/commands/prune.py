"""Pruning old containers and images (Kamal's ``Kamal::Commands::Prune``)."""

from __future__ import annotations

from deployer.commands.base import Cmd, docker, pipe
from deployer.config import Config


class Prune:
    def __init__(self, config: Config) -> None:
        self.config = config

    @property
    def _service_filter(self) -> str:
        return f"label=service={self.config.service}"

    def dangling_images(self) -> Cmd:
        return docker("image", "prune", "--force", "--filter", self._service_filter)

    def tagged_images(self) -> Cmd:
        repo = self.config.repository
        in_use = (
            f"\"$(docker container ls -a --format '{{{{.Image}}}}\\|' --filter {self._service_filter} "
            f"| tr -d '\\n'){repo}:{self.config.latest_tag}\\|{repo}:<none>\""
        )
        return pipe(
            docker(
                "image",
                "ls",
                "--filter",
                self._service_filter,
                "--format",
                "'{{.ID}} {{.Repository}}:{{.Tag}}'",
            ),
            ["grep", "-v", "-w", in_use],
            ["while", "read", "image", "tag;", "do", "docker", "rmi", "$tag;", "done"],
        )

    def app_containers(self, retain: int) -> Cmd:
        return pipe(
            docker(
                "ps",
                "-q",
                "-a",
                "--filter",
                self._service_filter,
                "--filter",
                "status=created",
                "--filter",
                "status=exited",
                "--filter",
                "status=dead",
            ),
            ["tail", "-n", f"+{retain + 1}"],
            ["while", "read", "container_id;", "do", "docker", "rm", "$container_id;", "done"],
        )
