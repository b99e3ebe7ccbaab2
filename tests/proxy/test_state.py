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


def write(state: StateFile, data: object) -> None:
    state.ensure_dir()
    state.path.write_text(json.dumps(data))


GOOD_ENTRY = {"name": "good", "options": {"hosts": ["a.test"]}, "active_targets": ["web:80"]}


def test_each_valid_entry_is_loaded_and_each_invalid_one_is_reported(tmp_path: Path) -> None:
    state = StateFile(path=tmp_path / "kamal-proxy.state")
    write(
        state,
        [
            GOOD_ENTRY,
            {"name": "typed", "options": "x", "active_targets": ["web:80"]},
            {"name": "duration", "target_options": {"response_timeout": "30s"}, "active_targets": ["web:80"]},
            {"name": "nan", "target_options": {"max_request_body_size": 1.5}, "active_targets": ["web:80"]},
            {"name": "no-targets", "active_targets": []},
            "not an object",
            {"options": {}},
            dict(GOOD_ENTRY),  # the same name again
            {"name": "later", "active_target": "web:81", "hosts": ["legacy.test"]},
        ],
    )
    loaded = state.load()
    assert loaded is not None and loaded.damaged and not loaded.error
    assert [s.name for s in loaded.services] == ["good", "later"]
    assert loaded.services[1].options.hosts == ("legacy.test",)
    assert loaded.services[1].active_targets == ("web:81",)
    assert [(r.index, r.name, r.reason) for r in loaded.rejected] == [
        (1, "typed", 'options: must be an object, got "x"'),
        (
            2,
            "duration",
            'target_options.response_timeout: must be an integer number of nanoseconds, got "30s"',
        ),
        (3, "nan", "target_options.max_request_body_size: must be an integer, got 1.5"),
        (4, "no-targets", "active_targets: no target"),
        (5, None, 'entry: must be an object, got "not an object"'),
        (6, None, "name: must be a string, got null"),
        (7, "good", "a service of this name came earlier"),
    ]


def test_unknown_keys_in_the_state_file_are_ignored_and_listed(tmp_path: Path) -> None:
    state = StateFile(path=tmp_path / "kamal-proxy.state")
    entry = dict(GOOD_ENTRY, options={"hosts": ["a.test"], "future_option": True})
    write(state, [entry])
    loaded = state.load()
    assert loaded is not None and not loaded.damaged
    assert [s.name for s in loaded.services] == ["good"]
    assert loaded.ignored_keys == ["options.future_option"]


def test_an_unparsable_file_is_reported_whole_and_can_be_kept_aside(tmp_path: Path) -> None:
    state = StateFile(path=tmp_path / "kamal-proxy.state")
    state.ensure_dir()
    for raw, error in ((b"[{", "unable to parse"), (b'{"a": 1}', "expected a JSON array"), (b"[NaN]", "NaN")):
        state.path.write_bytes(raw)
        loaded = state.load()
        assert loaded is not None and loaded.services == [] and error in loaded.error
    state.path.write_bytes(b"[{")
    first = state.keep_copy(now=0)
    second = state.keep_copy(now=0)
    assert first.name == "kamal-proxy.state.bad-19700101T000000Z"
    assert second.name == "kamal-proxy.state.bad-19700101T000000Z-1"
    assert first.read_bytes() == second.read_bytes() == b"[{"
    assert first.stat().st_mode & 0o777 == 0o600


def test_stray_temp_files_of_interrupted_saves_are_removed(tmp_path: Path) -> None:
    state = StateFile(path=tmp_path / "kamal-proxy.state")
    state.save([])
    stray = tmp_path / ".kamal-proxy.state.x1y2"
    stray.write_bytes(b"[")
    other = tmp_path / "unrelated"
    other.write_bytes(b"keep")
    assert state.remove_stray_temp_files() == [stray]
    assert not stray.exists() and other.exists() and state.path.exists()
