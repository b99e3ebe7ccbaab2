"""The control process ⇄ worker messages, without processes: framing, validation, and how a worker's
routes follow snapshots (WorkerRoutes)."""

from __future__ import annotations

import asyncio
import dataclasses
import json

import pytest

from proxy import ipc
from proxy.lifecycle import ServiceMode, TargetState
from proxy.log import JsonLog
from proxy.options import ServiceOptions, TargetOptions
from proxy.state import SavedService
from proxy.tls import AcmeSettings, ServiceTls
from proxy.worker.process import WorkerConfig
from proxy.worker.routes import WorkerRoutes

Service = tuple[ipc.ServiceState, ipc.Entry]
PEM = "-----BEGIN PRIVATE KEY-----\nMIG...\n-----END PRIVATE KEY-----\n"


def service_state(
    name: str,
    targets: tuple[str, ...],
    *,
    target_set: int,
    revision: int = 0,
    mode: ServiceMode = ServiceMode.RUNNING,
    health: TargetState = TargetState.HEALTHY,
) -> Service:
    """A service in a snapshot and its entry; the revision defaults to the target set's id."""
    entry = ipc.Entry.of(
        revision or target_set,
        SavedService(
            name=name,
            options=ServiceOptions(hosts=(f"{name}.test",)).normalized(),
            target_options=TargetOptions(),
            active_targets=targets,
            mode=mode,
            stop_message="back soon" if mode is ServiceMode.STOPPED else "",
            pause_timeout=5.0,
        ),
    )
    state = ipc.ServiceState(
        name=name, revision=entry.revision, target_set=target_set, health=tuple(health for _ in targets)
    )
    return state, entry


def snapshot(version: int, *services: Service, entries: bool = True) -> ipc.Snapshot:
    return ipc.Snapshot(
        version=version,
        services=tuple(s for s, _ in services),
        entries={e.revision: e for _, e in services} if entries else {},
    )


MESSAGES: list[ipc.Message] = [
    snapshot(3, service_state("app", ("10.0.0.1:3000", "10.0.0.2:3000"), target_set=7)),
    ipc.Drain(request=1, service="app", target_set=7, addresses=("10.0.0.1:3000",), timeout=30.0),
    ipc.Settle(request=2, service="app", timeout=0.5),
    ipc.Challenges(tokens={"tok-1": "tok-1.thumbprint"}),
    ipc.CollectMetrics(request=3),
    ipc.Shutdown(timeout=6.0),
    ipc.Applied(version=3),
    ipc.Drained(request=1, inflight=4, cancelled=1),
    ipc.MetricsTable(
        request=3, table={"series": [["app", "GET", 200, 1, 0.01, [1] + [0] * 10]], "in_flight": {}}
    ),
    ipc.TlsService(name="app", hosts=("a.test", "b.test"), default_host="a.test", static_pem=PEM),
    ipc.TlsService(
        name="auto",
        hosts=("c.test",),
        acme=True,
        acme_directory="https://ca.test/dir",
        acme_cache_root="/var/certs",
        eab_kid="kid",
        eab_hmac_key="hmac",
        on_demand_url="http://check.test/",
    ),
    ipc.TlsService(name="gone", enabled=False),
    ipc.Certificate(cache_dir="/var/certs/abc", host="c.test", pem=PEM, not_after=1.9e9),
    ipc.AlpnChallenge(host="c.test", pem=PEM),
    ipc.AlpnChallenge(host="c.test", pem=""),
    ipc.Obtain(request=5, service="auto", host="c.test"),
    ipc.Obtained(request=5),
    ipc.Obtained(request=6, error="rate limited"),
    ipc.Sync(request=7),
    ipc.Synced(request=7),
]


@pytest.mark.parametrize("message", MESSAGES, ids=lambda m: f"{m.type}-{MESSAGES.index(m)}")
def test_every_message_reads_back_as_it_was_sent(message: ipc.Message) -> None:
    assert ipc.FrameReader().feed(ipc.encode(message)) == [message]


def test_frames_split_anywhere_come_out_whole_and_in_order() -> None:
    stream = b"".join(ipc.encode(m) for m in MESSAGES)
    reader = ipc.FrameReader()
    out: list[ipc.Message] = []
    for i in range(0, len(stream), 7):
        out += reader.feed(stream[i : i + 7])
    assert out == MESSAGES


