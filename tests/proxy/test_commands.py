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
    ]
    for command in commands:
        assert decode_request(json.loads(json.dumps(encode_request(command)))) == command
    assert set(COMMANDS) == {"deploy", "remove", "pause", "stop", "resume", "list"}
    with pytest.raises(TypeError, match="defined twice"):

        class Again(ControlCommand):
            name = "list"
