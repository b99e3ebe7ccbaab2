"""Loading, merging, validating and deriving names from Kamal 2's ``config/deploy.yml``.

This layer does no remote I/O. It reads the YAML (and, with ``-d DEST``, ``deploy.DEST.yml`` or the
guide's multi-document ``destination:`` sections), validates it against :mod:`deployer.schema`,
maps guide-only legacy keys (with a deprecation warning) and derives everything the command layer
needs: container names, labels, env, proxy flags, boot groups.
"""

from __future__ import annotations

import copy
import dataclasses
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from deployer import defaults, schema, validation
from deployer.errors import ConfigError, SecretError, warn
from deployer.loading import deep_merge, display_path, load_raw
from deployer.secrets import Secrets
from deployer.utils import argumentize, optionize, seconds_duration, to_s

# Kamal's test (Registry#local?): only "localhost:PORT" is a local registry, not 127.0.0.1.
LOCAL_REGISTRY = re.compile(r"^localhost:\d+$")
RESERVED_ALIASES = {
    "init",
    "setup",
    "deploy",
    "redeploy",
    "rollback",
    "app",
    "proxy",
    "remove",
    "prune",
    "lock",
    "config",
    "audit",
    "version",
    "accessory",
    "build",
    "registry",
    "server",
    "details",
    "help",
}


# --------------------------------------------------------------------------------------------------
# Derived configuration objects


@dataclass
class SecretName:
    name: str  # the variable name inside the container
    secret: str  # the key looked up in the secrets files


@dataclass
class EnvSpec:
    clear: dict[str, str] = field(default_factory=dict)
    secrets: list[SecretName] = field(default_factory=list)
    tags: dict[str, EnvSpec] = field(default_factory=dict)

    @classmethod
    def parse(cls, raw: Any) -> EnvSpec:
        if not raw:
            return cls()
        if not schema.is_structured_env(raw):
            return cls(clear={str(k): to_s(v) for k, v in raw.items() if not str(k).startswith("x-")})
        secrets = []
        for entry in raw.get("secret") or []:
            name, _, alias = entry.partition(":")
            secrets.append(SecretName(name, alias or name))
        tags = {str(t): cls.parse(v) for t, v in (raw.get("tags") or {}).items()}
        clear = {str(k): to_s(v) for k, v in (raw.get("clear") or {}).items()}
        return cls(clear=clear, secrets=secrets, tags=tags)

    def secret_names(self) -> list[str]:
        names = [s.secret for s in self.secrets]
        for tag in self.tags.values():
            names += tag.secret_names()
        return names

    def merge(self, other: EnvSpec) -> EnvSpec:
        names = {s.name for s in other.secrets}
        return EnvSpec(
            clear={**self.clear, **other.clear},
            secrets=[s for s in self.secrets if s.name not in names] + other.secrets,
            tags={**self.tags, **other.tags},
        )


@dataclass
class Logging:
    driver: str | None = None
    options: dict[str, str] = field(default_factory=dict)

    def args(self) -> list[str]:
        if self.driver or self.options:
            out = optionize({"log-driver": self.driver}) if self.driver else []
            return out + argumentize("--log-opt", self.options)
        return argumentize("--log-opt", {"max-size": defaults.LOG_MAX_SIZE})


@dataclass
class Registry:
    server: str | None
    username: str | list[str] | None = None  # a literal, or [SECRET_NAME]
    password: str | list[str] | None = None

    @property
    def local(self) -> bool:
        return bool(self.server and LOCAL_REGISTRY.match(self.server))

    @property
    def local_port(self) -> int:
        assert self.server
        return int(self.server.rsplit(":", 1)[1])


