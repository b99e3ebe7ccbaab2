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
from proxy.on_demand import OnDemandUrlError, check_on_demand_url
from proxy.schema import (
    NANOS,
    STRICT,
    Decoding,
    read_bool,
    read_duration,
    read_header_names,
    read_host,
    read_host_header,
    read_hosts,
    read_object,
    read_optional_header_name,
    read_path,
    read_paths,
    read_port,
    read_size,
    read_string,
)

__all__ = ["NANOS", "DeploymentOptions", "HealthCheckConfig", "ServiceOptions", "TargetOptions"]

Reader = Any  # Callable[[Any, str], value]; the field's type


def _field(default: Any, read: Reader, **extra: Any) -> Any:
    return field(default=default, metadata={"read": read, **extra})


def _duration_field(default: float) -> Any:
    return _field(default, read_duration, duration=True)


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
        out[f.name] = value
    return out


def from_json(cls: Any, data: Any, *, where: str, decoding: Decoding) -> Any:
    """The inverse of to_json, through each field's reader: missing keys (and ``null`` for the whole
    object) take defaults; a wrong type or range raises SchemaError naming the field; unknown keys
    are handled as ``decoding`` says."""
    obj = read_object(data, where)
    fields = dataclasses.fields(cls)
    decoding.check_keys(obj, (f.name for f in fields), where)
    kwargs: dict[str, Any] = {}
    for f in fields:
        if f.name not in obj:
            continue
        at = f"{where}.{f.name}" if where else f.name
        nested = f.metadata.get("nested")
        if nested is not None:
            kwargs[f.name] = from_json(nested, obj[f.name], where=at, decoding=decoding)
        else:
            kwargs[f.name] = f.metadata["read"](obj[f.name], at)
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
    hosts: tuple[str, ...] = _field(("",), read_hosts)
    path_prefixes: tuple[str, ...] = _field(("/",), read_paths)
    tls_enabled: bool = _field(False, read_bool)
    tls_certificate_path: str = _field("", read_string)
    tls_private_key_path: str = _field("", read_string)
    tls_on_demand_url: str = _field("", read_string)
    tls_redirect: bool = _field(defaults.TLS_REDIRECT, read_bool)
    canonical_host: str = _field("", read_host)
    acme_directory: str = _field("", read_string)
    acme_cache_path: str = _field("", read_string)
    acme_eab_kid: str = _field("", read_string)  # extension: External Account Binding for ACME CAs
    acme_eab_hmac_key: str = _field("", read_string)
    error_page_path: str = _field("", read_string)
    strip_prefix: bool = _field(defaults.STRIP_PATH_PREFIX, read_bool)
    writer_affinity_timeout: float = _duration_field(defaults.WRITER_AFFINITY_TIMEOUT)
    read_targets_accept_websockets: bool = _field(False, read_bool)
    exclude_metrics_paths: tuple[str, ...] = _field((), read_paths)
    client_ip_header: str = _field("", read_optional_header_name)

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
    def from_json(cls, data: Any, *, where: str = "", decoding: Decoding = STRICT) -> ServiceOptions:
        options: ServiceOptions = from_json(cls, data, where=where, decoding=decoding)
        return options.normalized()


@dataclass(frozen=True, kw_only=True)
class HealthCheckConfig:
    path: str = _field(defaults.HEALTH_CHECK_PATH, read_path)
    port: int = _field(0, read_port)
    interval: float = _duration_field(defaults.HEALTH_CHECK_INTERVAL)
    timeout: float = _duration_field(defaults.HEALTH_CHECK_TIMEOUT)
    host: str = _field("", read_host_header)


@dataclass(frozen=True, kw_only=True)
class TargetOptions:
    health_check_config: HealthCheckConfig = field(
        default_factory=HealthCheckConfig, metadata={"nested": HealthCheckConfig}
    )
    response_timeout: float = _duration_field(defaults.TARGET_TIMEOUT)
    buffer_requests: bool = _field(False, read_bool)
    buffer_responses: bool = _field(False, read_bool)
    max_memory_buffer_size: int = _field(defaults.BUFFER_MEMORY, read_size)
    max_request_body_size: int = _field(defaults.MAX_REQUEST_BODY, read_size)
    max_response_body_size: int = _field(defaults.MAX_RESPONSE_BODY, read_size)
    log_request_headers: tuple[str, ...] = _field((), read_header_names)
    log_response_headers: tuple[str, ...] = _field((), read_header_names)
    forward_headers: bool = _field(True, read_bool)
    scope_cookie_paths: bool = _field(False, read_bool)

    def to_json(self) -> dict[str, Any]:
        out = to_json(self)
        out["log_request_headers"] = list(self.log_request_headers) or None
        out["log_response_headers"] = list(self.log_response_headers) or None
        return out

    @classmethod
    def from_json(cls, data: Any, *, where: str = "", decoding: Decoding = STRICT) -> TargetOptions:
        options: TargetOptions = from_json(cls, data, where=where, decoding=decoding)
        return options


@dataclass(frozen=True, kw_only=True)
class DeploymentOptions:
    deploy_timeout: float = _duration_field(defaults.DEPLOY_TIMEOUT)
    drain_timeout: float = _duration_field(defaults.DRAIN_TIMEOUT)
    force: bool = _field(False, read_bool)

    def to_json(self) -> dict[str, Any]:
        return to_json(self)

    @classmethod
    def from_json(cls, data: Any, *, where: str = "", decoding: Decoding = STRICT) -> DeploymentOptions:
        options: DeploymentOptions = from_json(cls, data, where=where, decoding=decoding)
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
            try:
                check_on_demand_url(options.tls_on_demand_url)
            except OnDemandUrlError as exc:
                raise OptionsError(str(exc)) from None
        elif "" in options.hosts:
            raise OptionsError("host must be set when using TLS")
        if any(p != "/" for p in options.path_prefixes):
            raise OptionsError("TLS settings must be specified on the root path service")
    if options.canonical_host and any(options.hosts) and options.canonical_host not in options.hosts:
        hosts = " ".join(options.hosts)
        raise OptionsError(
            f"canonical-host '{options.canonical_host}' must be present in the hosts list: [{hosts}]"
        )
