"""Routing changes as changes, without processes: after the first, whole snapshot, the control process
sends only what changed (services, removals, the version it is based on); a worker applies it by
rebuilding only those services and the hosts they touch. What it must never change: the routes
equal a rebuild from scratch, a change to another version or a bad frame changes nothing, and the
work follows the size of the change, not the number of services (counted, not timed)."""

from __future__ import annotations

import asyncio
import os
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from proxy import ipc
from proxy.http.tls_rules import sync_entry_rules
from proxy.lifecycle import TargetEvent, TargetState
from proxy.log import JsonLog
from proxy.router import InProcessDataPlane
from proxy.service import Service
from proxy.service_map import ServiceMap
from proxy.worker.routes import WorkerRoutes
from tests.proxy.control_plane import ControlPlane, deploy, run
from tests.proxy.test_ipc import service_state, snapshot

EXAMPLES = int(os.environ.get("HYPOTHESIS_MAX_EXAMPLES", "60"))


class WorkerPlane(InProcessDataPlane):
    """The Router's data plane is a worker's routes, fed every snapshot through the real framing."""

    def __init__(self) -> None:
        self.worker = WorkerRoutes(log=JsonLog(fd=-1))
        self.sent: list[ipc.Snapshot] = []

    def publish(self, snapshot: ipc.Snapshot) -> None:
        (message,) = ipc.FrameReader().feed(ipc.encode(snapshot))
        assert isinstance(message, ipc.Snapshot)
        self.sent.append(message)
        self.worker.apply(message)


def plane_with_worker(tmp: Path) -> tuple[ControlPlane, WorkerPlane]:
    plane = ControlPlane(tmp, dataplane=(worker := WorkerPlane()))
    return plane, worker


def change(
    version: int, *services: tuple[ipc.ServiceState, ipc.Entry], removed: tuple[str, ...] = ()
) -> ipc.Snapshot:
    return ipc.Snapshot(
        version=version,
        base=version - 1,
        services=tuple(s for s, _ in services),
        entries={e.revision: e for _, e in services},
        removed=removed,
    )


# ---------------------------------------------------------------------- the message


def test_a_change_reads_back_with_its_base_and_removals() -> None:
    message = change(8, service_state("app", ("web-1:3000",), target_set=3), removed=("old", "older"))
    assert ipc.FrameReader().feed(ipc.encode(message)) == [message]


@pytest.mark.parametrize(
    ("body", "error"),
    [
        (b'{"type":"snapshot","version":3,"base":3,"services":[],"entries":{}}', "earlier version"),
        (b'{"type":"snapshot","version":3,"removed":["a"],"services":[],"entries":{}}', "removes nothing"),
        (
            b'{"type":"snapshot","version":3,"base":2,"removed":"a","services":[],"entries":{}}',
            "removed must",
        ),
        (
            b'{"type":"snapshot","version":3,"base":2,"removed":["a"],"services":[["a",1,1,[]]],"entries":{}}',
            "named twice",
        ),
        (
            b'{"type":"snapshot","version":3,"services":[["a",1,1,[]],["a",2,1,[]]],"entries":{}}',
            "named twice",
        ),
    ],
)
def test_a_bad_change_frame_is_a_message_error(body: bytes, error: str) -> None:
    with pytest.raises(ipc.MessageError, match=error):
        ipc.decode(body)


# ---------------------------------------------------------------------- a worker applying changes


def worker_with(count: int) -> WorkerRoutes:
    routes = WorkerRoutes(log=JsonLog(fd=-1))
    routes.apply(
        snapshot(1, *(service_state(f"s{i}", (f"web-{i}:3000",), target_set=i + 1) for i in range(count)))
    )
    return routes


def test_a_change_rebuilds_only_the_services_it_lists_and_the_hosts_they_touch() -> None:
    routes = worker_with(50)
    before = routes.current()
    kept = routes.service("s7")
    routes.apply(change(2, service_state("s3", ("new-3:3000",), target_set=100)))
    assert routes.version == 2 and routes.built == 1
    assert routes.current() is not before and routes.current().rebuilt == 1  # s3.test only
    found = routes.current().lookup("s3.test", "/")
    assert found is not None and found[0].active.addresses == ["new-3:3000"]
    assert routes.service("s7") is kept and routes.current().lookup("s7.test", "/") == (kept, "/")
    assert len(routes.current()) == 50


def test_a_health_change_rebuilds_no_route_and_sends_no_entry() -> None:
    routes = worker_with(50)
    before = routes.current()
    state, _ = service_state("s3", ("web-3:3000",), target_set=4)
    down = ipc.ServiceState(name="s3", revision=state.revision, target_set=4, health=(TargetState.UNHEALTHY,))
    routes.apply(ipc.Snapshot(version=2, base=1, services=(down,), entries={}))
    service = routes.service("s3")
    assert routes.built == 1 and routes.current() is before
    assert service is not None and service.active.healthy == []