@pytest.mark.parametrize(
    ("body", "error"),
    [
        (b"[1]", "a message must be a JSON object"),
        (b"{nope", "not JSON"),
        (b'{"type": "launch"}', "unknown message type 'launch'"),
        (b'{"type": "applied", "version": -1}', "applied: bad field"),
        (b'{"type": "applied", "version": "3"}', "applied: bad field"),
        (b'{"type": "applied"}', "applied: bad field"),
        (b'{"type": "shutdown", "timeout": "6s"}', "shutdown: bad field"),
        (
            b'{"type": "drain", "request": 1, "service": "a", "set": 1, "addresses": [1], "timeout": 1}',
            "drain",
        ),
        (b'{"type": "snapshot", "version": 1, "services": {}}', "snapshot: bad field"),
        (
            b'{"type": "snapshot", "version": 1, "services": [{"entry": {"name": "a"}, "set": 1, "health": []}]}',
            "snapshot: ",
        ),
        (b'{"type": "tls_service"}', "tls_service: bad field"),
        (b'{"type": "tls_service", "name": 7}', "name must be a string"),
        (b'{"type": "tls_service", "name": "a", "enabled": "yes"}', "enabled must be true or false"),
        (b'{"type": "tls_service", "name": "a", "hosts": "a.test"}', "hosts must be a list"),
        (b'{"type": "tls_service", "name": "a", "hosts": [1]}', "hosts\\[\\] must be a string"),
        (b'{"type": "tls_service", "name": "a", "static_pem": "not a pem"}', "static_pem must be PEM text"),
        (b'{"type": "tls_service", "name": "a", "on_demand_url": null}', "on_demand_url must be a string"),
        (
            b'{"type": "certificate", "cache_dir": "/c", "host": "h", "pem": "", "not_after": 1}',
            "pem must be PEM text",
        ),
        (
            b'{"type": "certificate", "cache_dir": "/c", "host": "h", "pem": "-----BEGIN X", "not_after": "soon"}',
            "not_after must be a unix time",
        ),
        (
            b'{"type": "certificate", "cache_dir": "/c", "host": "h", "pem": "-----BEGIN X", "not_after": 1e300}',
            "not_after must be a unix time",
        ),
        (b'{"type": "alpn_challenge", "host": ["h"], "pem": ""}', "host must be a string"),
        (b'{"type": "obtain", "request": 1, "service": "a"}', "obtain: bad field"),
        (b'{"type": "obtain", "request": -1, "service": "a", "host": "h"}', "request must be a non-negative"),
        (b'{"type": "obtained", "request": 1, "error": 3}', "error must be a string"),
        (b'{"type": "sync"}', "sync: bad field"),
    ],
)
def test_a_bad_frame_is_a_message_error_naming_the_problem(body: bytes, error: str) -> None:
    with pytest.raises(ipc.MessageError, match=error.replace("(", r"\(")):
        ipc.decode(body)


def test_tls_texts_over_their_bounds_are_refused() -> None:
    too_long_host = {"type": "tls_service", "name": "a", "hosts": ["h" * (ipc.MAX_TEXT + 1)]}
    with pytest.raises(ipc.MessageError, match="at most"):
        ipc.decode(json.dumps(too_long_host).encode())
    too_big_pem = {"type": "alpn_challenge", "host": "h", "pem": "-----BEGIN " + "A" * ipc.MAX_PEM}
    with pytest.raises(ipc.MessageError, match="at most"):
        ipc.decode(json.dumps(too_big_pem).encode())


def test_a_static_certificate_travels_as_the_exact_bytes_read_at_deploy() -> None:
    pem = b"-----BEGIN PRIVATE KEY-----\n\xe9t\xe9\n-----END PRIVATE KEY-----\n"  # even non-ASCII bytes
    tls = ServiceTls(service="app", hosts=("a.test",), static_pem=pem, default_host="a.test")
    message = ipc.decode(ipc.encode(ipc.TlsService.of("app", tls))[4:])
    assert isinstance(message, ipc.TlsService)
    assert message.static_pem.encode("latin-1") == pem and message.hosts == ("a.test",)
    assert message.acme_settings() is None


