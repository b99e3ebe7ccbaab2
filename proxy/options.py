"""Service, target and deployment options: one type each, shared by the CLI, the control commands
and the state file.

The JSON form is kamal-proxy's own state-file form (snake_case keys, durations as integer
nanoseconds), so a state file written by either program restores in the other.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Any

from proxy import defaults

NANOS = 1_000_000_000


def _duration_field(default: float) -> Any:
    return field(default=default, metadata={"duration": True})


def to_json(obj: Any) -> dict[str, Any]:
    """A dataclass as kamal-proxy's JSON: durations in nanoseconds, nested dataclasses as objects."""
    out: dict[str, Any] = {}
    for f in dataclasses.fields(obj):
        value = getattr(obj, f.name)
        if f.metadata.get("duration"):
            value = round(value * NANOS)
        elif dataclasses.is_dataclass(value):
            value = to_json(value)
        elif isinstance(value, tuple):
            value = list(value)
        out[f.metadata.get("key", f.name)] = value
    return out


def from_json(cls: Any, data: dict[str, Any] | None) -> Any:
    """The inverse of to_json. Missing keys take defaults; unknown keys are ignored."""
    data = data or {}
    kwargs: dict[str, Any] = {}
    for f in dataclasses.fields(cls):
        key = f.metadata.get("key", f.name)
        if key not in data:
            continue
        value = data[key]
        if f.metadata.get("duration"):
            value = float(value or 0) / NANOS
        elif f.metadata.get("nested") is not None:
            value = from_json(f.metadata["nested"], value)
        elif f.metadata.get("strings"):
            value = tuple(str(v) for v in (value or ()))
        kwargs[f.name] = value
    return cls(**kwargs)


def normalize_path_prefix(prefix: str) -> str:
    return "/" + prefix.strip("/")


def normalize_hosts(hosts: tuple[str, ...]) -> tuple[str, ...]:
    return hosts if hosts else ("",)


def normalize_path_prefixes(prefixes: tuple[str, ...]) -> tuple[str, ...]:
    if not prefixes:
        return ("/",)
    return tuple(dict.fromkeys(normalize_path_prefix(p) for p in prefixes))


@dataclass(frozen=True, kw_only=True)
class ServiceOptions:
    hosts: tuple[str, ...] = field(default=("",), metadata={"strings": True})
    path_prefixes: tuple[str, ...] = field(default=("/",), metadata={"strings": True})
    tls_enabled: bool = False
    tls_certificate_path: str = ""
    tls_private_key_path: str = ""
    tls_on_demand_url: str = ""
    tls_redirect: bool = defaults.TLS_REDIRECT
    canonical_host: str = ""
    acme_directory: str = ""
    acme_cache_path: str = ""
    acme_eab_kid: str = ""  # extension: External Account Binding for ACME CAs that need it
    acme_eab_hmac_key: str = ""
    error_page_path: str = ""
    strip_prefix: bool = defaults.STRIP_PATH_PREFIX
    writer_affinity_timeout: float = _duration_field(defaults.WRITER_AFFINITY_TIMEOUT)
    read_targets_accept_websockets: bool = False
    exclude_metrics_paths: tuple[str, ...] = field(default=(), metadata={"strings": True})
    client_ip_header: str = ""

    def normalized(self) -> ServiceOptions:
        return dataclasses.replace(
            self,
            hosts=normalize_hosts(self.hosts),
            path_prefixes=normalize_path_prefixes(self.path_prefixes),
        )

    def to_json(self) -> dict[str, Any]:
        out = to_json(self)
        out["exclude_metrics_paths"] = list(self.exclude_metrics_paths) or None
        return out

    @classmethod
    def from_json(cls, data: dict[str, Any] | None) -> ServiceOptions:
        options: ServiceOptions = from_json(cls, data)
        return options.normalized()


@dataclass(frozen=True, kw_only=True)
class HealthCheckConfig:
    path: str = defaults.HEALTH_CHECK_PATH
    port: int = 0
    interval: float = _duration_field(defaults.HEALTH_CHECK_INTERVAL)
    timeout: float = _duration_field(defaults.HEALTH_CHECK_TIMEOUT)
    host: str = ""


@dataclass(frozen=True, kw_only=True)
class TargetOptions:
    health_check_config: HealthCheckConfig = field(
        default_factory=HealthCheckConfig, metadata={"nested": HealthCheckConfig}
    )
    response_timeout: float = _duration_field(defaults.TARGET_TIMEOUT)
    buffer_requests: bool = False
    buffer_responses: bool = False
    max_memory_buffer_size: int = defaults.BUFFER_MEMORY
    max_request_body_size: int = defaults.MAX_REQUEST_BODY
    max_response_body_size: int = defaults.MAX_RESPONSE_BODY
    log_request_headers: tuple[str, ...] = field(default=(), metadata={"strings": True})
    log_response_headers: tuple[str, ...] = field(default=(), metadata={"strings": True})
    forward_headers: bool = True
    scope_cookie_paths: bool = False

    def to_json(self) -> dict[str, Any]:
        out = to_json(self)
        out["log_request_headers"] = list(self.log_request_headers) or None
        out["log_response_headers"] = list(self.log_response_headers) or None
        return out

    @classmethod
    def from_json(cls, data: dict[str, Any] | None) -> TargetOptions:
        options: TargetOptions = from_json(cls, data)
        return options


@dataclass(frozen=True, kw_only=True)
class DeploymentOptions:
    deploy_timeout: float = _duration_field(defaults.DEPLOY_TIMEOUT)
    drain_timeout: float = _duration_field(defaults.DRAIN_TIMEOUT)
    force: bool = False

    def to_json(self) -> dict[str, Any]:
        return to_json(self)

    @classmethod
    def from_json(cls, data: dict[str, Any] | None) -> DeploymentOptions:
        options: DeploymentOptions = from_json(cls, data)
        return options


class OptionsError(ValueError):
    """Invalid service options; the message is kamal-proxy's, without its prefix."""


def validate_service_options(options: ServiceOptions) -> None:
    """kamal-proxy's ServiceOptions validation (messages without the `service options invalid: ` prefix)."""
    if options.tls_on_demand_url and not options.tls_enabled:
        raise OptionsError("TLS must be enabled to use a TLS on-demand URL")
    if options.tls_enabled:
        if options.tls_on_demand_url:
            if any(options.hosts):
                raise OptionsError("cannot set hosts when using a TLS on-demand URL")
            if options.tls_certificate_path:
                raise OptionsError("cannot use a custom TLS certificate with a TLS on-demand URL")
            if options.canonical_host:
                raise OptionsError("cannot set a canonical host when using a TLS on-demand URL")
        elif "" in options.hosts:
            raise OptionsError("host must be set when using TLS")
        if any(p != "/" for p in options.path_prefixes):
            raise OptionsError("TLS settings must be specified on the root path service")
    if options.canonical_host and any(options.hosts) and options.canonical_host not in options.hosts:
        hosts = " ".join(options.hosts)
        raise OptionsError(
            f"canonical-host '{options.canonical_host}' must be present in the hosts list: [{hosts}]"
        )
