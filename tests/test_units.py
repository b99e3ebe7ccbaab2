"""Pure pieces tested directly: lifecycle tables, the routing snapshot, state and command encoding."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from proxy.commands import CommandError, DeployCommand, decode_request, encode_request
from proxy.http.buffering import SpoolBuffer
from proxy.lifecycle import (
    MODE_TRANSITIONS,
    TARGET_TRANSITIONS,
    IllegalTransition,
    ModeEvent,
    ServiceMode,
    TargetEvent,
    TargetState,
    next_mode,
    next_target_state,
)
from proxy.options import DeploymentOptions, HealthCheckConfig, ServiceOptions, TargetOptions
from proxy.service_map import ServiceMap, strip_port
from proxy.state import SavedService, StateFile

S, E = TargetState, TargetEvent


@pytest.mark.parametrize(
    ("state", "event", "after"),
    [
        (S.ADDING, E.CHECK_PASSED, S.HEALTHY),
        (S.ADDING, E.CHECK_FAILED, S.ADDING),
        (S.HEALTHY, E.CHECK_FAILED, S.UNHEALTHY),
        (S.UNHEALTHY, E.CHECK_PASSED, S.HEALTHY),
        (S.HEALTHY, E.DRAIN, S.DRAINING),
        (S.UNHEALTHY, E.DRAIN, S.DRAINING),
        (S.DRAINING, E.CHECK_PASSED, S.DRAINING),
        (S.DRAINING, E.DRAINED, S.GONE),
    ],
)
def test_target_transition_table(state: TargetState, event: TargetEvent, after: TargetState) -> None:
    assert next_target_state(state, event) is after


def test_target_moves_not_in_the_table_are_illegal() -> None:
    for state in TargetState:
        for event in TargetEvent:
            if (state, event) not in TARGET_TRANSITIONS:
                with pytest.raises(IllegalTransition):
                    next_target_state(state, event)
    with pytest.raises(IllegalTransition):
        next_target_state(S.GONE, E.CHECK_PASSED)
    with pytest.raises(IllegalTransition):
        next_target_state(S.HEALTHY, E.DRAINED)


def test_service_mode_table() -> None:
    M, ME = ServiceMode, ModeEvent
    assert next_mode(M.RUNNING, ME.PAUSE) is M.PAUSED
    assert next_mode(M.PAUSED, ME.RESUME) is M.RUNNING
    assert next_mode(M.PAUSED, ME.STOP) is M.STOPPED
    assert next_mode(M.STOPPED, ME.RESUME) is M.RUNNING
    assert next_mode(M.STOPPED, ME.PAUSE) is M.PAUSED
    assert next_mode(M.RUNNING, ME.RESUME) is M.RUNNING  # resume is idempotent
    assert set(MODE_TRANSITIONS) == {(m, e) for m in M for e in ME}


def test_service_map_lookup_rules() -> None:
    m: ServiceMap[str] = ServiceMap(
        [
            ("app.example.com", "/", "exact"),
            ("app.example.com", "/api", "api"),
            ("app.example.com", "/api/internal", "internal"),
            ("*.example.com", "/", "wild"),
            ("", "/", "default"),
            ("only-prefix.test", "/x", "x"),
        ]
    )
    assert m.lookup("app.example.com", "/") == ("exact", "/")
    assert m.lookup("app.example.com:443", "/api/v1") == ("api", "/api")
    assert m.lookup("app.example.com", "/api") == ("api", "/api")
    assert m.lookup("app.example.com", "/apiary") == ("exact", "/")
    assert m.lookup("app.example.com", "/api/internal/x") == ("internal", "/api/internal")
    assert m.lookup("b.example.com", "/") == ("wild", "/")
    assert m.lookup("a.b.example.com", "/") == ("default", "/")
    assert m.lookup("only-prefix.test", "/y") is None  # exact host bound: no fall-through
    assert m.lookup("only-prefix.test", "/x/y") == ("x", "/x")
    assert ServiceMap[str]().lookup("a", "/") is None


def test_strip_port_handles_ipv6_literals() -> None:
    assert strip_port("a.com:80") == "a.com"
    assert strip_port("[::1]:8080") == "[::1]"
    assert strip_port("[::1]") == "[::1]"
    assert strip_port("a.com") == "a.com"


def test_service_map_lookup_is_one_dict_access_for_many_hosts() -> None:
    m: ServiceMap[int] = ServiceMap((f"s{i}.example.com", "/", i) for i in range(10_000))
    assert m.lookup("s9999.example.com", "/x") == (9999, "/")
    assert len(m) == 10_000


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


def test_deploy_command_round_trips_through_json() -> None:
    command = DeployCommand(
        service="app",
        targets=("web-1:3000",),
        service_options=ServiceOptions(hosts=("a.com",)),
        deployment_options=DeploymentOptions(deploy_timeout=5, force=True),
    )
    assert decode_request(json.loads(json.dumps(encode_request(command)))) == command
    with pytest.raises(CommandError):
        decode_request({"command": "deploy", "args": {"service": "x", "targets": "not-a-list"}})
    with pytest.raises(CommandError):
        decode_request(["deploy"])


def test_state_file_round_trip_and_atomic_replace(tmp_path: Path) -> None:
    state = StateFile(path=tmp_path / "dir" / "kamal-proxy.state")
    assert state.load() is None
    saved = [
        SavedService(
            name="app",
            options=ServiceOptions(hosts=("a.com",)),
            target_options=TargetOptions(),
            active_targets=("web:3000",),
            mode=ServiceMode.STOPPED,
            stop_message="back soon",
        )
    ]
    state.save(saved)
    assert state.load() == saved
    raw = state.path.read_text()
    assert raw.endswith("]\n") and raw.count("\n") == 1
    assert json.loads(raw)[0]["pause_controller"] == {
        "state": 2,
        "stop_message": "back soon",
        "fail_after": 0,
    }
    assert sorted(p.name for p in state.path.parent.iterdir()) == ["kamal-proxy.state"]


def test_spool_buffer_spills_to_disk_and_enforces_limit() -> None:
    buffer = SpoolBuffer(memory=10, limit=100)
    assert buffer.write(b"a" * 8) and not buffer.spilled
    assert buffer.write(b"b" * 50) and buffer.spilled
    assert not buffer.write(b"c" * 50)
    assert b"".join(buffer.chunks()) == b"a" * 8 + b"b" * 50
    buffer.close()