def test_a_removal_drops_the_service_and_closes_its_targets_without_a_drain() -> None:
    routes = worker_with(3)
    routes.apply(change(2, removed=("s1",)))
    assert routes.service("s1") is None and routes.current().lookup("s1.test", "/") is None
    assert routes.current().lookup("s2.test", "/") is not None and routes.replaced == {}
    assert routes.built == 0


def test_a_deploy_as_a_change_keeps_the_replaced_target_set_for_its_drain() -> None:
    routes = worker_with(3)
    service = routes.service("s1")
    assert service is not None
    old = service.active
    routes.apply(change(2, service_state("s1", ("web-9:3000",), target_set=77)))
    assert routes.service("s1") is service and service.active.ident == 77
    assert routes.replaced == {old.ident: old}


def test_a_change_to_another_version_than_the_one_served_changes_nothing() -> None:
    routes = worker_with(3)
    routes.apply(change(2, service_state("s1", ("web-9:3000",), target_set=77)))
    before, service = routes.current(), routes.service("s2")
    with pytest.raises(ipc.MessageError, match="a change to version 4 cannot apply to version 2"):
        routes.apply(change(5, service_state("s2", ("web-8:3000",), target_set=78)))
    assert routes.version == 2 and routes.current() is before
    assert service is not None and service.active.addresses == ["web-2:3000"]


UNSENT = service_state("s1", ("web-1:3000",), target_set=2, revision=99)[0]


@pytest.mark.parametrize(
    "bad",
    [
        change(2, removed=("never-sent",)),
        ipc.Snapshot(version=2, base=1, services=(UNSENT,), entries={}),
    ],
    ids=["removes an unknown service", "names a revision never sent"],
)
def test_a_change_naming_what_the_worker_lacks_changes_nothing(bad: ipc.Snapshot) -> None:
    routes = worker_with(3)
    before = routes.current()
    with pytest.raises(ipc.MessageError):
        routes.apply(bad)
    assert routes.version == 1 and routes.current() is before and routes.service("s0") is not None


# ---------------------------------------------------------------------- the Router sends changes


def test_after_the_first_whole_snapshot_the_router_sends_only_what_changed(tmp_path: Path) -> None:
    async def scenario() -> None:
        plane, worker = plane_with_worker(tmp_path)
        for i in range(20):
            await plane.ok(deploy(f"s{i}", f"web-{i}:3000", hosts=[f"s{i}.test"]))
        assert worker.sent[0].base == 0 and all(s.base == s.version - 1 for s in worker.sent[1:])
        sent = len(worker.sent)
        await plane.ok(deploy("s4", "web-44:3000", hosts=["s4.test"]))
        sent_for_deploy = worker.sent[sent:]  # the new target's first health check is one too
        assert all([s.name for s in each.services] == ["s4"] for each in sent_for_deploy)
        assert sum(len(each.entries) for each in sent_for_deploy) == 1
        await plane.settle()
        deployed = next(each for each in sent_for_deploy if each.entries)
        assert worker.worker.version >= deployed.version
        assert worker.worker.built == 1 and worker.worker.current().rebuilt == 1
        assert worker.worker.current().lookup("s4.test", "/") is not None
        await plane.ok({"command": "pause", "args": {"service": "s5"}})
        assert [s.name for s in worker.sent[-1].services] == ["s5"] and worker.worker.built == 1
        await plane.ok({"command": "remove", "args": {"service": "s6"}})
        assert worker.sent[-1].removed == ("s6",) and worker.sent[-1].services == ()
        await plane.close()

    run(scenario())


def test_the_state_file_written_from_kept_entries_equals_one_written_whole(tmp_path: Path) -> None:
    async def scenario() -> None:
        plane, _ = plane_with_worker(tmp_path)
        for i in range(5):
            await plane.ok(deploy(f"s{i}", f"web-{i}:3000", hosts=[f"s{i}.test"]))
        await plane.ok({"command": "stop", "args": {"service": "s1", "message": "later"}})
        await plane.ok({"command": "remove", "args": {"service": "s2"}})
        written = plane.state_bytes()
        plane.state.save([plane.router._saved(s) for s in plane.router.services().values()])
        assert written == plane.state_bytes()
        await plane.close()

    run(scenario())


def test_a_restore_sends_one_whole_snapshot_and_no_health_change_after_it(tmp_path: Path) -> None:
    async def scenario() -> None:
        plane, _ = plane_with_worker(tmp_path)
        for i in range(5):
            await plane.ok(deploy(f"s{i}", f"web-{i}:3000", hosts=[f"s{i}.test"]))
        await plane.close()
        again, worker = plane_with_worker(tmp_path)
        again.router.restore()
        await again.settle()
        assert [(s.base, len(s.services)) for s in worker.sent] == [(0, 5)]
        assert worker.worker.current().lookup("s3.test", "/") is not None
        await again.close()

    run(scenario())