def test_acme_settings_survive_the_trip() -> None:
    acme = AcmeSettings(directory="https://ca.test/d", cache_root="/c", eab_kid="k", eab_hmac_key="m")
    tls = ServiceTls(service="s", hosts=("a.test",), acme=acme, on_demand_url="http://ok.test/")
    message = ipc.decode(ipc.encode(ipc.TlsService.of("s", tls))[4:])
    assert isinstance(message, ipc.TlsService)
    assert message.acme_settings() == acme and message.on_demand_url == "http://ok.test/"
    removed = ipc.decode(ipc.encode(ipc.TlsService.of("s", None))[4:])
    assert removed == ipc.TlsService(name="s", enabled=False)


def test_a_snapshot_whose_health_does_not_match_its_targets_is_refused() -> None:
    two_targets = service_state("a", ("10.0.0.1:1", "10.0.0.2:1"), target_set=1)
    good = json.loads(ipc.encode(snapshot(1, two_targets))[4:])
    good["services"][0][3] = ["healthy"]
    with pytest.raises(ipc.MessageError, match="another number of targets"):
        ipc.decode(json.dumps(good).encode())


def test_a_snapshot_carries_only_the_entries_asked_for() -> None:
    one = service_state("one", ("web-1:3000",), target_set=1)
    two = service_state("two", ("web-2:3000",), target_set=2)
    full = snapshot(1, one, two)
    partial = ipc.decode(ipc.encode_snapshot(full, include=[2])[4:])
    assert isinstance(partial, ipc.Snapshot)
    assert partial.services == full.services and list(partial.entries) == [2]


def test_an_announced_frame_over_the_limit_is_refused_before_it_is_read() -> None:
    with pytest.raises(ipc.MessageError, match="over the"):
        ipc.FrameReader().feed(ipc.HEADER.pack(ipc.MAX_FRAME + 1) + b"{")


# ---------------------------------------------------------------------- a worker's routes


class Held:
    def __init__(self) -> None:
        self.released = False

    def release(self) -> None:
        self.released = True


def routes() -> WorkerRoutes:
    return WorkerRoutes(log=JsonLog(fd=-1))


def test_a_snapshot_becomes_the_routes_the_data_plane_reads() -> None:
    r = routes()
    r.apply(snapshot(1, service_state("app", ("web-1:3000", "web-2:3000"), target_set=1)))
    found = r.current().lookup("app.test", "/x")
    assert found is not None
    service, _ = found
    assert service.name == "app" and [t.address for t in service.active.healthy] == [
        "web-1:3000",
        "web-2:3000",
    ]


def test_an_older_snapshot_than_the_one_served_is_ignored() -> None:
    r = routes()
    r.apply(snapshot(5, service_state("new", ("web-1:3000",), target_set=2)))
    assert not r.apply(snapshot(4, service_state("old", ("web-1:3000",), target_set=1)))
    assert r.version == 5 and r.current().lookup("new.test", "/") is not None
    assert r.current().lookup("old.test", "/") is None


def test_a_health_change_keeps_the_target_objects_and_their_pools() -> None:
    r = routes()
    r.apply(snapshot(1, service_state("app", ("web-1:3000", "web-2:3000"), target_set=1)))
    service = r.service("app")
    assert service is not None
    targets = list(service.active.targets)
    state, _ = service_state("app", ("web-1:3000", "web-2:3000"), target_set=1)
    down = ipc.ServiceState(
        name="app", revision=state.revision, target_set=1, health=(TargetState.HEALTHY, TargetState.UNHEALTHY)
    )
    before = r.current()
    r.apply(ipc.Snapshot(version=2, services=(down,), entries={}))  # the worker has this revision
    assert r.service("app") is service and service.active.targets == targets
    assert r.current() is before  # the same services: the map is kept
    assert [t.address for t in service.active.healthy] == ["web-1:3000"]


def test_a_deploy_replaces_the_target_set_and_keeps_the_old_one_for_its_drain() -> None:
    r = routes()
    r.apply(snapshot(1, service_state("app", ("web-1:3000",), target_set=1)))
    service = r.service("app")
    assert service is not None
    old = service.active
    r.apply(snapshot(2, service_state("app", ("web-1:3000",), target_set=2, revision=2)))
    assert r.service("app") is service  # held requests and the rest stay with the service
    assert service.active is not old and service.active.ident == 2
    assert r.replaced == {1: old}

    async def drain() -> int:
        return await old.drain(0)

    assert asyncio.run(drain()) == 0
    assert [t.state for t in old.targets] == [TargetState.GONE]


