"""The control commands: one frozen dataclass per command, and their JSON wire form.

Wire form (one request and one reply per connection, each a single JSON object + newline):
    request: {"command": "deploy", "args": {...}}
    reply:   {"ok": true, "result": ...} or {"ok": false, "error": "message"}

A command is registered in one place: defining its class here. Subclassing ``ControlCommand``
adds it to ``COMMANDS`` (which the control server decodes by), and the Router carries it out
with its method of the same ``name`` (``Router.handle`` dispatches by it and checks at start that
every command has one). The CLI's subcommands are the modules of ``proxy/cli/``.

Arguments are read with ``proxy/schema.py``'s readers, strictly: a wrong type or range, or a key
the command does not know, is an error that names the field.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, ClassVar, Self

from proxy import defaults
from proxy.options import DeploymentOptions, ServiceOptions, TargetOptions
from proxy.rollout import MAX_ALLOWLIST, PERCENT_LIMIT
from proxy.schema import (
    NANOS,
    STRICT,
    InvalidTarget,
    SchemaError,
    read_duration,
    read_int,
    read_list,
    read_object,
    read_service_name,
    read_string,
    read_targets,
)


class CommandError(ValueError):
    """A request that does not decode into a known command."""


COMMANDS: dict[str, type[ControlCommand]] = {}


class ControlCommand:
    """The base of every command; defining a subclass registers it under its ``name``."""

    name: ClassVar[str]
    keys: ClassVar[tuple[str, ...]]  # the argument keys it accepts

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        if "name" not in cls.__dict__:
            return  # an abstract shape (ServiceCommand), not a command
        if cls.name in COMMANDS:
            raise TypeError(f"control command {cls.name!r} defined twice")
        COMMANDS[cls.name] = cls

    def to_json(self) -> dict[str, Any]:
        raise NotImplementedError

    @classmethod
    def decode(cls, data: dict[str, Any]) -> ControlCommand:
        raise NotImplementedError


Command = ControlCommand


@dataclass(frozen=True, kw_only=True)
class ServiceCommand(ControlCommand):
    """A command whose only argument is the service's name."""

    keys: ClassVar[tuple[str, ...]] = ("service",)
    service: str

    def to_json(self) -> dict[str, Any]:
        return {"service": self.service}

    @classmethod
    def decode(cls, data: dict[str, Any]) -> Self:
        return cls(service=_service(data))


@dataclass(frozen=True, kw_only=True)
class DeployCommand(ControlCommand):
    name: ClassVar[str] = "deploy"
    keys: ClassVar[tuple[str, ...]] = (
        "service",
        "targets",
        "read_targets",
        "service_options",
        "target_options",
        "deployment_options",
    )
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
    def decode(cls, data: dict[str, Any]) -> DeployCommand:
        targets = read_targets(data.get("targets"), "targets")
        if not targets:
            raise SchemaError("targets: at least one target is required")
        return cls(
            service=_service(data),
            targets=targets,
            read_targets=read_targets(data.get("read_targets"), "read_targets"),
            service_options=ServiceOptions.from_json(data.get("service_options"), where="service_options"),
            target_options=TargetOptions.from_json(data.get("target_options"), where="target_options"),
            deployment_options=DeploymentOptions.from_json(
                data.get("deployment_options"), where="deployment_options"
            ),
        )


@dataclass(frozen=True, kw_only=True)
class RemoveCommand(ServiceCommand):
    name: ClassVar[str] = "remove"


@dataclass(frozen=True, kw_only=True)
class PauseCommand(ControlCommand):
    name: ClassVar[str] = "pause"
    keys: ClassVar[tuple[str, ...]] = ("service", "drain_timeout", "pause_timeout")
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
    def decode(cls, data: dict[str, Any]) -> PauseCommand:
        return cls(
            service=_service(data),
            drain_timeout=_duration(data, "drain_timeout", defaults.DRAIN_TIMEOUT),
            pause_timeout=_duration(data, "pause_timeout", defaults.MAX_PAUSE),
        )


@dataclass(frozen=True, kw_only=True)
class StopCommand(ControlCommand):
    name: ClassVar[str] = "stop"
    keys: ClassVar[tuple[str, ...]] = ("service", "drain_timeout", "message")
    service: str
    drain_timeout: float = defaults.DRAIN_TIMEOUT
    message: str = ""

    def to_json(self) -> dict[str, Any]:
        return {"service": self.service, "drain_timeout": _nanos(self.drain_timeout), "message": self.message}

    @classmethod
    def decode(cls, data: dict[str, Any]) -> StopCommand:
        return cls(
            service=_service(data),
            drain_timeout=_duration(data, "drain_timeout", defaults.DRAIN_TIMEOUT),
            message=read_string(data.get("message", ""), "message"),
        )


