"""The control commands: one frozen dataclass per command, and their JSON wire form.

Wire form (one request and one reply per connection, each a single JSON object + newline):
    request: {"command": "deploy", "args": {...}}
    reply:   {"ok": true, "result": ...} or {"ok": false, "error": "message"}
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, ClassVar

from proxy.options import DeploymentOptions, ServiceOptions, TargetOptions


class CommandError(ValueError):
    """A request that does not decode into a known command."""


@dataclass(frozen=True, kw_only=True)
class DeployCommand:
    name: ClassVar[str] = "deploy"
    service: str
    targets: tuple[str, ...]
    read_targets: tuple[str, ...] = ()
    service_options: ServiceOptions = field(default_factory=ServiceOptions)
    target_options: TargetOptions = field(default_factory=TargetOptions)
    deployment_options: DeploymentOptions = field(default_factory=DeploymentOptions)

    def to_json(self) -> dict[str, Any]:
        return {
            "service": self.service,
            "targets": list(self.targets),
            "read_targets": list(self.read_targets),
            "service_options": self.service_options.to_json(),
            "target_options": self.target_options.to_json(),
            "deployment_options": self.deployment_options.to_json(),
        }

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> DeployCommand:
        return cls(
            service=_string(data, "service"),
            targets=_strings(data, "targets"),
            read_targets=_strings(data, "read_targets"),
            service_options=ServiceOptions.from_json(data.get("service_options")),
            target_options=TargetOptions.from_json(data.get("target_options")),
            deployment_options=DeploymentOptions.from_json(data.get("deployment_options")),
        )


@dataclass(frozen=True, kw_only=True)
class RemoveCommand:
    name: ClassVar[str] = "remove"
    service: str

    def to_json(self) -> dict[str, Any]:
        return {"service": self.service}

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> RemoveCommand:
        return cls(service=_string(data, "service"))


@dataclass(frozen=True, kw_only=True)
class ListCommand:
    name: ClassVar[str] = "list"

    def to_json(self) -> dict[str, Any]:
        return {}

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> ListCommand:
        return cls()


Command = DeployCommand | RemoveCommand | ListCommand

COMMANDS: dict[str, type[DeployCommand] | type[RemoveCommand] | type[ListCommand]] = {
    c.name: c for c in (DeployCommand, RemoveCommand, ListCommand)
}


def encode_request(command: Command) -> dict[str, Any]:
    return {"command": command.name, "args": command.to_json()}


def decode_request(message: Any) -> Command:
    if not isinstance(message, dict):
        raise CommandError("request must be a JSON object")
    name = message.get("command")
    cls = COMMANDS.get(name) if isinstance(name, str) else None
    if cls is None:
        raise CommandError(f"unknown command: {name!r}")
    args = message.get("args", {})
    if not isinstance(args, dict):
        raise CommandError("args must be a JSON object")
    try:
        return cls.from_json(args)
    except (TypeError, ValueError, AttributeError) as exc:
        raise CommandError(f"invalid {name} arguments: {exc}") from exc


def _string(data: dict[str, Any], key: str) -> str:
    value = data.get(key)
    if not isinstance(value, str):
        raise CommandError(f"{key} must be a string")
    return value


def _strings(data: dict[str, Any], key: str) -> tuple[str, ...]:
    value = data.get(key) or []
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        raise CommandError(f"{key} must be a list of strings")
    return tuple(value)
