"""Kamal 2.12's semantic checks, beyond the types :mod:`deployer.schema` checks.

Every error reads ``<file>: <key path>: <Kamal's message>`` so a user moving from Kamal sees the
reason Kamal would give, and where. The messages follow Kamal's ``Kamal::Configuration`` and
``Kamal::Configuration::Validator*`` classes.
"""

from __future__ import annotations

import ipaddress
import re
from collections import Counter
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

from deployer import defaults
from deployer.errors import ConfigError

SERVICE_NAME = re.compile(r"[a-z0-9_-]+", re.IGNORECASE)
RESTART_POLICY = re.compile(r"no|always|unless-stopped|on-failure(?::\d+)?")
RESERVED_LABELS = ("destination", "role", "service")
ACCESSORY_HOST_KEYS = ("host", "hosts", "role", "roles", "tag", "tags")
CACHE_TYPES = ("gha", "registry")


def _fail(source: str, path: str, message: str) -> ConfigError:
    return ConfigError(f"{source}: {path}: {message}" if path else f"{source}: {message}")


def validate_raw(raw: dict[str, Any], source: str, root: Path | None) -> None:
    """Checks on the merged raw configuration, in Kamal's order where it matters."""
    _service(raw, source)
    _minimum_version(raw, source)
    _hooks_output(raw, source)
    _traefik_hooks(raw, source, root)
    _servers(raw, source)
    _labels(raw.get("labels"), "labels", source)
    _root_env_tags(raw.get("env"), source)
    _registry(raw.get("registry"), "registry", source)
    for name, acc in _accessories(raw):
        _accessory(raw, name, acc, source)
    _builder(raw, source)
    _output(raw, source)
    for path, proxy in _proxies(raw):
        _proxy(proxy, path, source)


# -- root ------------------------------------------------------------------------------------------
def _service(raw: dict[str, Any], source: str) -> None:
    service = raw.get("service")
    if isinstance(service, str) and not SERVICE_NAME.fullmatch(service):
        raise _fail(
            source,
            "service",
            "Service name can only include alphanumeric characters, hyphens, and underscores",
        )


def _version_tuple(version: str) -> tuple[tuple[int, int | str], ...]:
    """Gem::Version order: numeric segments compare as numbers; a letter segment marks a prerelease."""
    parts = re.findall(r"\d+|[A-Za-z]+", version)
    return tuple((1, int(p)) if p.isdigit() else (0, p) for p in parts)


def _minimum_version(raw: dict[str, Any], source: str) -> None:
    minimum = raw.get("minimum_version")
    if minimum is None:
        return
    required = _version_tuple(str(minimum))
    current = _version_tuple(defaults.KAMAL_COMPATIBILITY_VERSION)
    width = max(len(required), len(current))
    pad = ((1, 0),)
    if required + pad * (width - len(required)) > current + pad * (width - len(current)):
        raise _fail(
            source,
            "minimum_version",
            f"Current version is {defaults.KAMAL_COMPATIBILITY_VERSION}, minimum required is {minimum} "
            "(this deployer reads Kamal's configuration at that version)",
        )


def _hooks_output(raw: dict[str, Any], source: str) -> None:
    value = raw.get("hooks_output")
    levels = ", ".join(defaults.HOOKS_OUTPUT_LEVELS)
    if isinstance(value, str) and value.lstrip(":") not in defaults.HOOKS_OUTPUT_LEVELS:
        raise _fail(source, "hooks_output", f"Invalid hooks_output '{value}', must be one of: {levels}")
    if isinstance(value, dict):
        for hook, level in value.items():
            if str(level).lstrip(":") not in defaults.HOOKS_OUTPUT_LEVELS:
                raise _fail(
                    source,
                    f"hooks_output/{hook}",
                    f"Invalid hooks_output '{level}' for hook '{hook}', must be one of: {levels}",
                )


def _traefik_hooks(raw: dict[str, Any], source: str, root: Path | None) -> None:
    hooks_path = Path(raw.get("hooks_path", defaults.HOOKS_PATH))
    base = hooks_path if hooks_path.is_absolute() or root is None else root / hooks_path
    found = [name for name in defaults.TRAEFIK_HOOKS if (base / name).exists()]
    if found:
        raise _fail(
            source,
            "hooks_path",
            f"Found {', '.join(found)}, these should be renamed to (pre|post)-proxy-reboot",
        )


