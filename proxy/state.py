"""The state file: kamal-proxy's JSON format, written atomically, restored at start.

Format (kamal-proxy's own, so either program restores the other's file): a JSON array of service
objects {name, options, target_options, active_targets, active_readers, rollout_targets,
rollout_readers, pause_controller, rollout_controller}. Durations are integer nanoseconds.
Legacy keys still read: top-level `active_target`, `rollout_target`, `hosts`, `path_prefixes`.

Writes go to a temp file in the same directory, are fsynced, then renamed over the old file (and
the directory fsynced), so a crash at any moment leaves either the old or the new state whole.

Reading is forgiving per entry and strict per field: each entry goes through the control protocol's
schema (``proxy/schema.py``); an entry that does not fit is left out and reported with its reason,
the others are restored. A file that could not be fully read is copied aside (``keep_copy``) before
the next save replaces it. Temp files a crash left behind are removed at start.
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from proxy import defaults
from proxy.lifecycle import ServiceMode
from proxy.options import ServiceOptions, TargetOptions
from proxy.rollout import MAX_ALLOWLIST, PERCENT_LIMIT, RolloutSplit
from proxy.schema import (
    NANOS,
    Decoding,
    SchemaError,
    loads,
    read_duration,
    read_int,
    read_list,
    read_object,
    read_service_name,
    read_string,
    read_target,
    read_targets,
)

TEMP_PREFIX = ".kamal-proxy.state."  # save()'s temp files; a crash mid-save can leave one behind


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
    rollout_targets: tuple[str, ...] = ()  # none: no rollout deployed
    rollout_readers: tuple[str, ...] = ()
    rollout_split: RolloutSplit | None = None  # kamal-proxy's rollout_controller

    def to_json(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "options": self.options.to_json(),
            "target_options": self.target_options.to_json(),
            "active_targets": list(self.active_targets),
            "active_readers": list(self.active_readers),
            "rollout_targets": list(self.rollout_targets) if self.rollout_targets else None,
            "rollout_readers": list(self.rollout_readers) if self.rollout_targets else None,
            "pause_controller": {
                "state": self.mode.value,
                "stop_message": self.stop_message,
                "fail_after": round(self.pause_timeout * NANOS),
            },
            "rollout_controller": split_json(self.rollout_split),
        }

    @classmethod
    def from_json(cls, data: Any, *, decoding: Decoding | None = None) -> SavedService:
        """One entry, read with the control protocol's schema; SchemaError names the bad field.

        Keys this version does not know are ignored (and listed in ``decoding.ignored``): a newer
        kamal-proxy may have written them.
        """
        decoding = decoding or Decoding(strict=False)
        entry = read_object(data, "entry")
        name = read_service_name(entry.get("name"), "name")
        options_json = dict(read_object(entry.get("options"), "options"))
        for legacy in ("hosts", "path_prefixes"):  # kamal-proxy < 0.9 kept these at the top level
            if legacy in entry and legacy not in options_json:
                options_json[legacy] = entry[legacy]
        targets = read_targets(entry.get("active_targets"), "active_targets")
        if not targets and entry.get("active_target") is not None:
            targets = (read_target(entry["active_target"], "active_target"),)
        if not targets:
            raise SchemaError("active_targets: no target")
        rollout = read_targets(entry.get("rollout_targets"), "rollout_targets")
        if not rollout and entry.get("rollout_target"):
            rollout = (read_target(entry["rollout_target"], "rollout_target"),)
        pause = read_object(entry.get("pause_controller"), "pause_controller")
        state = read_int(pause.get("state", 0), "pause_controller.state", high=len(ServiceMode) - 1)
        return cls(
            name=name,
            options=ServiceOptions.from_json(options_json, where="options", decoding=decoding),
            target_options=TargetOptions.from_json(
                entry.get("target_options"), where="target_options", decoding=decoding
            ),
            active_targets=targets,
            active_readers=read_targets(entry.get("active_readers"), "active_readers"),
            mode=ServiceMode(state),
            stop_message=read_string(pause.get("stop_message") or "", "pause_controller.stop_message"),
            pause_timeout=read_duration(pause.get("fail_after") or 0, "pause_controller.fail_after"),
            rollout_targets=rollout,
            rollout_readers=read_targets(entry.get("rollout_readers"), "rollout_readers") if rollout else (),
            rollout_split=read_split(entry.get("rollout_controller"), "rollout_controller"),
        )


def split_json(split: RolloutSplit | None) -> dict[str, Any] | None:
    """kamal-proxy's rollout_controller object (its split point is derived, written for its reader)."""
    if split is None:
        return None
    return {
        "percentage": split.percent,
        "percentage_split_point": split.split_point,
        "allowlist": list(split.allowlist),
    }