@dataclass
class ProxyConfig:
    """A role's (or accessory's) proxy section, translated into ``kamal-proxy deploy`` flags."""

    raw: dict[str, Any]
    service_name: str  # SERVICE-ROLE[-DEST]
    deploy_timeout: int
    drain_timeout: int
    tls_directory: str | None = None  # container path for custom certs (role)
    error_pages_directory: str | None = None  # container path; the version is appended

    @property
    def app_port(self) -> int:
        return int(self.raw.get("app_port", defaults.APP_PORT))

    @property
    def hosts(self) -> list[str]:
        if "hosts" in self.raw:
            return list(self.raw["hosts"])
        host = self.raw.get("host")
        return [h.strip() for h in host.split(",")] if host else []

    @property
    def ssl(self) -> bool:
        return bool(self.raw.get("ssl", False))

    @property
    def custom_ssl_certificate(self) -> bool:
        return isinstance(self.raw.get("ssl"), dict)

    @property
    def path_prefixes(self) -> list[str]:
        if "path_prefixes" in self.raw:
            return list(self.raw["path_prefixes"])
        prefix = self.raw.get("path_prefix")
        return [p.strip() for p in prefix.split(",")] if prefix else []

    @property
    def healthcheck_path(self) -> str:
        return str(self.raw.get("healthcheck", {}).get("path", defaults.HEALTHCHECK_PATH))

    def _duration(self, value: Any) -> str | None:
        return seconds_duration(None if value is None else schema.parse_duration(value))

    def deploy_options(self, version: str | None = None) -> dict[str, Any]:
        hc = self.raw.get("healthcheck") or {}
        buffering = self.raw.get("buffering") or {}
        logging = self.raw.get("logging") or {}
        cert = key = None
        if self.custom_ssl_certificate and self.tls_directory:
            cert, key = f"{self.tls_directory}/cert.pem", f"{self.tls_directory}/key.pem"
        options: dict[str, Any] = {
            "host": self.hosts,
            "tls": True if self.ssl else None,
            "tls-certificate-path": cert,
            "tls-private-key-path": key,
            "deploy-timeout": seconds_duration(self.deploy_timeout),
            "drain-timeout": seconds_duration(self.drain_timeout),
            "health-check-interval": self._duration(hc.get("interval")),
            "health-check-timeout": self._duration(hc.get("timeout")),
            "health-check-path": hc.get("path"),
            "target-timeout": self._duration(self.raw.get("response_timeout")),
            "buffer-requests": buffering.get("requests", True),
            "buffer-responses": buffering.get("responses", True),
            "buffer-memory": buffering.get("memory"),
            "max-request-body": buffering.get("max_request_body"),
            "max-response-body": buffering.get("max_response_body"),
            "path-prefix": self.path_prefixes,
            "strip-path-prefix": self.raw.get("strip_path_prefix"),
            "forward-headers": self.raw.get("forward_headers"),
            "tls-redirect": self.raw.get("ssl_redirect"),
            "log-request-header": logging.get("request_headers") or list(defaults.LOG_REQUEST_HEADERS),
            "log-response-header": logging.get("response_headers"),
            "error-pages": f"{self.error_pages_directory}/{version}"
            if self.error_pages_directory and version
            else None,
        }
        return {k: v for k, v in options.items() if v is not None and v != []}

    def deploy_command_args(self, target: str, version: str | None = None) -> list[str]:
        return optionize({"target": f"{target}:{self.app_port}", **self.deploy_options(version)}, with_="=")


@dataclass
class ProxyRun:
    """``proxy.run``: how the proxy container is booted (must agree across apps on a host)."""

    raw: dict[str, Any] | None

    def get(self, key: str, default: Any = None) -> Any:
        return (self.raw or {}).get(key, default)

    @property
    def image(self) -> str:
        repo = self.get("repository", defaults.PROXY_DEFAULT_REPOSITORY)
        registry = self.get("registry")
        return f"{registry + '/' if registry else ''}{repo}:{self.get('version', defaults.PROXY_MINIMUM_VERSION)}"


@dataclass(kw_only=True)
class Role:
    name: str
    hosts: list[str]
    host_tags: dict[str, list[str]]
    cmd: str | None
    options: dict[str, Any]
    labels: dict[str, str]
    env: EnvSpec
    logging: Logging
    proxy: ProxyConfig | None
    stop_timeout: int | None
    primary: bool
    container_prefix: str  # SERVICE-ROLE[-DEST]

    @property
    def running_proxy(self) -> bool:
        return self.proxy is not None

    def container_name(self, version: str) -> str:
        return f"{self.container_prefix}-{version}"

    def env_for_host(self, host: str) -> EnvSpec:
        env = self.env
        for tag in self.host_tags.get(host, []):
            if tag in env.tags:
                env = env.merge(env.tags[tag])
        return env

    @property
    def restart_policy(self) -> str:
        return to_s(self.options.get("restart", defaults.RESTART_POLICY))

    @property
    def docker_options(self) -> dict[str, Any]:
        return {k: v for k, v in self.options.items() if k != "restart"}


@dataclass
class SshConfig:
    user: str = defaults.SSH_USER
    port: int = defaults.SSH_PORT
    proxy: str | None = None
    proxy_command: str | None = None
    keys: list[str] = field(default_factory=list)
    keys_only: bool = False
    config: bool | str | list[str] = True
    forward_agent: bool = False
    log_level: str | None = None
    max_concurrent_starts: int = defaults.MAX_CONCURRENT_STARTS

    @property
    def jump_host(self) -> str | None:
        if not self.proxy:
            return None
        return self.proxy if "@" in self.proxy else f"root@{self.proxy}"