# -- servers and roles -----------------------------------------------------------------------------
def _servers(raw: dict[str, Any], source: str) -> None:
    servers = raw.get("servers")
    if isinstance(servers, list):
        _host_entries(servers, "servers", source)
        return
    for name, spec in (servers or {}).items():
        if str(name).startswith("x-"):
            continue
        path = f"servers/{name}"
        if isinstance(spec, list):
            _host_entries(spec, path, source)
        elif isinstance(spec, dict):
            _host_entries(spec.get("hosts") or [], f"{path}/hosts", source)
            _labels(spec.get("labels"), f"{path}/labels", source)
            _restart_policy(spec.get("options"), path, source)
            _env_without_tags(spec.get("env"), f"{path}/env", source)


def _host_entries(entries: list[Any], path: str, source: str) -> None:
    for i, entry in enumerate(entries):
        if isinstance(entry, dict) and len(entry) != 1:
            raise _fail(source, f"{path}/{i}", "multiple hosts found")


def _labels(labels: Any, path: str, source: str) -> None:
    for key in labels or {}:
        if key in RESERVED_LABELS:
            raise _fail(
                source, f"{path}/{key}", "invalid label. destination, role, and service are reserved labels"
            )


def _restart_policy(options: Any, path: str, source: str) -> None:
    if not isinstance(options, dict) or "restart" not in options:
        return
    policy = options["restart"]
    if not isinstance(policy, str):
        raise _fail(source, f"{path}/options/restart", 'should be a string. Use "no" to disable restarts')
    if not RESTART_POLICY.fullmatch(policy):
        raise _fail(
            source,
            f"{path}/options/restart",
            "should be no, always, unless-stopped, on-failure, or on-failure:N",
        )


def _root_env_tags(env: Any, source: str) -> None:
    """Tags live in the root env only, and a tag's env has no tags of its own."""
    tags = env.get("tags") if isinstance(env, dict) else None
    for tag, tag_env in (tags or {}).items():
        _env_without_tags(tag_env, f"env/tags/{tag}", source)


def _env_without_tags(env: Any, path: str, source: str) -> None:
    if isinstance(env, dict) and "tags" in env:
        raise _fail(source, path, "tags are only allowed in the root env")


# -- registry --------------------------------------------------------------------------------------
def _registry(registry: Any, path: str, source: str) -> None:
    if not isinstance(registry, dict):
        return
    for key in ("username", "password"):
        value = registry.get(key)
        if isinstance(value, list) and (len(value) != 1 or not isinstance(value[0], str)):
            raise _fail(
                source, f"{path}/{key}", "should be a string or an array with one string (for secret lookup)"
            )


# -- accessories -----------------------------------------------------------------------------------
def _accessories(raw: dict[str, Any]) -> list[tuple[str, dict[str, Any]]]:
    return [
        (str(name), acc)
        for name, acc in (raw.get("accessories") or {}).items()
        if not str(name).startswith("x-") and isinstance(acc, dict)
    ]


def _accessory(raw: dict[str, Any], name: str, acc: dict[str, Any], source: str) -> None:
    path = f"accessories/{name}"
    if len([k for k in ACCESSORY_HOST_KEYS if k in acc]) != 1:
        raise _fail(source, path, "specify one of `host`, `hosts`, `role`, `roles`, `tag` or `tags`")
    _labels(acc.get("labels"), f"{path}/labels", source)
    _restart_policy(acc.get("options"), path, source)
    _env_without_tags(acc.get("env"), f"{path}/env", source)
    _registry(acc.get("registry"), f"{path}/registry", source)
    servers = raw.get("servers")
    role_names = ["web"] if isinstance(servers, list) else [str(r) for r in servers or {}]
    if "roles" in acc:
        missing = [r for r in acc["roles"] if r not in role_names]
        if missing:
            raise _fail(source, path, f"unknown roles {', '.join(missing)}")
    if "role" in acc and acc["role"] not in role_names:
        raise _fail(source, path, f"unknown role {acc['role']}")