# ---------------------------------------------------------------------- property: changes == from scratch

NAMES = ("a", "b", "c", "d", "e")
HOSTS = ("one.test", "two.test", "*.test", "x.one.test")
PREFIXES = ("/", "/api", "/api/v1", "/b")
PROBES = [
    (host, path)
    for host in (*HOSTS, "", "y.test", "other.example", "x.one.test:8080")
    for path in ("/", "/api", "/api/v1/x", "/apix", "/b/c", "/z")
]

deploys = st.tuples(
    st.just("deploy"),
    st.sampled_from(NAMES),
    st.lists(st.sampled_from(HOSTS), max_size=2, unique=True),
    st.lists(st.sampled_from(PREFIXES), min_size=1, max_size=2, unique=True),
    st.booleans(),  # TLS (root path only) or a canonical host
    st.integers(min_value=1, max_value=3),  # targets
)
others = st.tuples(
    st.sampled_from(("remove", "pause", "stop", "resume", "fail", "pass")), st.sampled_from(NAMES)
)
operations = st.lists(st.one_of(deploys, others), min_size=1, max_size=14)


def command(op: tuple[Any, ...]) -> dict[str, Any]:
    if op[0] == "deploy":
        _, name, hosts, prefixes, flag, targets = op
        request = deploy(name, *(f"{name}-{i}:3000" for i in range(targets)), hosts=hosts, force=True)
        options = request["args"]["service_options"]
        options["path_prefixes"] = prefixes
        if flag and hosts and prefixes == ["/"]:
            options["tls_enabled"] = True
        elif flag and hosts:
            options["canonical_host"] = hosts[0]
        return request
    return {"command": op[0], "args": {"service": op[1]}}


def view(routes: ServiceMap[Service]) -> list[Any]:
    """Everything a request sees of the routes, for every probe."""
    out: list[Any] = []
    for host, path in PROBES:
        found = routes.lookup(host, path)
        owner = routes.host_owner(host)
        out.append(
            (
                None
                if found is None
                else (
                    found[0].name,
                    found[1],
                    found[0].entry,
                    found[0].mode,
                    found[0].stop_message,
                    [t.address for t in found[0].active.healthy],
                    found[0].active.ident,
                ),
                owner.name if owner is not None else None,
            )
        )
    return [*out, len(routes)]


@settings(
    max_examples=EXAMPLES,
    deadline=None,
    derandomize=True,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture],
)
@given(ops=operations)
@example(  # a path-prefixed service follows the TLS of its host's root service, when that one changes
    ops=[
        ("deploy", "a", ["one.test"], ["/"], True, 1),
        ("deploy", "b", ["one.test"], ["/api"], False, 1),
        ("deploy", "a", ["one.test"], ["/"], False, 1),
        ("remove", "a"),
    ]
)
def test_routes_built_from_changes_equal_routes_built_from_scratch(
    tmp_path: Path, ops: list[tuple[Any, ...]]
) -> None:
    async def scenario(directory: Path) -> None:
        plane, worker = plane_with_worker(directory)
        for op in ops:
            service = plane.router.services().get(op[1])
            if op[0] in ("fail", "pass"):
                if service is not None:
                    event = TargetEvent.CHECK_FAILED if op[0] == "fail" else TargetEvent.CHECK_PASSED
                    for target in service.active.targets:
                        if (target.state, event) in (
                            (TargetState.HEALTHY, TargetEvent.CHECK_FAILED),
                            (TargetState.UNHEALTHY, TargetEvent.CHECK_PASSED),
                        ):
                            target.apply(event)
                    await asyncio.sleep(0)
            else:
                await plane.send(command(op))  # some fail (conflicts, unknown services): that is fine
            fresh = WorkerRoutes(log=JsonLog(fd=-1))
            fresh.apply(plane.router.whole_snapshot())
            assert view(worker.worker.current()) == view(fresh.current())
            scratch: ServiceMap[Service] = ServiceMap(
                (h, p, s)
                for s in plane.router.services().values()
                for h in s.options.hosts
                for p in s.options.path_prefixes
            )
            assert view(plane.router.routes) == view(scratch)
            services = list(plane.router.services().values())
            rules = [s.entry for s in services]
            sync_entry_rules(services, scratch)  # what a rebuild from scratch gives every service
            assert rules == [s.entry for s in services]
        await plane.close()

    directory = tmp_path / f"run-{len(list(tmp_path.iterdir()))}"
    run(scenario(directory))
