"""Image build/push/pull commands (Kamal's ``Kamal::Commands::Builder``, basic local builder)."""

from __future__ import annotations

from deployer.commands.base import Cmd, any_of, combine, docker
from deployer.config import Config
from deployer.utils import argumentize, escape_shell_value


class Builder:
    def __init__(self, config: Config) -> None:
        self.config = config
        self.b = config.builder

    def platforms(self) -> str:
        return ",".join(f"linux/{a}" for a in self.b.arch)

    def build_options(self) -> Cmd:
        opts: Cmd = ["--label", f"service={escape_shell_value(self.config.service)}"]
        opts += argumentize("--build-arg", self.b.args)
        for s in self.b.secrets:
            opts += ["--secret", f"id={escape_shell_value(s)}"]
        opts += ["--file", self.b.dockerfile]
        if self.b.target:
            opts += ["--target", self.b.target]
        if self.b.ssh:
            opts += ["--ssh", self.b.ssh]
        if self.b.provenance is not None:
            opts += ["--provenance", str(self.b.provenance).lower()]
        if self.b.sbom is not None:
            opts += ["--sbom", str(self.b.sbom).lower()]
        return opts

    def tag_options(self) -> Cmd:
        return ["-t", self.config.absolute_image, "-t", self.config.latest_image]

    def cache_options(self) -> Cmd:
        cache = self.b.cache
        if not cache:
            return []
        kind = cache.get("type")
        if kind == "gha":
            return ["--cache-to", "type=gha", "--cache-from", "type=gha"]
        if kind == "registry":
            image = cache.get("image", f"{self.config.image}-build-cache")
            ref = f"{self.config.registry.server + '/' if self.config.registry.server else ''}{image}"
            opts = cache.get("options")
            return [
                "--cache-to",
                f"type=registry,{opts + ',' if opts else ''}ref={ref}",
                "--cache-from",
                f"type=registry,ref={ref}",
            ]
        return []

    def push(self, context: str = ".", no_cache: bool = False) -> Cmd:
        return docker(
            "buildx",
            "build",
            "--output=type=registry",
            "--platform",
            self.platforms(),
            None if self.b.docker_driver else ["--builder", self.b.builder_name],
            self.tag_options(),
            self.cache_options(),
            self.build_options(),
            "--no-cache" if no_cache else None,
            context,
            "2>&1",
        )

    def inspect_builder(self) -> Cmd:
        return docker("buildx", "inspect", self.b.builder_name)

    def create(self) -> Cmd:
        return docker("buildx", "create", "--name", self.b.builder_name, f"--driver={self.b.driver}")

    def ensure_local_dependencies_installed(self) -> Cmd:
        return combine(docker("--version"), docker("buildx", "version"))

    # -- on the app hosts -----------------------------------------------------------------------------
    def clean(self) -> Cmd:
        return docker("image", "rm", "--force", self.config.absolute_image)

    def pull(self) -> Cmd:
        return docker("pull", self.config.absolute_image)

    def validate_image(self) -> Cmd:
        image, service = self.config.absolute_image, self.config.service
        return any_of(
            [*docker("inspect", "-f", "'{{ .Config.Labels.service }}'", image), "|", "grep", "-x", service],
            ["(echo", f"\"Image {image} is missing the 'service' label\"", "&&", "exit", "1)"],
        )