# -- builder ---------------------------------------------------------------------------------------
def _builder(raw: dict[str, Any], source: str) -> None:
    builder = raw.get("builder") or {}
    cache = builder.get("cache") or {}
    if cache.get("type") and cache["type"] not in CACHE_TYPES:
        raise _fail(source, "builder/cache/type", f"Invalid cache type: {cache['type']}")
    if not builder.get("arch"):
        raise _fail(source, "builder/arch", "Builder arch not set (Kamal 2 requires it, e.g. `arch: amd64`)")
    arch = builder["arch"]
    if "pack" in builder and isinstance(arch, list) and len(arch) > 1:
        raise _fail(source, "builder/pack", "buildpacks only support building for one arch")
    if "pack" in builder:
        raise _fail(
            source,
            "builder/pack",
            "building with Cloud Native Buildpacks (`pack`) is not supported by this deployer; "
            "build from a Dockerfile (remove builder/pack)",
        )
    if builder.get("local") is False and not builder.get("remote"):
        raise _fail(source, "builder/local", "Cannot disable local builds, no remote is set")
    registry = raw.get("registry") or {}
    remote = builder.get("remote")
    local_registry = re.match(r"^localhost[:$]", str(registry.get("server") or ""))
    if local_registry and remote and urlparse(str(remote)).scheme != "ssh":
        raise _fail(
            source,
            "builder/remote",
            "Local registry with remote builder requires an SSH URL (e.g., ssh://user@host)",
        )


# -- output ----------------------------------------------------------------------------------------
def _output(raw: dict[str, Any], source: str) -> None:
    output = raw.get("output") or {}
    if "otel" in output and not (output["otel"] or {}).get("endpoint"):
        raise _fail(source, "output/otel/endpoint", "OTel endpoint is required")
    if "file" in output and not (output["file"] or {}).get("path"):
        raise _fail(source, "output/file/path", "file path is required")


# -- proxy -----------------------------------------------------------------------------------------
def _proxies(raw: dict[str, Any]) -> list[tuple[str, dict[str, Any]]]:
    found: list[tuple[str, dict[str, Any]]] = []
    if isinstance(raw.get("proxy"), dict):
        found.append(("proxy", raw["proxy"]))
    servers = raw.get("servers")
    for name, spec in servers.items() if isinstance(servers, dict) else []:
        if isinstance(spec, dict) and isinstance(spec.get("proxy"), dict):
            found.append((f"servers/{name}/proxy", spec["proxy"]))
    for name, acc in _accessories(raw):
        if isinstance(acc.get("proxy"), dict):
            found.append((f"accessories/{name}/proxy", acc["proxy"]))
    return found


def _proxy(proxy: dict[str, Any], path: str, source: str) -> None:
    if proxy.get("ssl") and not proxy.get("host") and not proxy.get("hosts"):
        raise _fail(source, path, "Must set a host to enable automatic SSL")
    run = proxy.get("run") or {}
    for ip in run.get("bind_ips") or []:
        try:
            ipaddress.ip_address(ip)
        except ValueError:
            raise _fail(source, f"{path}/run/bind_ips", f"Invalid publish IP address: {ip}") from None
    if run.get("publish") is False and any(run.get(k) for k in ("bind_ips", "http_port", "https_port")):
        raise _fail(
            source, f"{path}/run", "Cannot set http_port, https_port or bind_ips when publish is false"
        )


# -- after the roles are built ---------------------------------------------------------------------
def unique_ssl_hosts(ssl_hosts: dict[str, list[str]], source: str) -> None:
    """Two roles with ``ssl: true`` may not answer for the same proxy host name."""
    counts = Counter(h for hosts in ssl_hosts.values() for h in hosts)
    duplicates = [h for h, n in counts.items() if n > 1]
    if duplicates:
        roles = [r for r, hosts in ssl_hosts.items() if set(hosts) & set(duplicates)]
        raise _fail(
            source,
            f"servers/{roles[-1]}/proxy/host",
            f"Different roles can't share the same host for SSL: {', '.join(duplicates)}",
        )


def no_conflicting_proxy_runs(runs: dict[str, list[tuple[str, Any]]], source: str) -> None:
    """Per server: every role and accessory proxy there must boot the proxy the same way."""
    for host, entries in runs.items():
        distinct = {repr(sorted((run or {}).items())) for _, run in entries}
        if len(distinct) > 1:
            paths = ", ".join(f"{path}/run" for path, _ in entries)
            where = next((path for path, _ in entries if path != "proxy"), entries[-1][0])
            raise _fail(
                source, f"{where}/run", f"Conflicting proxy run configurations for host {host} (from {paths})"
            )
