"""`deploy SERVICE --target …`: health-check the new targets, swap them in, drain the old ones."""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path

from proxy import defaults
from proxy.cli.common import DEPLOY_DRAIN_TIMEOUT, DEPLOY_TIMEOUT, READ_TARGET, TARGET, Usage, send
from proxy.cli.flags import Flag, FlagError, apply_env_defaults
from proxy.commands import DeployCommand
from proxy.options import (
    DeploymentOptions,
    HealthCheckConfig,
    OptionsError,
    ServiceOptions,
    TargetOptions,
    validate_service_options,
)
from proxy.tls import LETS_ENCRYPT_STAGING_DIRECTORY


def _acme_cache_default() -> str:
    return str(Path(os.environ.get("HOME", "/tmp")) / defaults.STATE_DIR / defaults.ACME_CACHE_DIR)


FLAGS = [
    TARGET,
    READ_TARGET,
    Flag("host", "strings", [], "Host(s) to serve this target on (empty for wildcard)"),
    Flag("path-prefix", "strings", [], "Deploy the service below the specified path(s)"),
    Flag(
        "strip-path-prefix",
        "bool",
        defaults.STRIP_PATH_PREFIX,
        "With --path-prefix, strip prefix from request",
    ),
    Flag("tls", "bool", False, "Configure TLS for this target (requires a non-empty host)"),
    Flag(
        "tls-on-demand-url",
        "string",
        "",
        "Will make an HTTP request to the given URL, asking whether a host is allowed",
    ),
    Flag("tls-staging", "bool", False, "Use Let's Encrypt staging environment for certificate provisioning"),
    Flag("tls-certificate-path", "string", "", "Configure custom TLS certificate path (PEM format)"),
    Flag("tls-private-key-path", "string", "", "Configure custom TLS private key path (PEM format)"),
    Flag("tls-acme-cache-path", "string", "", "Directory to cache ACME certificates"),
    Flag(
        "tls-acme-directory",
        "string",
        "",
        "ACME directory URL of the CA to use (default: Let's Encrypt); extension of kamal-proxy",
    ),
    Flag("tls-acme-eab-kid", "string", "", "ACME External Account Binding key ID; extension of kamal-proxy"),
    Flag(
        "tls-acme-eab-hmac-key",
        "string",
        "",
        "ACME External Account Binding HMAC key (base64url); extension of kamal-proxy",
    ),
    Flag(
        "tls-redirect", "bool", defaults.TLS_REDIRECT, "Redirect HTTP traffic to HTTPS (when TLS is enabled)"
    ),
    Flag("canonical-host", "string", "", "Redirect to this host (must be in the hosts list)"),
    DEPLOY_TIMEOUT,
    DEPLOY_DRAIN_TIMEOUT,
    Flag("force", "bool", False, "Skip waiting for the target to become healthy"),
    Flag(
        "health-check-interval", "duration", defaults.HEALTH_CHECK_INTERVAL, "Interval between health checks"
    ),
    Flag(
        "health-check-timeout",
        "duration",
        defaults.HEALTH_CHECK_TIMEOUT,
        "Time each health check must complete in",
    ),
    Flag("health-check-path", "string", defaults.HEALTH_CHECK_PATH, "Path to check for health"),
    Flag("health-check-port", "int", 0, "Port to check for health (default: target port)"),
    Flag("health-check-host", "string", "", "Host header for health checks (default: target host:port)"),
    Flag(
        "writer-affinity-timeout",
        "duration",
        defaults.WRITER_AFFINITY_TIMEOUT,
        "Time after a write before read requests will be routed to readers",
    ),
    Flag("read-target-websockets", "bool", False, "Route WebSocket traffic to read targets"),
    Flag(
        "target-timeout",
        "duration",
        defaults.TARGET_TIMEOUT,
        "Maximum time to wait for the target server to respond when serving requests",
    ),
    Flag("buffer-requests", "bool", False, "Enable request buffering"),
    Flag("buffer-responses", "bool", False, "Enable response buffering"),
    Flag("buffer-memory", "bytes", defaults.BUFFER_MEMORY, "Max size of memory buffer"),
    Flag(
        "max-request-body",
        "bytes",
        defaults.MAX_REQUEST_BODY,
        "Max size of request body when buffering (default of 0 means unlimited)",
    ),
    Flag(
        "max-response-body",
        "bytes",
        defaults.MAX_RESPONSE_BODY,
        "Max size of response body when buffering (default of 0 means unlimited)",
    ),
    Flag("error-pages", "string", "", "Path to custom error pages"),
    Flag(
        "log-request-header",
        "strings",
        [],
        "Additional request header to log (may be specified multiple times)",
    ),
    Flag(
        "log-response-header",
        "strings",
        [],
        "Additional response header to log (may be specified multiple times)",
    ),
    Flag(
        "exclude-metrics-path",
        "strings",
        [],
        "Exclude an exact path from request metrics (may be specified multiple times)",
    ),
    Flag(
        "forward-headers",
        "bool",
        False,
        "Forward X-Forwarded headers to target (default false if TLS enabled; otherwise true)",
    ),
    Flag("client-ip-header", "string", "", "Header that holds the real client IP"),
    Flag("scope-cookie-paths", "bool", False, "Scope cookie paths to the service path prefix"),
]

USAGE = Usage(name="deploy", use="deploy <service>", short="Deploy a target host", flags=FLAGS, nargs=1)

