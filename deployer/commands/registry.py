"""``docker login/logout`` and the local registry (Kamal's ``Kamal::Commands::Registry``)."""

from __future__ import annotations

from deployer.commands.base import Cmd, any_of, combine, docker
from deployer.config import Config, Registry, registry_credentials
from deployer.utils import Sensitive, escape_shell_value

LOCAL_REGISTRY_CONTAINER = "kamal-docker-registry"


class RegistryCommands:
    def __init__(self, config: Config) -> None:
        self.config = config

    def login(self, registry: Registry | None = None) -> Cmd:
        reg = registry or self.config.registry
        user, password = registry_credentials(self.config, reg)
        return docker(
            "login",
            reg.server,
            "-u",
            Sensitive(escape_shell_value(user)),
            "-p",
            Sensitive(escape_shell_value(password)),
        )

    def logout(self, registry: Registry | None = None) -> Cmd:
        reg = registry or self.config.registry
        return docker("logout", reg.server)

    def setup(self) -> Cmd:
        port = self.config.registry.local_port
        return any_of(
            docker("start", LOCAL_REGISTRY_CONTAINER),
            docker(
                "run",
                "--detach",
                "-p",
                f"127.0.0.1:{port}:{port}",
                "--name",
                LOCAL_REGISTRY_CONTAINER,
                "registry:3",
            ),
        )

    def remove(self) -> Cmd:
        return combine(docker("stop", LOCAL_REGISTRY_CONTAINER), docker("rm", LOCAL_REGISTRY_CONTAINER))
