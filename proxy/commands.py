"""The control commands: one frozen dataclass per command, and their JSON wire form.

Wire form (one request and one reply per connection, each a single JSON object + newline):
    request: {"command": "deploy", "args": {...}}
    reply:   {"ok": true, "result": ...} or {"ok": false, "error": "message"}
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, ClassVar

from proxy import defaults
from proxy.options import NANOS, DeploymentOptions, ServiceOptions, TargetOptions


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
class PauseCommand:
    name: ClassVar[str] = "pause"
    service: str
    drain_timeout: float = defaults.DRAIN_TIMEOUT
    pause_timeout: float = defaults.MAX_PAUSE

    def to_json(self) -> dict[str, Any]:
        return {
            "service": self.service,
            "drain_timeout": _nanos(self.drain_timeout),
            "pause_timeout": _nanos(self.pause_timeout),
        }

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> PauseCommand:
        return cls(
            service=_string(data, "service"),
            drain_timeout=_seconds(data, "drain_timeout", defaults.DRAIN_TIMEOUT),
            pause_timeout=_seconds(data, "pause_timeout", defaults.MAX_PAUSE),
        )


@dataclass(frozen=True, kw_only=True)
class StopCommand:
    name: ClassVar[str] = "stop"
    service: str
    drain_timeout: float = defaults.DRAIN_TIMEOUT
    message: str = ""

    def to_json(self) -> dict[str, Any]:
        return {"service": self.service, "drain_timeout": _nanos(self.drain_timeout), "message": self.message}

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> StopCommand:
        message = data.get("message", "")
        if not isinstance(message, str):
            raise CommandError("message must be a string")
        return cls(
            service=_string(data, "service"),
            drain_timeout=_seconds(data, "drain_timeout", defaults.DRAIN_TIMEOUT),
            message=message,
        )


@dataclass(frozen=True, kw_only=True)
class ResumeCommand:
    name: ClassVar[str] = "resume"
    service: str

    def to_json(self) -> dict[str, Any]:
        return {"service": self.service}

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> ResumeCommand:
        return cls(service=_string(data, "service"))


@dataclass(frozen=True, kw_only=True)
class ListCommand:
    name: ClassVar[str] = "list"

    def to_json(self) -> dict[str, Any]:
        return {}

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> ListCommand:
        return cls()


Command = DeployCommand | RemoveCommand | PauseCommand | StopCommand | ResumeCommand | ListCommand

COMMANDS: dict[str, type[Command]] = {
    c.name: c for c in (DeployCommand, RemoveCommand, PauseCommand, StopCommand, ResumeCommand, ListCommand)
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


def _seconds(data: dict[str, Any], key: str, default: float) -> float:
    value = data.get(key)
    if value is None:
        return default
    if not isinstance(value, int | float) or isinstance(value, bool):
        raise CommandError(f"{key} must be a number of nanoseconds")
    return float(value) / NANOS


def _nanos(seconds: float) -> int:
    return round(seconds * NANOS)


def _strings(data: dict[str, Any], key: str) -> tuple[str, ...]:
    value = data.get(key) or []
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        raise CommandError(f"{key} must be a list of strings")
    return tuple(value)
