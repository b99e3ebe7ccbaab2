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
