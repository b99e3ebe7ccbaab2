"""Control commands and their JSON form."""

from __future__ import annotations

import json

import pytest

from proxy.commands import (
    COMMANDS,
    CommandError,
    ControlCommand,
    DeployCommand,
    ListCommand,
    PauseCommand,
    RemoveCommand,
    ResumeCommand,
    RolloutDeployCommand,
    RolloutSetCommand,
    RolloutStopCommand,
    StopCommand,
    decode_request,
    encode_request,
)
from proxy.options import DeploymentOptions, ServiceOptions


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


def test_every_command_round_trips_and_defining_one_registers_it() -> None:
    commands = [
        RemoveCommand(service="app"),
        PauseCommand(service="app", drain_timeout=1.5, pause_timeout=60),
        StopCommand(service="app", drain_timeout=0, message="back at 5"),
        ResumeCommand(service="app"),
        ListCommand(),
        RolloutDeployCommand(
            service="app",
            targets=("canary:3000",),
            read_targets=("canary-replica:3000",),
            deployment_options=DeploymentOptions(deploy_timeout=5),
        ),
        RolloutSetCommand(service="app", percentage=20, allowlist=("staff",)),
        RolloutStopCommand(service="app"),
    ]
    for command in commands:
        assert decode_request(json.loads(json.dumps(encode_request(command)))) == command
    assert set(COMMANDS) == {
        "deploy",
        "remove",
        "pause",
        "stop",
        "resume",
        "list",
        "rollout_deploy",
        "rollout_set",
        "rollout_stop",
    }
    with pytest.raises(TypeError, match="defined twice"):

        class Again(ControlCommand):
            name = "list"


@pytest.mark.parametrize(
    "args",
    [
        {"service": "app", "percentage": "20"},
        {"service": "app", "percentage": 1 << 40},
        {"service": "app", "allowlist": "staff"},
        {"service": "app", "allowlist": [f"v{i}" for i in range(1001)]},
    ],
)
def test_rollout_set_with_bad_arguments_is_refused(args: dict[str, object]) -> None:
    with pytest.raises(CommandError):
        decode_request({"command": "rollout_set", "args": args})


def test_rollout_deploy_needs_a_target() -> None:
    with pytest.raises(CommandError, match="at least one target"):
        decode_request({"command": "rollout_deploy", "args": {"service": "app", "targets": []}})