# The ACME extension flags also read the environment (KAMAL_PROXY_TLS_ACME_DIRECTORY, else
# TLS_ACME_DIRECTORY, …): Kamal cannot pass them, but `docker exec kamal-proxy kamal-proxy deploy`
# inherits the proxy container's environment (Kamal: proxy.run.options.env).
ENV_FLAGS = ("tls-acme-directory", "tls-acme-eab-kid", "tls-acme-eab-hmac-key")


def build(argv: list[str], environ: Mapping[str, str] | None = None) -> DeployCommand | None:
    """The command argv describes (None when help was shown); raises FlagError on bad input."""
    environ = os.environ if environ is None else environ
    flags = apply_env_defaults(FLAGS, environ, exclude=[f.name for f in FLAGS if f.name not in ENV_FLAGS])
    parsed = Usage(name=USAGE.name, use=USAGE.use, short=USAGE.short, flags=flags, nargs=1).parse(argv)
    if parsed is None:
        return None
    v = parsed.values
    changed = parsed.changed
    if "max-request-body" in changed and not v["buffer-requests"] and "buffer-requests" not in changed:
        raise FlagError("max-request-body can only be set when request buffering is enabled")
    if "max-response-body" in changed and not v["buffer-responses"] and "buffer-responses" not in changed:
        raise FlagError("max-response-body can only be set when response buffering is enabled")
    cert, key = "tls-certificate-path" in changed, "tls-private-key-path" in changed
    if cert != key:
        missing = "tls-private-key-path" if cert else "tls-certificate-path"
        raise FlagError(
            "if any flags in the group [tls-certificate-path tls-private-key-path] are set "
            f"they must all be set; missing [{missing}]"
        )
    tls = bool(v["tls"])
    if v["tls-staging"] and "tls-acme-directory" in changed:
        raise FlagError("tls-staging and tls-acme-directory cannot be used together")
    if bool(v["tls-acme-eab-kid"]) != bool(v["tls-acme-eab-hmac-key"]):
        raise FlagError("tls-acme-eab-kid and tls-acme-eab-hmac-key must be set together")
    # an explicit --tls-staging wins over a directory from the environment
    acme_directory = LETS_ENCRYPT_STAGING_DIRECTORY if v["tls-staging"] else str(v["tls-acme-directory"])
    forward_headers = bool(v["forward-headers"]) if "forward-headers" in changed else not tls
    service_options = ServiceOptions(
        hosts=tuple(_strings(v["host"])),
        path_prefixes=tuple(_strings(v["path-prefix"])),
        tls_enabled=tls,
        tls_certificate_path=str(v["tls-certificate-path"]),
        tls_private_key_path=str(v["tls-private-key-path"]),
        tls_on_demand_url=str(v["tls-on-demand-url"]),
        tls_redirect=bool(v["tls-redirect"]),
        canonical_host=str(v["canonical-host"]),
        acme_directory=acme_directory,
        acme_eab_kid=str(v["tls-acme-eab-kid"]),
        acme_eab_hmac_key=str(v["tls-acme-eab-hmac-key"]),
        acme_cache_path=str(v["tls-acme-cache-path"]) or _acme_cache_default(),
        error_page_path=str(v["error-pages"]),
        strip_prefix=bool(v["strip-path-prefix"]),
        writer_affinity_timeout=_seconds(v["writer-affinity-timeout"]),
        read_targets_accept_websockets=bool(v["read-target-websockets"]),
        exclude_metrics_paths=tuple(_strings(v["exclude-metrics-path"])),
        client_ip_header=str(v["client-ip-header"]),
    ).normalized()
    try:
        validate_service_options(service_options)
    except OptionsError as exc:
        raise FlagError(f"service options invalid: {exc}") from None
    target_options = TargetOptions(
        health_check_config=HealthCheckConfig(
            path=str(v["health-check-path"]),
            port=_int(v["health-check-port"]),
            interval=_seconds(v["health-check-interval"]),
            timeout=_seconds(v["health-check-timeout"]),
            host=str(v["health-check-host"]),
        ),
        response_timeout=_seconds(v["target-timeout"]),
        buffer_requests=bool(v["buffer-requests"]),
        buffer_responses=bool(v["buffer-responses"]),
        max_memory_buffer_size=_int(v["buffer-memory"]),
        max_request_body_size=_int(v["max-request-body"]),
        max_response_body_size=_int(v["max-response-body"]),
        log_request_headers=tuple(_strings(v["log-request-header"])),
        log_response_headers=tuple(_strings(v["log-response-header"])),
        forward_headers=forward_headers,
        scope_cookie_paths=bool(v["scope-cookie-paths"]),
    )
    return DeployCommand(
        service=parsed.args[0],
        targets=tuple(_strings(v["target"])),
        read_targets=tuple(_strings(v["read-target"])),
        service_options=service_options,
        target_options=target_options,
        deployment_options=DeploymentOptions(
            deploy_timeout=_seconds(v["deploy-timeout"]),
            drain_timeout=_seconds(v["drain-timeout"]),
            force=bool(v["force"]),
        ),
    )


def main(argv: list[str]) -> int:
    command = build(argv)
    if command is not None:
        send(command)
    return 0


def _strings(value: object) -> list[str]:
    assert isinstance(value, list)
    return [str(v) for v in value]


def _seconds(value: object) -> float:
    assert isinstance(value, int | float)
    return float(value)


def _int(value: object) -> int:
    assert isinstance(value, int)
    return value
