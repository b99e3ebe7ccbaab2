"""Properties of the state file loader: whatever the file holds, ``StateFile.load`` returns what it
could read (never raises), what it returns saves and loads back the same, and a damaged file
restored by the Router changes nothing on disk (it is kept aside, byte for byte) and restores only
entries that read.

Files are random bytes, and mutations of a valid file with rich entries (bytes flipped, cut,
inserted; fields at any depth replaced by random JSON, deep nesting, huge numbers, NaN).
Derandomized; a longer run:
    STATE_FUZZ_EXAMPLES=20000 python -m pytest -q -p no:randomly tests/proxy/test_state_properties.py
"""

from __future__ import annotations

import asyncio
import json
import os
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from proxy.lifecycle import ServiceMode
from proxy.options import HealthCheckConfig, ServiceOptions, TargetOptions
from proxy.rollout import RolloutSplit
from proxy.state import Loaded, SavedService, StateFile
from tests.proxy.control_plane import ControlPlane
from tests.proxy.test_ipc_properties import hostile_texts, json_values, mutate, paths, replace

EXAMPLES = int(os.environ.get("STATE_FUZZ_EXAMPLES", "0"))
LONG = EXAMPLES > 0
pytestmark = pytest.mark.timeout(0 if LONG else 120)


def fuzz_settings(examples: int) -> settings:
    return settings(
        max_examples=EXAMPLES or examples,
        derandomize=not LONG,
        deadline=None,
        database=None,
        suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
    )


SERVICES = [
    SavedService(
        name="app",
        options=ServiceOptions(
            hosts=("app.test", "www.app.test"),
            path_prefixes=("/api", "/admin"),
            tls_redirect=False,
            canonical_host="app.test",
            writer_affinity_timeout=3.0,
            exclude_metrics_paths=("/up",),
            client_ip_header="X-Real-IP",
        ),
        target_options=TargetOptions(
            health_check_config=HealthCheckConfig(path="/health", port=3001, host="app.test"),
            response_timeout=12.5,
            buffer_requests=True,
            max_request_body_size=1 << 20,
            log_request_headers=("X-Request-Id",),
        ),
        active_targets=("web-1:3000", "web-2:3000"),
        active_readers=("replica:3000",),
        mode=ServiceMode.PAUSED,
        pause_timeout=7.0,
        rollout_targets=("canary:3000",),
        rollout_split=RolloutSplit(percent=25, allowlist=("staff",)),
    ),
    SavedService(
        name="blog",
        options=ServiceOptions(hosts=("blog.test",)),
        target_options=TargetOptions(),
        active_targets=("blog:80",),
        mode=ServiceMode.STOPPED,
        stop_message="back soon",
    ),
    SavedService(
        name="catch-all",
        options=ServiceOptions(),
        target_options=TargetOptions(),
        active_targets=("10.0.0.1",),
    ),
]
VALID = ("[" + ",".join(json.dumps(s.to_json()) for s in SERVICES) + "]\n").encode()


@st.composite
def mutated_files(draw: st.DrawFn) -> bytes:
    """The valid file with one to four changes, at the byte level or the JSON level."""
    if draw(st.booleans()):
        return mutate(draw, VALID, max_delete=16)
    document: Any = json.loads(VALID)
    raw: dict[str, str] = {}
    for n in range(draw(st.integers(1, 4))):
        places = paths(document)
        path = draw(st.sampled_from(places))
        action = draw(st.sampled_from(["replace", "replace", "raw", "delete", "copy"]))
        if action == "raw":
            marker = f"@@raw{n}@@"
            raw[marker] = draw(hostile_texts)
            replace(document, path, marker, delete=False)
        elif action == "copy":  # an entry twice (duplicate names, conflicting hosts)
            document.append(json.loads(json.dumps(document[path[0]])))
        else:
            replace(document, path, draw(json_values), delete=action == "delete")
    text = json.dumps(document, allow_nan=True, ensure_ascii=False)
    for marker, value in raw.items():
        text = text.replace(json.dumps(marker), value)
    return text.encode("utf-8", "surrogatepass")


state_files = st.one_of(st.binary(max_size=256), mutated_files())


def load(state: StateFile, data: bytes) -> Loaded:
    state.path.write_bytes(data)
    loaded = state.load()
    assert loaded is not None
    assert all(isinstance(s, SavedService) for s in loaded.services)
    return loaded


def test_any_state_file_loads_what_it_can_and_that_round_trips(tmp_path: Path) -> None:
    state = StateFile(path=tmp_path / "kamal-proxy.state")
    again = StateFile(path=tmp_path / "again.state")

    @fuzz_settings(300)
    @given(data=state_files)
    def check(data: bytes) -> None:
        loaded = load(state, data)
        if loaded.error:
            assert not loaded.services and not loaded.rejected
        names = [s.name for s in loaded.services]
        assert len(set(names)) == len(names)
        again.save(loaded.services)  # what was read is what the daemon would write next
        reread = again.load()
        assert reread is not None and reread.services == loaded.services and not reread.damaged

    check()


def test_a_damaged_state_file_restores_only_what_reads_and_changes_nothing_on_disk(tmp_path: Path) -> None:
    loop = asyncio.new_event_loop()
    count = 0

    @fuzz_settings(80)
    @given(data=state_files)
    def check(data: bytes) -> None:
        nonlocal count
        count += 1
        home = tmp_path / str(count)
        plane = ControlPlane(home)
        plane.state.ensure_dir()
        plane.state.path.write_bytes(data)
        loaded = plane.state.load()
        assert loaded is not None
        try:
            plane.router.restore()
            listing = loop.run_until_complete(plane.listing())
        finally:
            loop.run_until_complete(plane.close())
        assert plane.state.path.read_bytes() == data  # restoring never rewrites the file
        assert set(listing["services"]) <= {s.name for s in loaded.services}
        copies = [p for p in plane.state.path.parent.iterdir() if ".bad-" in p.name]
        if loaded.damaged:
            [copy] = copies
            assert copy.read_bytes() == data
        restored_ok = not loaded.damaged and len(listing["services"]) == len(loaded.services)
        assert restored_ok or len(copies) == 1  # anything left out is kept aside

    try:
        check()
    finally:
        loop.close()
    assert count >= min(80, EXAMPLES or 80)


def test_the_valid_file_restores_every_service() -> None:
    """The base the mutations start from is itself whole (else they would test nothing)."""
    document = json.loads(VALID)
    assert [SavedService.from_json(e) for e in document] == SERVICES


def test_a_state_file_past_the_size_bound_is_refused_unread_and_copied_aside_whole(tmp_path: Path) -> None:
    path = tmp_path / "kamal-proxy.state"
    content = b"[" + b" " * 200 + b"]"
    path.write_bytes(content)
    state = StateFile(path=path, max_bytes=100)
    loaded = state.load()
    assert loaded is not None and loaded.services == []
    assert loaded.error == "unable to read: larger than 100 bytes"
    assert state.keep_copy().read_bytes() == content  # (in pieces, never read whole)
    assert StateFile(path=path, max_bytes=len(content)).load() == Loaded(services=[])  # at the bound: read