@dataclass
class Boot:
    limit: int | str | None = None
    wait: int = 0
    parallel_roles: bool = False

    def group_size(self, total_hosts: int, all_hosts_count: int) -> int:
        if self.limit is None:
            return max(total_hosts, 1)
        if isinstance(self.limit, str):
            return max(all_hosts_count * int(self.limit.rstrip("%")) // 100, 1)
        return self.limit


@dataclass
class Builder:
    arch: list[str]
    dockerfile: str = defaults.DOCKERFILE
    context: str | None = None  # None = git clone of HEAD
    args: dict[str, str] = field(default_factory=dict)
    secrets: list[str] = field(default_factory=list)
    target: str | None = None
    driver: str = defaults.BUILDER_DRIVER
    remote: str | None = None
    local: bool = True
    ssh: str | None = None
    cache: dict[str, Any] = field(default_factory=dict)
    provenance: str | bool | None = None
    sbom: str | bool | None = None

    @property
    def docker_driver(self) -> bool:
        return self.driver == "docker"

    @property
    def builder_name(self) -> str:
        return f"kamal-local-{self.driver}"


@dataclass(frozen=True, kw_only=True)
class AccessoryDirectory:
    """One of an accessory's ``directories``: ``local:remote[:options]`` or the map form."""

    local: str
    remote: str
    options: str | None = None
    mode: str | None = None
    owner: str | None = None

    @classmethod
    def parse(cls, entry: str | dict[str, Any]) -> AccessoryDirectory:
        if isinstance(entry, dict):
            return cls(
                local=to_s(entry.get("local")),
                remote=to_s(entry.get("remote")),
                options=entry.get("options"),
                mode=entry.get("mode"),
                owner=entry.get("owner"),
            )
        local, _, rest = entry.partition(":")
        remote, _, options = rest.partition(":")
        return cls(local=local, remote=remote, options=options or None)


@dataclass
class Accessory:
    name: str
    service_name: str
    image: str
    hosts: list[str]
    cmd: str | None
    port: str | None
    labels: dict[str, str]
    options: dict[str, Any]
    env: EnvSpec
    directories: list[AccessoryDirectory]
    volumes: list[str]
    files: list[Any]
    network: str
    registry: Registry | None
    proxy: ProxyConfig | None


@dataclass
class Config:
    """The validated, merged configuration for one destination."""

    raw: dict[str, Any]
    source: str
    destination: str | None
    service: str
    image: str
    registry: Registry
    roles: list[Role]
    primary_role: Role
    env: EnvSpec
    labels: dict[str, str]
    volumes: list[str]
    logging: Logging
    proxy_run: ProxyRun
    ssh: SshConfig
    boot: Boot
    builder: Builder
    accessories: dict[str, Accessory]
    secrets: Secrets
    deploy_timeout: int = defaults.DEPLOY_TIMEOUT
    drain_timeout: int = defaults.DRAIN_TIMEOUT
    readiness_delay: int = defaults.READINESS_DELAY
    retain_containers: int = defaults.RETAIN_CONTAINERS
    stop_timeout: int | None = None
    error_pages_path: str | None = None
    hooks_path: str = defaults.HOOKS_PATH
    legacy_hooks: dict[str, list[str]] = field(default_factory=dict)
    proxy_runs: dict[str, ProxyRun] = field(default_factory=dict)  # per server, when not the default
    aliases: dict[str, str] = field(default_factory=dict)
    asset_path: str | None = None
    run_directory: str = defaults.RUN_DIRECTORY
    version: str | None = None

    # -- names -------------------------------------------------------------------------------------
    @property
    def service_and_destination(self) -> str:
        return f"{self.service}-{self.destination}" if self.destination else self.service

    @property
    def repository(self) -> str:
        if self.registry.server and not self.image.startswith(f"{self.registry.server}/"):
            return f"{self.registry.server}/{self.image}"
        return self.image

    @property
    def latest_tag(self) -> str:
        return f"latest-{self.destination}" if self.destination else "latest"

    @property
    def absolute_image(self) -> str:
        return f"{self.repository}:{self.require_version()}"

    @property
    def latest_image(self) -> str:
        return f"{self.repository}:{self.latest_tag}"

    def for_version(self, version: str) -> Config:
        """This configuration for one release: a copy with ``version`` set (the original is unchanged)."""
        return dataclasses.replace(self, version=version)

    def check_secrets(self) -> None:
        """Raise if a secret the configuration references is in no secrets file (before any SSH)."""
        missing = [name for name in self.referenced_secrets() if not self.secrets.declares(name)]
        if missing:
            raise SecretError(
                f"{self.source}: secret{'s' if len(missing) > 1 else ''} {', '.join(missing)} "
                f"referenced by the configuration but not found in {self.secrets.describe()} "
                f"(add a line `{missing[0]}=...` to {display_path(self.secrets.files[-1])})"
            )

    def referenced_secrets(self) -> list[str]:
        """Every secret name the configuration reads: env (roles, tags, accessories), registry, builder, TLS."""
        names: list[str] = []
        envs = [self.env, *(r.env for r in self.roles), *(a.env for a in self.accessories.values())]
        for env in envs:
            names += env.secret_names()
        for registry in [self.registry, *(a.registry for a in self.accessories.values() if a.registry)]:
            for credential in (registry.username, registry.password):
                if isinstance(credential, list):
                    names += credential
        names += self.builder.secrets
        for role in self.roles:
            if role.proxy and role.proxy.custom_ssl_certificate:
                ssl = role.proxy.raw["ssl"]
                names += [ssl["certificate_pem"], ssl["private_key_pem"]]
        return list(dict.fromkeys(names))

    def proxy_run_for(self, host: str) -> ProxyRun:
        """How the proxy is booted on ``host`` (Kamal's ``proxy_run(host)``; none = the boot files)."""
        return self.proxy_runs.get(host, ProxyRun(None))

    def hooks_output_for(self, hook: str) -> str | None:
        """``hooks_output`` for ``hook``: "quiet", "verbose" or None (Kamal's hooks_output_for)."""
        value = self.raw.get("hooks_output")
        if isinstance(value, dict):
            value = value.get(hook)
        return str(value).lstrip(":") if value is not None else None

    def require_version(self) -> str:
        if not self.version:
            raise ConfigError("no version set (pass --version or run inside a git checkout)")
        return self.version

    @property
    def apps_directory(self) -> str:
        return f"{self.run_directory}/apps/{self.service_and_destination}"

    @property
    def env_directory(self) -> str:
        return f"{self.apps_directory}/env"

    def role_env_file(self, role: Role) -> str:
        return f"{self.env_directory}/roles/{role.name}.env"

    def accessory_env_file(self, accessory: Accessory) -> str:
        return f"{self.env_directory}/accessories/{accessory.name}.env"

    @property
    def proxy_apps_config_directory(self) -> str:
        return f"{self.run_directory}/proxy/apps-config/{self.service_and_destination}"

    @property
    def lock_directory(self) -> str:
        return f"{self.run_directory}/lock-{self.service_and_destination}"

    @property
    def audit_log_file(self) -> str:
        return f"{self.run_directory}/{self.service_and_destination}-audit.log"

    # -- hosts -------------------------------------------------------------------------------------
    def role(self, name: str) -> Role:
        for role in self.roles:
            if role.name == name:
                return role
        raise ConfigError(
            f"{self.source}: servers/{name}: no such role (roles: {', '.join(r.name for r in self.roles)})"
        )

    @property
    def all_hosts(self) -> list[str]:
        """App hosts (primary role's hosts first) followed by accessory-only hosts."""
        hosts = list(self.app_hosts)
        for acc in self.accessories.values():
            hosts += [h for h in acc.hosts if h not in hosts]
        return hosts

    @property
    def app_hosts(self) -> list[str]:
        hosts: list[str] = []
        for role in self.roles:
            hosts += [h for h in role.hosts if h not in hosts]
        return hosts

    @property
    def primary_host(self) -> str:
        if not self.primary_role.hosts:
            raise ConfigError(
                f"{self.source}: servers/{self.primary_role.name}: the primary role has no hosts"
            )
        return self.primary_role.hosts[0]

    @property
    def proxy_hosts(self) -> list[str]:
        hosts: list[str] = []
        for role in self.roles:
            if role.running_proxy:
                hosts += [h for h in role.hosts if h not in hosts]
        return hosts

    def roles_on(self, host: str) -> list[Role]:
        return [r for r in self.roles if host in r.hosts]

    def boot_groups(self, hosts: list[str]) -> list[list[str]]:
        size = self.boot.group_size(len(hosts), len(self.all_hosts))
        return [hosts[i : i + size] for i in range(0, len(hosts), size)]

    # -- secrets -----------------------------------------------------------------------------------
    def resolve_credential(self, value: str | list[str] | None) -> str | None:
        if isinstance(value, list):
            if len(value) != 1:
                raise ConfigError(f"{self.source}: registry: a credential list must name exactly one secret")
            return self.secrets[value[0]]
        return value

    def secret_env_content(self, env: EnvSpec) -> str:
        """The role env file: ``NAME=value`` lines, escaped for docker's --env-file syntax."""
        lines = []
        for s in env.secrets:
            value = self.secrets[s.secret]
            lines.append(f"{s.name}={_escape_env_file_value(value)}")
        return "\n".join(lines) + "\n"

    def to_redacted_dict(self) -> dict[str, Any]:
        """The merged config for ``deployer config`` (secret values never appear in it)."""
        return {
            "service": self.service,
            "image": self.image,
            "repository": self.repository,
            "destination": self.destination,
            "version": self.version,
            "absolute_image": self.absolute_image if self.version else None,
            "primary_role": self.primary_role.name,
            "roles": [r.name for r in self.roles],
            "hosts": self.all_hosts,
            "primary_host": self.primary_host if self.primary_role.hosts else None,
            "servers": {
                r.name: {
                    "hosts": r.hosts,
                    "proxy": bool(r.proxy),
                    "cmd": r.cmd,
                    "container_prefix": r.container_prefix,
                    "env": {"clear": r.env.clear, "secret": [s.name for s in r.env.secrets]},
                }
                for r in self.roles
            },
            "registry": {
                "server": self.registry.server,
                "username": "[REDACTED]"
                if isinstance(self.registry.username, list)
                else self.registry.username,
                "password": "[REDACTED]" if self.registry.password is not None else None,
            },
            "proxy": {r.name: r.proxy.deploy_options() for r in self.roles if r.proxy},
            "proxy_image": self.proxy_run.image,
            "builder": {
                "arch": self.builder.arch,
                "remote": self.builder.remote,
                "local": self.builder.local,
            },
            "boot": {"limit": self.boot.limit, "wait": self.boot.wait},
            "deploy_timeout": self.deploy_timeout,
            "drain_timeout": self.drain_timeout,
            "retain_containers": self.retain_containers,
            "accessories": sorted(self.accessories),
            "ssh": {
                "user": self.ssh.user,
                "port": self.ssh.port,
                "proxy": self.ssh.proxy,
                "keys": self.ssh.keys,
            },
            "aliases": self.aliases,
        }


def _escape_env_file_value(value: str) -> str:
    # docker --env-file takes the rest of the line verbatim; newlines cannot be represented.
    return value.replace("\n", "\\n")


# --------------------------------------------------------------------------------------------------
# Building the Config


def _hosts_and_tags(entries: list[Any]) -> tuple[list[str], dict[str, list[str]]]:
    hosts: list[str] = []
    tags: dict[str, list[str]] = {}
    for entry in entries or []:
        if isinstance(entry, dict):
            for host, tag in entry.items():
                hosts.append(str(host))
                tags[str(host)] = [tag] if isinstance(tag, str) else list(tag)
        else:
            hosts.append(str(entry))
    return hosts, tags


def _apply_legacy(raw: dict[str, Any], source: str) -> dict[str, Any]:
    """Map guide-only keys onto Kamal 2 ones (deployer.md §0), warning about each."""
    raw = copy.deepcopy(raw)
    proxy = raw.setdefault("proxy", {}) if ("healthcheck" in raw or "proxy" in raw) else None
    if "healthcheck" in raw:
        legacy = raw.pop("healthcheck")
        warn(
            f"{source}: healthcheck: is a Kamal 1 key; "
            "use proxy.healthcheck and deploy_timeout (mapped for now)"
        )
        assert proxy is not None
        hc = proxy.setdefault("healthcheck", {})
        if "path" in legacy:
            hc.setdefault("path", legacy["path"])
        if "interval" in legacy:
            hc.setdefault("interval", legacy["interval"])
        if "timeout" in legacy:
            hc.setdefault("timeout", legacy["timeout"])
        if "port" in legacy:
            proxy.setdefault("app_port", legacy["port"])
        if "max_attempts" in legacy and "max_attempts" not in hc:
            hc["max_attempts"] = legacy["max_attempts"]
        if "cord" in legacy:
            warn(f"{source}: healthcheck/cord: ignored (Kamal 2 has no cord; the proxy drains instead)")
        if not hc:
            proxy.pop("healthcheck")
        if not proxy:
            raw.pop("proxy")
    for where, section in _proxy_sections(raw):
        hc = section.get("healthcheck")
        if isinstance(hc, dict) and "max_attempts" in hc:
            attempts = hc.pop("max_attempts")
            interval = schema.parse_duration(hc.get("interval", 1))
            if "deploy_timeout" not in raw:
                raw["deploy_timeout"] = max(attempts * interval, 1)
                warn(
                    f"{source}: {where}/healthcheck/max_attempts: not a Kamal 2 key; mapped to "
                    f"deploy_timeout: {raw['deploy_timeout']} (max_attempts x interval)"
                )
            else:
                warn(f"{source}: {where}/healthcheck/max_attempts: ignored because deploy_timeout is set")
    return raw


def _proxy_sections(raw: dict[str, Any]) -> list[tuple[str, dict[str, Any]]]:
    out: list[tuple[str, dict[str, Any]]] = []
    if isinstance(raw.get("proxy"), dict):
        out.append(("proxy", raw["proxy"]))
    servers = raw.get("servers")
    if isinstance(servers, dict):
        for name, spec in servers.items():
            if isinstance(spec, dict) and isinstance(spec.get("proxy"), dict):
                out.append((f"servers/{name}/proxy", spec["proxy"]))
    for name, acc in (raw.get("accessories") or {}).items():
        if isinstance(acc, dict) and isinstance(acc.get("proxy"), dict):
            out.append((f"accessories/{name}/proxy", acc["proxy"]))
    return out


def _legacy_hooks(raw: dict[str, Any], source: str) -> dict[str, list[str]]:
    hooks = raw.get("hooks")
    if not hooks:
        return {}
    warn(
        f"{source}: hooks: is not a Kamal key; "
        "put executables in .kamal/hooks/<name> instead (honoured for now)"
    )
    out: dict[str, list[str]] = {}
    for name, entries in hooks.items():
        if str(name).startswith("x-"):
            continue
        if name not in defaults.HOOK_NAMES:
            raise ConfigError(
                f"{source}: hooks/{name}: unknown hook (known: {', '.join(defaults.HOOK_NAMES)})"
            )
        items = [entries] if isinstance(entries, str) else entries
        out[str(name)] = [e if isinstance(e, str) else e["path"] for e in items]
    return out


def build_config(
    raw: dict[str, Any],
    source: str,
    destination: str | None = None,
    version: str | None = None,
    root: Path | None = None,
) -> Config:
    """Validate semantics of a merged raw config and derive the :class:`Config`."""
    schema.ROOT.check(raw, "", source)
    legacy_hooks = _legacy_hooks(raw, source)
    raw = _apply_legacy(raw, source)
    schema.ROOT.check(raw, "", source)
    validation.validate_raw(raw, source, root)

    if "service" not in raw:
        raise ConfigError(f"{source}: service: required key is missing")
    service = raw["service"]
    if raw.get("require_destination") and not destination:
        raise ConfigError(f"{source}: require_destination: is true, so pass -d DESTINATION")
    registry = _build_registry(raw, source)
    if "image" not in raw and not registry.local:
        raise ConfigError(f"{source}: image: required key is missing")
    naming = _Naming(
        service=service,
        dest_suffix=f"-{destination}" if destination else "",
        deploy_timeout=int(raw.get("deploy_timeout", defaults.DEPLOY_TIMEOUT)),
        drain_timeout=int(raw.get("drain_timeout", defaults.DRAIN_TIMEOUT)),
        error_pages=bool(raw.get("error_pages_path")),
    )
    roles, primary = _build_roles(raw, source, naming)
    accessories = _build_accessories(raw, source, roles, naming)
    proxy_runs = _proxy_runs(raw, source, roles, accessories)
    root_logging = raw.get("logging") or {}
    return Config(
        raw=raw,
        source=source,
        destination=destination,
        service=service,
        image=raw.get("image", service),
        registry=registry,
        roles=roles,
        primary_role=primary,
        env=EnvSpec.parse(raw.get("env")),
        labels={str(k): to_s(v) for k, v in (raw.get("labels") or {}).items()},
        volumes=list(raw.get("volumes") or []),
        logging=_logging(root_logging),
        proxy_run=ProxyRun((raw.get("proxy") or {}).get("run")),
        proxy_runs=proxy_runs,
        ssh=_build_ssh(raw, source),
        boot=_build_boot(raw.get("boot") or {}),
        builder=_build_builder(raw.get("builder") or {}),
        accessories=accessories,
        secrets=Secrets(raw.get("secrets_path", defaults.SECRETS_PATH), destination, root=root),
        deploy_timeout=naming.deploy_timeout,
        drain_timeout=naming.drain_timeout,
        readiness_delay=int(raw.get("readiness_delay", defaults.READINESS_DELAY)),
        retain_containers=int(raw.get("retain_containers", defaults.RETAIN_CONTAINERS)),
        stop_timeout=raw.get("stop_timeout"),
        error_pages_path=raw.get("error_pages_path"),
        hooks_path=raw.get("hooks_path", defaults.HOOKS_PATH),
        legacy_hooks=legacy_hooks,
        aliases=_aliases(raw, source),
        asset_path=raw.get("asset_path"),
        version=version,
    )


@dataclass(frozen=True, kw_only=True)
class _Naming:
    """What every role and accessory derives its names and proxy timeouts from."""

    service: str
    dest_suffix: str
    deploy_timeout: int
    drain_timeout: int
    error_pages: bool

    def prefix(self, role: str) -> str:
        return f"{self.service}-{role}{self.dest_suffix}"

    @property
    def apps_config(self) -> str:
        return f"{defaults.PROXY_CONTAINER_APPS_CONFIG}/{self.service}{self.dest_suffix}"


def _proxy_runs(
    raw: dict[str, Any], source: str, roles: list[Role], accessories: dict[str, Accessory]
) -> dict[str, ProxyRun]:
    """How the proxy is booted on each server: the ``run`` of the proxied roles there (the root
    ``proxy.run`` deep-merged with the role's) or of its proxied accessories. Kamal's checks: SSL host
    names unique across roles; one way to boot the proxy per server."""
    validation.unique_ssl_hosts({r.name: r.proxy.hosts for r in roles if r.proxy and r.proxy.ssl}, source)
    root_run = (raw.get("proxy") or {}).get("run")
    servers = raw.get("servers")
    runs: dict[str, list[tuple[str, Any]]] = {}
    for role in roles:
        spec = servers.get(role.name) if isinstance(servers, dict) else None
        role_proxy = spec.get("proxy") if isinstance(spec, dict) else None
        role_run = role_proxy.get("run") if isinstance(role_proxy, dict) else None
        if role.proxy and (root_run or role_run):
            path = f"servers/{role.name}/proxy" if role_run else "proxy"
            for host in role.hosts:
                runs.setdefault(host, []).append((path, deep_merge(root_run or {}, role_run or {})))
    for acc in accessories.values():
        acc_run = (raw["accessories"][acc.name].get("proxy") or {}).get("run")
        if acc_run:
            for host in acc.hosts:
                runs.setdefault(host, []).append((f"accessories/{acc.name}/proxy", acc_run))
    validation.no_conflicting_proxy_runs(runs, source)
    return {host: ProxyRun(entries[0][1]) for host, entries in runs.items()}


def _build_registry(raw: dict[str, Any], source: str) -> Registry:
    reg_raw = raw.get("registry")
    if reg_raw is None:
        raise ConfigError(
            f"{source}: registry: required key is missing (use `server: localhost:5555` for a local one)"
        )
    registry = Registry(reg_raw.get("server"), reg_raw.get("username"), reg_raw.get("password"))
    if not registry.local:
        for key in ("username", "password"):
            if key not in reg_raw:
                raise ConfigError(
                    f"{source}: registry/{key}: is required (unless the registry is local: server localhost:PORT)"
                )
    return registry


def _logging(raw: dict[str, Any]) -> Logging:
    return Logging(raw.get("driver"), {k: to_s(v) for k, v in (raw.get("options") or {}).items()})


def _role_specs(raw: dict[str, Any], source: str) -> dict[str, dict[str, Any]]:
    servers = raw.get("servers")
    if servers is None and not raw.get("accessories"):
        raise ConfigError(f"{source}: servers: required key is missing (list hosts, or a map of roles)")
    if isinstance(servers, list):
        return {defaults.PRIMARY_ROLE: {"hosts": servers}}
    specs: dict[str, dict[str, Any]] = {}
    for name, spec in (servers or {}).items():
        if not str(name).startswith("x-"):
            specs[str(name)] = {"hosts": spec} if isinstance(spec, list) else (spec or {"hosts": []})
    return specs


def _build_roles(raw: dict[str, Any], source: str, naming: _Naming) -> tuple[list[Role], Role]:
    role_specs = _role_specs(raw, source)
    primary_name = raw.get("primary_role", defaults.PRIMARY_ROLE)
    if role_specs and primary_name not in role_specs:
        raise ConfigError(
            f"{source}: primary_role: The primary_role {primary_name} isn't defined "
            f"(roles under servers: {', '.join(role_specs)})"
        )
    # Kamal's order: roles sorted by name (Kamal::Configuration::Servers); the workflows boot the
    # primary role first (Kamal::Commander::Specifics), the configuration does not move it.
    roles = [
        _build_role(raw, name, role_specs[name], primary=name == primary_name, source=source, naming=naming)
        for name in sorted(role_specs)
    ]
    primary = next((r for r in roles if r.primary), None)
    if primary is not None and not primary.hosts:
        raise ConfigError(
            f"{source}: servers/{primary.name}: No servers specified for the {primary.name} primary_role"
        )
    for role in roles:
        if not role.hosts and not raw.get("allow_empty_roles"):
            raise ConfigError(
                f"{source}: servers/{role.name}: No servers specified for the {role.name} role. "
                "You can ignore this with allow_empty_roles: true"
            )
    if primary is None:
        primary = Role(
            name=primary_name,
            hosts=[],
            host_tags={},
            cmd=None,
            options={},
            labels={},
            env=EnvSpec.parse(raw.get("env")),
            logging=Logging(),
            proxy=None,
            stop_timeout=None,
            primary=True,
            container_prefix=naming.prefix(primary_name),
        )
    return roles, primary


def _build_role(
    raw: dict[str, Any], name: str, spec: dict[str, Any], *, primary: bool, source: str, naming: _Naming
) -> Role:
    hosts, tags = _hosts_and_tags(spec.get("hosts") or [])
    if len(set(hosts)) != len(hosts):
        raise ConfigError(f"{source}: servers/{name}/hosts: duplicate host")
    where = f"{source}: servers/{name}/proxy" if isinstance(raw.get("servers"), dict) else f"{source}: proxy"
    # Kamal: the primary role runs the proxy unless `proxy: false`; another role when `proxy:` is
    # given and not false (an empty map counts, as any map is true in Ruby).
    proxy_setting = spec.get("proxy")
    running = proxy_setting is not False if primary else proxy_setting not in (None, False)
    proxy: ProxyConfig | None = None
    if running:
        proxy_raw = deep_merge(
            raw.get("proxy") or {}, proxy_setting if isinstance(proxy_setting, dict) else {}
        )
        proxy_raw.pop("run", None)
        proxy = ProxyConfig(
            raw=proxy_raw,
            service_name=naming.prefix(name),
            deploy_timeout=naming.deploy_timeout,
            drain_timeout=naming.drain_timeout,
            tls_directory=f"{naming.apps_config}/tls/{name}",
            error_pages_directory=f"{naming.apps_config}/error_pages" if naming.error_pages else None,
        )
        _validate_proxy(proxy, name, hosts, where)
    return Role(
        name=name,
        hosts=hosts,
        host_tags=tags,
        cmd=spec.get("cmd"),
        options=dict(spec.get("options") or {}),
        labels={str(k): to_s(v) for k, v in (spec.get("labels") or {}).items()},
        env=EnvSpec.parse(raw.get("env")).merge(EnvSpec.parse(spec.get("env"))),
        logging=_logging(deep_merge(raw.get("logging") or {}, spec.get("logging") or {})),
        proxy=proxy,
        stop_timeout=spec.get("stop_timeout", raw.get("stop_timeout")),
        primary=primary,
        container_prefix=naming.prefix(name),
    )


def _build_ssh(raw: dict[str, Any], source: str) -> SshConfig:
    ssh_raw = raw.get("ssh") or {}
    if ssh_raw.get("key_data"):
        warn(f"{source}: ssh/key_data: not supported with the OpenSSH client; load the keys into ssh-agent")
    return SshConfig(
        user=ssh_raw.get("user", defaults.SSH_USER),
        port=int(ssh_raw.get("port", defaults.SSH_PORT)),
        proxy=ssh_raw.get("proxy"),
        proxy_command=ssh_raw.get("proxy_command"),
        keys=list(ssh_raw.get("keys") or []),
        keys_only=bool(ssh_raw.get("keys_only", False)),
        config=ssh_raw.get("config", True),
        forward_agent=bool(ssh_raw.get("forward_agent", False)),
        log_level=ssh_raw.get("log_level"),
        max_concurrent_starts=int(
            (raw.get("sshkit") or {}).get("max_concurrent_starts", defaults.MAX_CONCURRENT_STARTS)
        ),
    )


def _build_boot(b: dict[str, Any]) -> Boot:
    return Boot(b.get("limit"), int(b.get("wait", 0)), bool(b.get("parallel_roles", False)))


def _build_builder(b: dict[str, Any]) -> Builder:
    arch = b.get("arch", list(defaults.BUILDER_ARCH))
    return Builder(
        arch=[arch] if isinstance(arch, str) else list(arch),
        dockerfile=b.get("dockerfile", defaults.DOCKERFILE),
        context=b.get("context"),
        args={str(k): to_s(v) for k, v in (b.get("args") or {}).items()},
        secrets=list(b.get("secrets") or []),
        target=b.get("target"),
        driver=b.get("driver", defaults.BUILDER_DRIVER),
        remote=b.get("remote"),
        local=b.get("local", True),
        ssh=b.get("ssh"),
        cache=dict(b.get("cache") or {}),
        provenance=b.get("provenance"),
        sbom=b.get("sbom"),
    )


def _build_accessories(
    raw: dict[str, Any], source: str, roles: list[Role], naming: _Naming
) -> dict[str, Accessory]:
    return {
        name: _build_accessory(
            name, acc, naming.service, roles, source, naming.deploy_timeout, naming.drain_timeout
        )
        for name, acc in (raw.get("accessories") or {}).items()
        if not str(name).startswith("x-")
    }


def _aliases(raw: dict[str, Any], source: str) -> dict[str, str]:
    aliases = dict(raw.get("aliases") or {})
    for alias in aliases:
        if alias in RESERVED_ALIASES:
            raise ConfigError(f"{source}: aliases/{alias}: conflicts with the built-in command {alias!r}")
    return aliases


def _validate_proxy(proxy: ProxyConfig, role: str, hosts: list[str], where: str) -> None:
    if proxy.ssl and not proxy.hosts:
        raise ConfigError(f"{where}: Must set a host to enable automatic SSL")
    if proxy.ssl and not proxy.custom_ssl_certificate and len(hosts) > 1:
        raise ConfigError(
            f"{where}/ssl: SSL is only supported on a single server unless you provide custom "
            f"certificates, found {len(hosts)} servers for role {role} (automatic TLS is Let's Encrypt "
            "on each server; use custom certificates or terminate TLS in a load balancer)"
        )


def _build_accessory(
    name: str,
    acc: dict[str, Any],
    service: str,
    roles: list[Role],
    source: str,
    deploy_timeout: int,
    drain_timeout: int,
) -> Accessory:
    where = f"{source}: accessories/{name}"
    hosts: list[str] = []
    if "host" in acc:
        hosts.append(acc["host"])
    hosts += list(acc.get("hosts") or [])
    role_names = ([acc["role"]] if "role" in acc else []) + list(acc.get("roles") or [])
    for rn in role_names:
        matching = [r for r in roles if r.name == rn]
        if not matching:
            raise ConfigError(f"{where}/roles: no such role {rn!r}")
        hosts += [h for h in matching[0].hosts if h not in hosts]
    tag_names = ([acc["tag"]] if "tag" in acc else []) + list(acc.get("tags") or [])
    for tag in tag_names:
        for role in roles:
            hosts += [h for h, tags in role.host_tags.items() if tag in tags and h not in hosts]
    if not hosts:
        raise ConfigError(f"{where}: no hosts (set host, hosts, role, roles, tag or tags)")
    registry = None
    image = acc["image"]
    if "registry" in acc:
        r = acc["registry"]
        registry = Registry(r.get("server"), r.get("username"), r.get("password"))
        if registry.server and not image.startswith(f"{registry.server}/"):
            image = f"{registry.server}/{image}"
    port = acc.get("port")
    port_s = None
    if port is not None:
        port_s = str(port) if ":" in str(port) else f"{port}:{port}"
    svc = acc.get("service", f"{service}-{name}")
    proxy = None
    if "proxy" in acc:
        proxy = ProxyConfig(acc["proxy"], svc, deploy_timeout, drain_timeout)
    return Accessory(
        name=name,
        service_name=svc,
        image=image,
        hosts=hosts,
        cmd=acc.get("cmd"),
        port=port_s,
        labels={str(k): to_s(v) for k, v in (acc.get("labels") or {}).items()},
        options=dict(acc.get("options") or {}),
        env=EnvSpec.parse(acc.get("env")),
        directories=[AccessoryDirectory.parse(d) for d in acc.get("directories") or []],
        volumes=list(acc.get("volumes") or []),
        files=list(acc.get("files") or []),
        network=acc.get("network", defaults.NETWORK),
        registry=registry,
        proxy=proxy,
    )


def load_config(
    path: str | Path = "config/deploy.yml",
    destination: str | None = None,
    version: str | None = None,
    root: Path | None = None,
) -> Config:
    """Load ``path`` (merging the destination), validate it and derive the :class:`Config`."""
    p = Path(path)
    if root is not None and not p.is_absolute():
        p = root / p
    raw, source = load_raw(p, destination)
    return build_config(raw, source, destination, version, root=root)


def registry_credentials(config: Config, registry: Registry | None = None) -> tuple[str, str]:
    """Resolve (username, password), reading secrets when they are given as one-element lists."""
    reg = registry or config.registry
    user = config.resolve_credential(reg.username)
    password = config.resolve_credential(reg.password)
    if user is None or password is None:
        raise ConfigError(f"{config.source}: registry: username and password are required for docker login")
    return user, password
