"""The state file: JSON form, atomic save, restore."""

from __future__ import annotations

import json
from pathlib import Path

from proxy.lifecycle import ServiceMode
from proxy.options import ServiceOptions, TargetOptions
from proxy.state import SavedService, StateFile


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
    loaded = state.load()
    assert loaded is not None and loaded.services == saved and not loaded.damaged
    raw = state.path.read_text()
    assert raw.endswith("]\n") and raw.count("\n") == 1
    assert json.loads(raw)[0]["pause_controller"] == {
        "state": 2,
        "stop_message": "back soon",
        "fail_after": 0,
    }
    assert sorted(p.name for p in state.path.parent.iterdir()) == ["kamal-proxy.state"]


def test_rollout_slot_and_readers_round_trip_in_kamal_proxys_keys(tmp_path: Path) -> None:
    from proxy.rollout import RolloutSplit

    state = StateFile(path=tmp_path / "kamal-proxy.state")
    saved = SavedService(
        name="app",
        options=ServiceOptions(),
        target_options=TargetOptions(),
        active_targets=("web:3000",),
        active_readers=("replica:3000",),
        rollout_targets=("canary:3000",),
        rollout_readers=("canary-replica:3000",),
        rollout_split=RolloutSplit(percent=25, allowlist=("staff",)),
    )
    state.save([saved])
    [entry] = json.loads(state.path.read_text())
    assert entry["active_readers"] == ["replica:3000"]
    assert (entry["rollout_targets"], entry["rollout_readers"]) == (["canary:3000"], ["canary-replica:3000"])
    assert entry["rollout_controller"] == {
        "percentage": 25,
        "percentage_split_point": float(0xFFFFFFFF) * 0.25,
        "allowlist": ["staff"],
    }
    loaded = state.load()
    assert loaded is not None and loaded.services == [saved]


def test_bad_rollout_controller_rejects_that_entry_only(tmp_path: Path) -> None:
    state = StateFile(path=tmp_path / "kamal-proxy.state")
    good = {"name": "ok", "options": {}, "active_targets": ["web:1"], "pause_controller": {}}
    bad = {**good, "name": "bad", "rollout_targets": ["canary:1"], "rollout_controller": {"percentage": "60"}}
    legacy = {**good, "name": "legacy", "rollout_target": "canary:2", "rollout_controller": None}
    state.path.write_text(json.dumps([good, bad, legacy]))
    loaded = state.load()
    assert loaded is not None
    assert [s.name for s in loaded.services] == ["ok", "legacy"]
    assert loaded.services[1].rollout_targets == ("canary:2",) and loaded.services[1].rollout_split is None
    [rejected] = loaded.rejected
    assert rejected.name == "bad" and "rollout_controller.percentage" in rejected.reason