def test_resume_in_a_snapshot_releases_the_requests_a_pause_held() -> None:
    r = routes()
    r.apply(snapshot(1, service_state("app", ("web-1:3000",), target_set=1, mode=ServiceMode.PAUSED)))
    service = r.service("app")
    assert service is not None and service.mode is ServiceMode.PAUSED and service.pause_timeout == 5.0
    held = Held()
    service.held.add(held)
    paused = service_state("app", ("web-1:3000",), target_set=1, mode=ServiceMode.PAUSED)
    r.apply(snapshot(2, paused, entries=False))
    assert not held.released
    r.apply(snapshot(3, service_state("app", ("web-1:3000",), target_set=1, revision=2)))
    assert held.released and service.mode is ServiceMode.RUNNING


def test_a_stop_in_a_snapshot_carries_its_message() -> None:
    r = routes()
    r.apply(snapshot(1, service_state("app", ("web-1:3000",), target_set=1, mode=ServiceMode.STOPPED)))
    service = r.service("app")
    assert service is not None and service.mode is ServiceMode.STOPPED and service.stop_message == "back soon"


def test_a_removed_service_leaves_the_routes_and_is_not_kept_for_a_drain() -> None:
    r = routes()
    r.apply(
        snapshot(
            1,
            service_state("app", ("web-1:3000",), target_set=1),
            service_state("b", ("web-1:3000",), target_set=2),
        )
    )
    r.apply(snapshot(2, service_state("b", ("web-1:3000",), target_set=2)))
    assert r.current().lookup("app.test", "/") is None and r.service("app") is None
    assert r.replaced == {}


def test_a_snapshot_naming_a_revision_never_sent_changes_nothing() -> None:
    r = routes()
    r.apply(snapshot(1, service_state("app", ("web-1:3000",), target_set=1)))
    before = r.current()
    unknown = service_state("app", ("web-1:3000",), target_set=1, revision=9)
    with pytest.raises(ipc.MessageError, match="revision 9 was never sent"):
        r.apply(snapshot(2, unknown, entries=False))
    assert r.current() is before and r.version == 1


# ---------------------------------------------------------------------- a worker's command line


def worker_config(**changes: object) -> WorkerConfig:
    base = WorkerConfig(
        index=1,
        parent=10,
        channel_fd=3,
        listen_fds=(4, 5),
        tls_fds=(6, 7),
        https_port=8443,
        port=8080,
        http_parser="httptools",
        read_header_timeout=30.0,
        idle_timeout=60.0,
        request_body_timeout=60.0,
        write_timeout=60.0,
        backlog=2048,
        debug=False,
    )
    return dataclasses.replace(base, **changes)  # type: ignore[arg-type]


def test_a_worker_config_carries_its_https_sockets_and_public_https_port() -> None:
    config = worker_config()
    assert WorkerConfig.from_json(config.to_json()) == config
    plain = worker_config(tls_fds=(), https_port=0)
    assert WorkerConfig.from_json(plain.to_json()) == plain


@pytest.mark.parametrize(
    ("change", "error"),
    [
        ({"tls_fds": "6"}, "tls_fds must be a list of descriptors"),
        ({"tls_fds": [-1]}, "tls_fds must be a list of descriptors"),
        ({"https_port": "443"}, "must be non-negative integers"),
    ],
)
def test_a_worker_config_with_bad_https_fields_is_refused(change: dict[str, object], error: str) -> None:
    data = json.loads(worker_config().to_json())
    data.update(change)
    with pytest.raises(ValueError, match=error):
        WorkerConfig.from_json(json.dumps(data))


def test_a_worker_config_carries_the_write_timeout_and_refuses_a_negative_or_missing_one() -> None:
    config = worker_config(write_timeout=1.5)
    assert WorkerConfig.from_json(config.to_json()).write_timeout == 1.5
    data = json.loads(config.to_json())
    data["write_timeout"] = -1
    with pytest.raises(ValueError, match="timeouts must be non-negative numbers"):
        WorkerConfig.from_json(json.dumps(data))
    del data["write_timeout"]
    with pytest.raises(ValueError, match="timeouts must be non-negative numbers"):
        WorkerConfig.from_json(json.dumps(data))
