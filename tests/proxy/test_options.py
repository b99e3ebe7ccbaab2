"""Service / target / deployment options and their JSON form."""

from __future__ import annotations

from proxy.options import HealthCheckConfig, ServiceOptions, TargetOptions


def test_options_json_uses_kamal_proxy_keys_and_nanoseconds() -> None:
    options = TargetOptions(
        health_check_config=HealthCheckConfig(path="/health", interval=2.5), response_timeout=10
    )
    data = options.to_json()
    assert data["health_check_config"]["interval"] == 2_500_000_000
    assert data["response_timeout"] == 10_000_000_000
    assert data["log_request_headers"] is None
    assert TargetOptions.from_json(data) == options
    service = ServiceOptions(hosts=(), path_prefixes=("api/",)).normalized()
    assert service.hosts == ("",) and service.path_prefixes == ("/api",)