@dataclass(frozen=True, kw_only=True)
class ResumeCommand(ServiceCommand):
    name: ClassVar[str] = "resume"


@dataclass(frozen=True, kw_only=True)
class ListCommand(ControlCommand):
    name: ClassVar[str] = "list"
    keys: ClassVar[tuple[str, ...]] = ()

    def to_json(self) -> dict[str, Any]:
        return {}

    @classmethod
    def decode(cls, data: dict[str, Any]) -> ListCommand:
        return cls()


@dataclass(frozen=True, kw_only=True)
class RolloutDeployCommand(ControlCommand):
    """Install rollout targets (writers and readers) on an existing service, health-gated."""

    name: ClassVar[str] = "rollout_deploy"
    keys: ClassVar[tuple[str, ...]] = ("service", "targets", "read_targets", "deployment_options")
    service: str
    targets: tuple[str, ...]
    read_targets: tuple[str, ...] = ()
    deployment_options: DeploymentOptions = field(default_factory=DeploymentOptions)

    def to_json(self) -> dict[str, Any]:
        return {
            "service": self.service,
            "targets": list(self.targets),
            "read_targets": list(self.read_targets),
            "deployment_options": self.deployment_options.to_json(),
        }

    @classmethod
    def decode(cls, data: dict[str, Any]) -> RolloutDeployCommand:
        targets = read_targets(data.get("targets"), "targets")
        if not targets:
            raise SchemaError("targets: at least one target is required")
        return cls(
            service=_service(data),
            targets=targets,
            read_targets=read_targets(data.get("read_targets"), "read_targets"),
            deployment_options=DeploymentOptions.from_json(
                data.get("deployment_options"), where="deployment_options"
            ),
        )


@dataclass(frozen=True, kw_only=True)
class RolloutSetCommand(ControlCommand):
    """Split traffic: ``percentage`` of cookie values, plus the ``allowlist`` values, go to rollout."""

    name: ClassVar[str] = "rollout_set"
    keys: ClassVar[tuple[str, ...]] = ("service", "percentage", "allowlist")
    service: str
    percentage: int = 0
    allowlist: tuple[str, ...] = ()

    def to_json(self) -> dict[str, Any]:
        return {"service": self.service, "percentage": self.percentage, "allowlist": list(self.allowlist)}

    @classmethod
    def decode(cls, data: dict[str, Any]) -> RolloutSetCommand:
        allowlist = read_list(data.get("allowlist"), "allowlist", read_string)
        if len(allowlist) > MAX_ALLOWLIST:
            raise SchemaError(f"allowlist: more than {MAX_ALLOWLIST} values")
        limit = PERCENT_LIMIT
        return cls(
            service=_service(data),
            percentage=read_int(data.get("percentage", 0), "percentage", low=-limit, high=limit),
            allowlist=allowlist,
        )


@dataclass(frozen=True, kw_only=True)
class RolloutStopCommand(ServiceCommand):
    """Remove the split: all traffic to the active targets (the rollout targets stay deployed)."""

    name: ClassVar[str] = "rollout_stop"


def encode_request(command: ControlCommand) -> dict[str, Any]:
    return {"command": command.name, "args": command.to_json()}


def decode_request(message: Any) -> ControlCommand:
    """The command a request describes; CommandError (naming the field) for anything else."""
    if not isinstance(message, dict):
        raise CommandError("request must be a JSON object")
    name = message.get("command")
    cls = COMMANDS.get(name) if isinstance(name, str) else None
    if cls is None:
        raise CommandError(f"unknown command: {_short(name)}")
    try:
        STRICT.check_keys(message, ("command", "args"), "")
        args = read_object(message.get("args"), "args")
        STRICT.check_keys(args, cls.keys, "")
        return cls.decode(args)
    except InvalidTarget as exc:
        raise CommandError(str(exc)) from None  # kamal-proxy's own message
    except SchemaError as exc:
        raise CommandError(f"invalid {name} arguments: {exc}") from None


def _short(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 40 else text[:37] + "..."


def _service(data: dict[str, Any]) -> str:
    return read_service_name(data.get("service"), "service")


def _duration(data: dict[str, Any], key: str, default: float) -> float:
    return default if key not in data else read_duration(data[key], key)


def _nanos(seconds: float) -> int:
    return round(seconds * NANOS)
