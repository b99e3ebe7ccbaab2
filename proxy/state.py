"""The state file: kamal-proxy's JSON format, written atomically, restored at start.

Format (kamal-proxy's own, so either program restores the other's file): a JSON array of service
objects {name, options, target_options, active_targets, active_readers, rollout_targets,
rollout_readers, pause_controller, rollout_controller}. Durations are integer nanoseconds.
Legacy keys still read: top-level `active_target`, `rollout_target`, `hosts`, `path_prefixes`.

Writes go to a temp file in the same directory, are fsynced, then renamed over the old file (and
the directory fsynced), so a crash at any moment leaves either the old or the new state whole.
"""

from __future__ import annotations

import json
import os
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from proxy import defaults
from proxy.lifecycle import ServiceMode
from proxy.options import NANOS, ServiceOptions, TargetOptions


class StateError(ValueError):
    pass


@dataclass(frozen=True, kw_only=True)
class SavedService:
    name: str
    options: ServiceOptions
    target_options: TargetOptions
    active_targets: tuple[str, ...]
    active_readers: tuple[str, ...] = ()
    mode: ServiceMode = ServiceMode.RUNNING
    stop_message: str = ""
    pause_timeout: float = 0.0
    extra: dict[str, Any] = field(default_factory=dict)  # rollout fields, kept as they were

    def to_json(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "options": self.options.to_json(),
            "target_options": self.target_options.to_json(),
            "active_targets": list(self.active_targets),
            "active_readers": list(self.active_readers),
            "rollout_targets": self.extra.get("rollout_targets"),
            "rollout_readers": self.extra.get("rollout_readers"),
            "pause_controller": {
                "state": self.mode.value,
                "stop_message": self.stop_message,
                "fail_after": round(self.pause_timeout * NANOS),
            },
            "rollout_controller": self.extra.get("rollout_controller"),
        }

    @classmethod
    def from_json(cls, data: Any) -> SavedService:
        if not isinstance(data, dict) or not isinstance(data.get("name"), str):
            raise StateError("service entry without a name")
        options_json = dict(data.get("options") or {})
        for legacy in ("hosts", "path_prefixes"):  # kamal-proxy < 0.9 kept these at the top level
            if legacy in data and legacy not in options_json:
                options_json[legacy] = data[legacy]
        targets = data.get("active_targets")
        if targets is None and data.get("active_target"):
            targets = [data["active_target"]]
        rollout = data.get("rollout_targets")
        if rollout is None and data.get("rollout_target"):
            rollout = [data["rollout_target"]]
        pause = data.get("pause_controller") or {}
        try:
            mode = ServiceMode(int(pause.get("state", 0)))
        except ValueError as exc:
            raise StateError(f"service {data['name']}: unknown pause state") from exc
        return cls(
            name=data["name"],
            options=ServiceOptions.from_json(options_json),
            target_options=TargetOptions.from_json(data.get("target_options")),
            active_targets=tuple(targets or ()),
            active_readers=tuple(data.get("active_readers") or ()),
            mode=mode,
            stop_message=str(pause.get("stop_message") or ""),
            pause_timeout=float(pause.get("fail_after") or 0) / NANOS,
            extra={
                key: value
                for key, value in (
                    ("rollout_targets", rollout),
                    ("rollout_readers", data.get("rollout_readers")),
                    ("rollout_controller", data.get("rollout_controller")),
                )
                if value is not None
            },
        )


def state_dir(home: str | None = None) -> Path:
    base = home if home is not None else os.environ.get("HOME") or tempfile.gettempdir()
    return Path(base) / defaults.STATE_DIR


def default_state_path() -> Path:
    return state_dir() / defaults.STATE_FILE


class StateFile:
    def __init__(self, *, path: Path) -> None:
        self.path = path

    def ensure_dir(self) -> None:
        self.path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)

    def load(self) -> list[SavedService] | None:
        """The saved services, or None when there is no state file."""
        try:
            raw = self.path.read_bytes()
        except FileNotFoundError:
            return None
        try:
            data = json.loads(raw)
        except ValueError as exc:
            raise StateError(f"unable to parse state file {self.path}: {exc}") from exc
        if data is None:
            return []
        if not isinstance(data, list):
            raise StateError(f"unable to parse state file {self.path}: expected a JSON array")
        return [SavedService.from_json(entry) for entry in data]

    def save(self, services: list[SavedService]) -> None:
        data = (json.dumps([s.to_json() for s in services], separators=(",", ":")) + "\n").encode()
        self.ensure_dir()
        fd, tmp = tempfile.mkstemp(prefix=".kamal-proxy.state.", dir=self.path.parent)
        try:
            with os.fdopen(fd, "wb") as f:
                f.write(data)
                f.flush()
                os.fsync(f.fileno())
            os.chmod(tmp, 0o600)
            os.replace(tmp, self.path)
        except BaseException:
            try:
                os.unlink(tmp)
            except FileNotFoundError:
                pass
            raise
        dir_fd = os.open(self.path.parent, os.O_RDONLY)
        try:
            os.fsync(dir_fd)
        finally:
            os.close(dir_fd)
