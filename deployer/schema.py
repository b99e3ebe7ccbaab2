"""A small declarative schema for deploy.yml, used to validate types and reject unknown keys.

Every error names the file, the key path (``servers/web/hosts/0``) and what was expected.
Keys starting with ``x-`` are ignored everywhere (YAML anchors live there), as in Kamal.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from deployer.errors import ConfigError


def _show(value: Any) -> str:
    if isinstance(value, dict):
        return "a map"
    if isinstance(value, list):
        return "a list"
    if value is None:
        return "nothing (null)"
    text = repr(value)
    return text if len(text) < 60 else text[:57] + "..."


class Type:
    expected = "a value"

    def check(self, value: Any, path: str, file: str) -> None:
        raise NotImplementedError

    def fail(self, value: Any, path: str, file: str, expected: str | None = None) -> ConfigError:
        return ConfigError(
            f"{file}: {path or '(root)'}: expected {expected or self.expected}, got {_show(value)}"
        )


class Str(Type):
    def __init__(self, pattern: str | None = None, expected: str = "a string") -> None:
        self.pattern = re.compile(pattern) if pattern else None
        self.expected = expected

    def check(self, value: Any, path: str, file: str) -> None:
        if not isinstance(value, str) or (self.pattern and not self.pattern.fullmatch(value)):
            raise self.fail(value, path, file)


class Int(Type):
    def __init__(self, minimum: int | None = None) -> None:
        self.minimum = minimum
        self.expected = "an integer" + (f" >= {minimum}" if minimum is not None else "")

    def check(self, value: Any, path: str, file: str) -> None:
        if isinstance(value, bool) or not isinstance(value, int):
            raise self.fail(value, path, file)
        if self.minimum is not None and value < self.minimum:
            raise self.fail(value, path, file)


class Bool(Type):
    expected = "true or false"

    def check(self, value: Any, path: str, file: str) -> None:
        if not isinstance(value, bool):
            raise self.fail(value, path, file)


class Scalar(Type):
    expected = "a string, number or boolean"

    def check(self, value: Any, path: str, file: str) -> None:
        if not isinstance(value, str | int | float | bool):
            raise self.fail(value, path, file)


class AnyValue(Type):
    def check(self, value: Any, path: str, file: str) -> None:
        return None


DURATION = re.compile(r"^(\d+)\s*(s|m|h)?$")


def parse_duration(value: Any) -> int:
    """Seconds from ``10`` or ``"10s"``/``"2m"``/``"1h"`` (the guide writes ``10s``; Kamal wants integers)."""
    if isinstance(value, int) and not isinstance(value, bool):
        return value
    m = DURATION.match(str(value).strip())
    if not m:
        raise ValueError(value)
    return int(m.group(1)) * {"s": 1, "m": 60, "h": 3600, None: 1}[m.group(2)]


class Duration(Type):
    expected = 'a number of seconds (e.g. 10 or "10s")'

    def check(self, value: Any, path: str, file: str) -> None:
        if isinstance(value, bool):
            raise self.fail(value, path, file)
        try:
            parse_duration(value)
        except ValueError:
            raise self.fail(value, path, file) from None


class ListOf(Type):
    def __init__(self, item: Type) -> None:
        self.item = item
        self.expected = f"a list of {item.expected.removeprefix('a ').removeprefix('an ')}s"

    def check(self, value: Any, path: str, file: str) -> None:
        if not isinstance(value, list):
            raise self.fail(value, path, file)
        for i, v in enumerate(value):
            self.item.check(v, f"{path}/{i}", file)


class MapOf(Type):
    """A map with free-form keys (env vars, labels, options)."""

    def __init__(self, value: Type, key_pattern: str | None = None, key_expected: str = "") -> None:
        self.value = value
        self.key_pattern = re.compile(key_pattern) if key_pattern else None
        self.key_expected = key_expected
        self.expected = "a map"

    def check(self, value: Any, path: str, file: str) -> None:
        if not isinstance(value, dict):
            raise self.fail(value, path, file)
        for k, v in value.items():
            if isinstance(k, str) and k.startswith("x-"):
                continue
            key = str(k)
            if self.key_pattern and not self.key_pattern.fullmatch(key):
                raise ConfigError(f"{file}: {path}/{key}: invalid key name, expected {self.key_expected}")
            self.value.check(v, f"{path}/{key}" if path else key, file)


@dataclass
class Obj(Type):
    """A map with a fixed set of keys; anything else (except ``x-*``) is an error."""

    fields: dict[str, Type]
    required: tuple[str, ...] = ()
    legacy: Mapping[str, str] = field(default_factory=dict)
    expected: str = "a map"
    extra_check: Callable[[dict[str, Any], str, str], None] | None = None

    def check(self, value: Any, path: str, file: str) -> None:
        if not isinstance(value, dict):
            raise self.fail(value, path, file)
        for k, v in value.items():
            key = str(k)
            sub = f"{path}/{key}" if path else key
            if key.startswith("x-"):
                continue
            if key not in self.fields:
                allowed = ", ".join(sorted(self.fields))
                raise ConfigError(f"{file}: {sub}: unknown key (allowed here: {allowed})")
            self.fields[key].check(v, sub, file)
        for key in self.required:
            if key not in value:
                raise ConfigError(f"{file}: {path + '/' if path else ''}{key}: required key is missing")
        if self.extra_check:
            self.extra_check(value, path, file)


class OneOf(Type):
    def __init__(self, *options: Type, expected: str | None = None) -> None:
        self.options = options
        self.expected = expected or " or ".join(o.expected for o in options)

    def check(self, value: Any, path: str, file: str) -> None:
        errors: list[ConfigError] = []
        for option in self.options:
            try:
                option.check(value, path, file)
                return
            except ConfigError as e:
                errors.append(e)
        # A structural match (right container type) gives the most precise message.
        for option, err in zip(self.options, errors, strict=True):
            if (isinstance(option, Obj | MapOf) and isinstance(value, dict)) or (
                isinstance(option, ListOf) and isinstance(value, list)
            ):
                raise err
        raise self.fail(value, path, file)


# --------------------------------------------------------------------------------------------------
# deploy.yml (Kamal 2.12)

NAME = r"(?i)[a-z0-9_-]+"  # Kamal lowercases nothing: MyRole is a valid role name
HOST_ENTRY = OneOf(
    Str(expected="a host"), MapOf(OneOf(Str(), ListOf(Str()))), expected="a host or {host: tag}"
)
HOSTS = ListOf(HOST_ENTRY)
LABELS = MapOf(Scalar())
OPTIONS = MapOf(OneOf(Scalar(), ListOf(Scalar())))
LOGGING = Obj({"driver": Str(), "options": MapOf(Scalar())})


def is_structured_env(value: Any) -> bool:
    return isinstance(value, dict) and any(k in value for k in ("clear", "secret", "tags"))


class Env(Type):
    expected = "a map of variables or {clear:, secret:, tags:}"

    def check(self, value: Any, path: str, file: str) -> None:
        if not isinstance(value, dict):
            raise self.fail(value, path, file)
        if is_structured_env(value):
            ENV_STRUCTURED.check(value, path, file)
        else:
            MapOf(Scalar()).check(value, path, file)


SECRET_NAME = Str(
    r"[A-Za-z_][A-Za-z0-9_]*(:[A-Za-z_][A-Za-z0-9_]*)?", expected="a secret name (NAME or NAME:ALIAS)"
)
ENV_STRUCTURED = Obj(
    {
        "clear": MapOf(Scalar()),
        "secret": ListOf(SECRET_NAME),
        "tags": MapOf(Env()),
    }
)
ENV = Env()


def _proxy_check(value: dict[str, Any], path: str, file: str) -> None:
    if "host" in value and "hosts" in value:
        raise ConfigError(f"{file}: {path}: specify one of host or hosts, not both")
    if "path_prefix" in value and "path_prefixes" in value:
        raise ConfigError(f"{file}: {path}: specify one of path_prefix or path_prefixes, not both")


PROXY_RUN = Obj(
    {
        "http_port": Int(1),
        "https_port": Int(1),
        "metrics_port": Int(1),
        "debug": Bool(),
        "log_max_size": Str(),
        "publish": Bool(),
        "bind_ips": ListOf(Str()),
        "registry": Str(),
        "repository": Str(),
        "version": Str(),
        "options": OPTIONS,
    }
)

PROXY = Obj(
    {
        "host": Str(),
        "hosts": ListOf(Str()),
        "app_port": Int(1),
        "ssl": OneOf(
            Bool(),
            Obj(
                {"certificate_pem": Str(), "private_key_pem": Str()},
                required=("certificate_pem", "private_key_pem"),
            ),
        ),
        "ssl_redirect": Bool(),
        "forward_headers": Bool(),
        "response_timeout": Duration(),
        "path_prefix": Str(),
        "path_prefixes": ListOf(Str()),
        "strip_path_prefix": Bool(),
        "healthcheck": Obj(
            {"path": Str(), "interval": Duration(), "timeout": Duration(), "max_attempts": Int(1)}
        ),
        "buffering": Obj(
            {
                "requests": Bool(),
                "responses": Bool(),
                "memory": Int(0),
                "max_request_body": Int(0),
                "max_response_body": Int(0),
            }
        ),
        "logging": Obj({"request_headers": ListOf(Str()), "response_headers": ListOf(Str())}),
        "run": PROXY_RUN,
    },
    extra_check=_proxy_check,
)

ROLE = Obj(
    {
        "hosts": HOSTS,
        "cmd": Str(),
        "options": OPTIONS,
        "labels": LABELS,
        "env": ENV,
        "logging": LOGGING,
        "proxy": OneOf(Bool(), PROXY),
        "asset_path": Str(),
        "stop_timeout": Int(0),
    }
)


class Servers(Type):
    expected = "a list of hosts or a map of roles"

    def check(self, value: Any, path: str, file: str) -> None:
        if isinstance(value, list):
            HOSTS.check(value, path, file)
        elif isinstance(value, dict):
            for role, spec in value.items():
                if str(role).startswith("x-"):
                    continue
                sub = f"{path}/{role}"
                if not re.fullmatch(NAME, str(role)):
                    raise ConfigError(f"{file}: {sub}: invalid role name, expected [a-z0-9_-]+")
                if isinstance(spec, list):
                    HOSTS.check(spec, sub, file)
                elif isinstance(spec, dict):
                    ROLE.check(spec, sub, file)
                elif spec is not None:
                    raise ConfigError(
                        f"{file}: {sub}: expected a list of hosts or a role map, got {_show(spec)}"
                    )
        else:
            raise self.fail(value, path, file)


class PathEntry(Type):
    """An accessory ``files`` / ``directories`` entry: ``local:remote[:options]`` or a map whose
    ``local``, ``remote``, ``mode``, ``owner`` and ``options`` are strings (Kamal's validate_paths!)."""

    expected = "a string or a map of local, remote, mode, owner, options"

    def check(self, value: Any, path: str, file: str) -> None:
        if isinstance(value, str):
            return
        if not isinstance(value, dict):
            raise self.fail(value, path, file)
        for key in ("local", "remote", "mode", "owner", "options"):
            if key in value and not isinstance(value[key], str):
                raise self.fail(value[key], f"{path}/{key}", file, "a string")


PATHS = ListOf(PathEntry())

REGISTRY_CREDENTIAL = OneOf(Str(), ListOf(Str()), expected="a string or a one-element list naming a secret")
REGISTRY = Obj({"server": Str(), "username": REGISTRY_CREDENTIAL, "password": REGISTRY_CREDENTIAL})

ACCESSORY = Obj(
    {
        "service": Str(),
        "image": Str(),
        "registry": REGISTRY,
        "host": Str(),
        "hosts": ListOf(Str()),
        "role": Str(),
        "roles": ListOf(Str()),
        "tag": Str(),
        "tags": ListOf(Str()),
        "cmd": Str(),
        "port": OneOf(Int(1), Str()),
        "labels": LABELS,
        "options": OPTIONS,
        "env": ENV,
        "files": PATHS,
        "directories": PATHS,
        "volumes": ListOf(Str()),
        "network": Str(),
        "proxy": PROXY,
    },
    required=("image",),
)

LEGACY_HEALTHCHECK = Obj(
    {
        "path": Str(),
        "port": Int(1),
        "max_attempts": Int(1),
        "interval": Duration(),
        "timeout": Duration(),
        "cord": Str(),
        "cmd": Str(),
        "log_lines": Int(0),
    }
)
HOOK_ENTRY = OneOf(Str(), Obj({"path": Str()}, required=("path",)))
LEGACY_HOOKS = MapOf(OneOf(Str(), ListOf(HOOK_ENTRY)))

ROOT = Obj(
    {
        "service": Str(),
        "image": Str(),
        "labels": LABELS,
        "volumes": ListOf(Str()),
        "registry": REGISTRY,
        "servers": Servers(),
        "env": ENV,
        "asset_path": Str(),
        "hooks_path": Str(),
        "hooks_output": OneOf(Str(), MapOf(Str())),
        "secrets_path": Str(),
        "error_pages_path": Str(),
        "require_destination": Bool(),
        "primary_role": Str(NAME, expected="a role name"),
        "allow_empty_roles": Bool(),
        "retain_containers": Int(1),
        "minimum_version": Str(),
        "readiness_delay": Int(0),
        "deploy_timeout": Int(1),
        "drain_timeout": Int(0),
        "stop_timeout": Int(0),
        "run_directory": Str(),
        "ssh": Obj(
            {
                "user": Str(),
                "port": OneOf(Int(1), Str(r"\d+")),
                "proxy": Str(),
                "proxy_command": Str(),
                "keys": ListOf(Str()),
                "key_data": ListOf(Str()),
                "keys_only": Bool(),
                "config": OneOf(Bool(), Str(), ListOf(Str())),
                "forward_agent": Bool(),
                "log_level": Str(),
            }
        ),
        "sshkit": Obj({"max_concurrent_starts": Int(1), "pool_idle_timeout": Int(0), "dns_retries": Int(0)}),
        "builder": Obj(
            {
                "arch": OneOf(Str(), ListOf(Str())),
                "remote": Str(),
                "local": Bool(),
                "driver": Str(),
                "context": Str(),
                "dockerfile": Str(),
                "target": Str(),
                "args": MapOf(Scalar()),
                "secrets": ListOf(Str()),
                "ssh": Str(),
                "cache": Obj({"type": Str(), "options": Str(), "image": Str()}),
                "pack": Obj({"builder": Str(), "buildpacks": ListOf(Str())}),
                "provenance": OneOf(Str(), Bool()),
                "sbom": OneOf(Str(), Bool()),
            }
        ),
        "accessories": MapOf(ACCESSORY, NAME, "[a-z0-9_-]+"),
        "proxy": PROXY,
        "boot": Obj(
            {
                "limit": OneOf(
                    Int(1),
                    Str(r"\d+%", expected="a percentage"),
                    expected='an integer or a percentage like "25%"',
                ),
                "wait": Int(0),
                "parallel_roles": Bool(),
            }
        ),
        "logging": LOGGING,
        "output": Obj({"otel": Obj({"endpoint": Str()}), "file": Obj({"path": Str()})}),
        "aliases": MapOf(Str(), NAME, "[a-z0-9_-]+"),
        # Guide-only legacy keys, accepted with a deprecation warning (deployer.md §0).
        "healthcheck": LEGACY_HEALTHCHECK,
        "hooks": LEGACY_HOOKS,
    }
)