def read_split(value: Any, where: str) -> RolloutSplit | None:
    """A rollout_controller object (``null``: no split). The split point is recomputed from the
    percentage, so a hand-edited file cannot disagree with itself."""
    if value is None:
        return None
    obj = read_object(value, where)
    percent = read_int(
        obj.get("percentage", 0), f"{where}.percentage", low=-PERCENT_LIMIT, high=PERCENT_LIMIT
    )
    allowlist = read_list(obj.get("allowlist") or [], f"{where}.allowlist", read_string)
    if len(allowlist) > MAX_ALLOWLIST:
        raise SchemaError(f"{where}.allowlist: more than {MAX_ALLOWLIST} values")
    return RolloutSplit(percent=percent, allowlist=allowlist)


@dataclass(frozen=True, kw_only=True)
class Rejected:
    """A state-file entry that could not be restored, and why."""

    index: int
    name: str | None
    reason: str


@dataclass(frozen=True, kw_only=True)
class Loaded:
    """What a state file held: the entries that read, those that did not, and whether the file as
    a whole was unreadable (``error``)."""

    services: list[SavedService]
    rejected: list[Rejected] = field(default_factory=list)
    error: str = ""
    ignored_keys: list[str] = field(default_factory=list)

    @property
    def damaged(self) -> bool:
        return bool(self.error or self.rejected)


def state_dir(home: str | None = None) -> Path:
    base = home if home is not None else os.environ.get("HOME") or tempfile.gettempdir()
    return Path(base) / defaults.STATE_DIR


def default_state_path() -> Path:
    return state_dir() / defaults.STATE_FILE


def encode_entry(service: SavedService) -> str:
    """One entry's JSON, as the state file holds it."""
    return json.dumps(service.to_json(), separators=(",", ":"))


class StateFile:
    def __init__(self, *, path: Path, max_bytes: int = defaults.STATE_FILE_MAX_BYTES) -> None:
        self.path = path
        self.max_bytes = max_bytes

    def ensure_dir(self) -> None:
        self.path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)

    def load(self) -> Loaded | None:
        """The saved services, or None when there is no state file. Never raises on content: every
        entry that reads is returned, every one that does not is listed with its reason."""
        try:
            with self.path.open("rb") as f:
                raw = f.read(self.max_bytes + 1)
        except FileNotFoundError:
            return None
        except OSError as exc:
            return Loaded(services=[], error=f"unable to read: {exc.strerror or exc}")
        if len(raw) > self.max_bytes:
            return Loaded(services=[], error=f"unable to read: larger than {self.max_bytes} bytes")
        try:
            data = loads(raw)
        except (ValueError, UnicodeDecodeError) as exc:
            return Loaded(services=[], error=f"unable to parse: {exc}")
        if data is None:
            return Loaded(services=[])
        if not isinstance(data, list):
            return Loaded(services=[], error="unable to parse: expected a JSON array")
        return _entries(data)

    def keep_copy(self, *, now: float | None = None) -> Path:
        """Copy the file aside (``<name>.bad-<UTC time>``) before a save replaces it."""
        stamp = time.strftime("%Y%m%dT%H%M%SZ", time.gmtime(time.time() if now is None else now))
        copy = self.path.with_name(f"{self.path.name}.bad-{stamp}")
        n = 1
        while copy.exists():
            copy = self.path.with_name(f"{self.path.name}.bad-{stamp}-{n}")
            n += 1
        fd = os.open(copy, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "wb") as f, self.path.open("rb") as source:
            shutil.copyfileobj(source, f)  # in pieces: the file may be one refused for its size
            f.flush()
            os.fsync(f.fileno())
        return copy

    def remove_stray_temp_files(self) -> list[Path]:
        """Delete temp files an interrupted save left behind; the paths removed."""
        removed = []
        try:
            candidates = list(self.path.parent.glob(TEMP_PREFIX + "*"))
        except OSError:
            return []
        for path in candidates:
            try:
                path.unlink()
            except OSError:
                continue
            removed.append(path)
        return removed

    def save(self, services: list[SavedService]) -> None:
        self.save_encoded([encode_entry(s) for s in services])

    def save_encoded(self, entries: list[str]) -> None:
        """Save entries already encoded by ``encode_entry`` (a caller that keeps them encodes only
        the ones that changed)."""
        data = ("[" + ",".join(entries) + "]\n").encode()
        self.ensure_dir()
        fd, tmp = tempfile.mkstemp(prefix=TEMP_PREFIX, dir=self.path.parent)
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


def _entries(data: list[Any]) -> Loaded:
    services: list[SavedService] = []
    rejected: list[Rejected] = []
    decoding = Decoding(strict=False)
    seen: set[str] = set()
    for index, entry in enumerate(data):
        name = entry.get("name") if isinstance(entry, dict) else None
        label = name if isinstance(name, str) else None
        try:
            saved = SavedService.from_json(entry, decoding=decoding)
        except SchemaError as exc:
            rejected.append(Rejected(index=index, name=label, reason=str(exc)))
            continue
        if saved.name in seen:
            rejected.append(Rejected(index=index, name=label, reason="a service of this name came earlier"))
            continue
        seen.add(saved.name)
        services.append(saved)
    return Loaded(services=services, rejected=rejected, ignored_keys=sorted(set(decoding.ignored)))
