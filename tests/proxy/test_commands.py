"""Control commands and their JSON form."""

from __future__ import annotations

import json

import pytest

from proxy.commands import CommandError, DeployCommand, decode_request, encode_request
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
