"""The process model through the real daemon with ``--workers 2``: every command reaches every worker,
drains and pauses count across workers, a killed worker is replaced without refusing connections,
and neither SIGTERM nor SIGKILL of the control process leaves a worker behind."""

from __future__ import annotations

import json
import os
import signal
import socket
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.proxy.backend import Backend
from tests.proxy.conftest import ProxyProcess, raw_request, status_of
from tests.proxy.test_features_daemon import free_port, scrape

CONNECTIONS = 24  # fresh connections per check: enough that both workers take some


@pytest.fixture
def two_workers(tmp_path: Path) -> Iterator[ProxyProcess]:
    p = ProxyProcess(tmp=tmp_path, workers=2).start()
    yield p
    p.stop(signal.SIGKILL)


def children(pid: int) -> list[int]:
    try:
        text = Path(f"/proc/{pid}/task/{pid}/children").read_text()
    except FileNotFoundError:
        return []
    return [int(c) for c in text.split()]


def workers_of(proxy: ProxyProcess) -> list[int]:
    assert proxy.proc is not None
    return sorted(children(proxy.proc.pid))


def alive(pid: int) -> bool:
    """Running (a zombie nobody reaped yet counts as gone)."""
    try:
        status = Path(f"/proc/{pid}/status").read_text()
    except (FileNotFoundError, ProcessLookupError):
        return False
    state = next(line for line in status.splitlines() if line.startswith("State:"))
    return "Z" not in state.split()[1]


def wait_gone(pids: list[int], timeout: float = 15) -> list[int]:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        left = [p for p in pids if alive(p)]
        if not left:
            return []
        time.sleep(0.05)
    return [p for p in pids if alive(p)]


def socket_inodes(pid: int) -> set[str]:
    out = set()
    fd_dir = Path(f"/proc/{pid}/fd")
    for fd in fd_dir.iterdir():
        try:
            link = os.readlink(fd)
        except OSError:
            continue
        if link.startswith("socket:["):
            out.add(link[8:-1])
    return out


def owner(client: socket.socket, proxy_port: int, pids: list[int]) -> int | None:
    """The worker that accepted ``client``'s connection (from /proc/net/tcp and the workers' fds)."""
    client_port = client.getsockname()[1]
    want = (f"{proxy_port:04X}", f"{client_port:04X}")
    inode = None
    for line in Path("/proc/net/tcp").read_text().splitlines()[1:]:
        fields = line.split()
        local, remote = fields[1].split(":")[1], fields[2].split(":")[1]
        if (local, remote) == want:
            inode = fields[9]
    if inode is None:
        return None
    for pid in pids:
        if inode in socket_inodes(pid):
            return pid
    return None


def served_by(proxy: ProxyProcess, host: str, count: int = CONNECTIONS) -> dict[str, set[int]]:
    """``count`` requests, each on a new connection: backend name → the workers that answered with it."""
    pids = workers_of(proxy)
    seen: dict[str, set[int]] = {}
    for _ in range(count):
        with proxy.connect() as sock:
            response = raw_request(sock, f"GET /echo HTTP/1.1\r\nHost: {host}\r\n\r\n".encode())
            assert status_of(response) == 200, response
            name = json.loads(response.partition(b"\r\n\r\n")[2])["backend"]
            pid = owner(sock, proxy.port, pids)
            assert pid is not None
            seen.setdefault(name, set()).add(pid)
    return seen


def test_two_workers_are_children_of_the_control_process(two_workers: ProxyProcess) -> None:
    started = two_workers.wait_log(lambda e: e.get("msg") == "Server started")
    assert started["workers"] == 2
    assert sorted(started["pids"]) == workers_of(two_workers)
    assert len(workers_of(two_workers)) == 2


def test_a_deploy_is_served_by_every_worker_once_it_returns(
    two_workers: ProxyProcess, backend: Backend, backend2: Backend
) -> None:
    two_workers.deploy("app", backend.address, args=("--host=app.test",))
    assert served_by(two_workers, "app.test") == {"one": set(workers_of(two_workers))}
    two_workers.deploy("app", backend2.address, args=("--host=app.test",))
    assert served_by(two_workers, "app.test") == {"two": set(workers_of(two_workers))}
    two_workers.ctl("remove", "app")
    for _ in range(CONNECTIONS):
        with two_workers.connect() as sock:
            assert status_of(raw_request(sock, b"GET / HTTP/1.1\r\nHost: app.test\r\n\r\n")) == 404


def test_stop_and_resume_reach_every_worker(two_workers: ProxyProcess, backend: Backend) -> None:
    two_workers.deploy("app", backend.address, args=("--host=app.test",))
    two_workers.ctl("stop", "app", "--message=maintenance")
    pids = workers_of(two_workers)
    stopped_on = set()
    for _ in range(CONNECTIONS):
        with two_workers.connect() as sock:
            response = raw_request(sock, b"GET /echo HTTP/1.1\r\nHost: app.test\r\n\r\n")
            assert status_of(response) == 503 and b"maintenance" in response
            stopped_on.add(owner(sock, two_workers.port, pids))
    assert stopped_on == set(pids)
    two_workers.ctl("resume", "app")
    assert served_by(two_workers, "app.test") == {"one": set(pids)}


def held_requests(
    proxy: ProxyProcess, count: int
) -> tuple[list[socket.socket], list[threading.Thread], list[bytes]]:
    """``count`` requests on new connections, each read in its own thread."""
    socks, threads, answers = [], [], []
    for _ in range(count):
        sock = proxy.connect()
        sock.sendall(b"GET /slow?ms=300 HTTP/1.1\r\nHost: app.test\r\n\r\n")
        socks.append(sock)

        def read(s: socket.socket = sock) -> None:
            answers.append(raw_request(s, b"", timeout=20))

        thread = threading.Thread(target=read)
        thread.start()
        threads.append(thread)
    return socks, threads, answers


def test_a_pause_holds_on_every_worker_and_resume_releases_them_all(
    two_workers: ProxyProcess, backend: Backend
) -> None:
    two_workers.deploy("app", backend.address, args=("--host=app.test",))
    two_workers.ctl("pause", "app")
    socks, threads, answers = held_requests(two_workers, CONNECTIONS)
    try:
        time.sleep(0.5)  # long enough for a request that is not held to come back from the backend
        assert answers == [] and backend.requests == 0  # held everywhere
        holders = {owner(s, two_workers.port, workers_of(two_workers)) for s in socks}
        assert holders == set(workers_of(two_workers))
        two_workers.ctl("resume", "app")
        for thread in threads:
            thread.join(20)
        assert [status_of(a) for a in answers] == [200] * CONNECTIONS
    finally:
        for sock in socks:
            sock.close()


def test_a_deploy_returns_only_after_every_worker_drained_the_old_target(
    two_workers: ProxyProcess, backend: Backend, backend2: Backend
) -> None:
    two_workers.deploy("app", backend.address, args=("--host=app.test",))
    socks = []
    results: list[bytes] = []
    threads = []
    for _ in range(CONNECTIONS):
        sock = two_workers.connect()
        sock.sendall(b"GET /slow?ms=1500 HTTP/1.1\r\nHost: app.test\r\n\r\n")
        socks.append(sock)
        thread = threading.Thread(target=lambda s=sock: results.append(raw_request(s, b"", timeout=20)))
        thread.start()
        threads.append(thread)
    try:
        deadline = time.monotonic() + 5
        while backend.requests < CONNECTIONS and time.monotonic() < deadline:
            time.sleep(0.02)
        assert backend.requests == CONNECTIONS
        holders = {owner(s, two_workers.port, workers_of(two_workers)) for s in socks}
        assert holders == set(workers_of(two_workers))  # both workers have requests in flight
        began = time.monotonic()
        two_workers.deploy("app", backend2.address, args=("--host=app.test", "--drain-timeout=10s"))
        assert len(results) == CONNECTIONS  # the deploy waited for the slow ones, on both workers
        assert [status_of(r) for r in results] == [200] * CONNECTIONS
        assert time.monotonic() - began < 10
        assert served_by(two_workers, "app.test") == {"two": set(workers_of(two_workers))}
    finally:
        for sock in socks:
            sock.close()


def kill_under_load(
    proxy: ProxyProcess, victim: int, one_request: Callable[[], int], *, limit: int
) -> tuple[list[int | str], dict[str, Any]]:
    """SIGKILL worker ``victim`` while a thread makes requests one new connection at a time (at
    most ``limit``, 20 s); each outcome (a status, "refused" or "reset") and the "Worker replaced" line."""
    outcomes: list[int | str] = []
    stop = threading.Event()

    def load() -> None:
        deadline = time.monotonic() + 20
        while not stop.is_set() and time.monotonic() < deadline and len(outcomes) < limit:
            try:
                outcomes.append(one_request())
            except ConnectionRefusedError:
                outcomes.append("refused")
            except (OSError, IndexError, ValueError):
                outcomes.append("reset")  # the victim's own connections in flight may be lost

    thread = threading.Thread(target=load)
    thread.start()
    try:
        time.sleep(0.3)
        os.kill(victim, signal.SIGKILL)
        replaced = proxy.wait_log(lambda e: e.get("msg") == "Worker replaced", timeout=15)
        time.sleep(0.5)
    finally:
        stop.set()
        thread.join(25)
    return outcomes, replaced


def test_a_killed_worker_is_replaced_and_no_connection_is_refused(
    two_workers: ProxyProcess, backend: Backend
) -> None:
    two_workers.deploy("app", backend.address, args=("--host=app.test",))
    victim, survivor = workers_of(two_workers)

    def one_request() -> int:
        with two_workers.connect() as sock:
            return status_of(raw_request(sock, b"GET /echo HTTP/1.1\r\nHost: app.test\r\n\r\n"))

    outcomes, replaced = kill_under_load(two_workers, victim, one_request, limit=5000)
    exited = two_workers.wait_log(lambda e: e.get("msg") == "Worker exited")
    assert (exited["level"], exited["pid"], exited["signal"]) == ("ERROR", victim, "SIGKILL")
    assert "refused" not in outcomes
    assert outcomes.count("reset") <= 1  # at most the one request the victim had in flight
    assert sorted(workers_of(two_workers)) == sorted([survivor, replaced["pid"]])
    assert served_by(two_workers, "app.test") == {"one": {survivor, replaced["pid"]}}


def test_sigterm_finishes_requests_in_flight_and_leaves_no_worker(
    two_workers: ProxyProcess, backend: Backend
) -> None:
    two_workers.deploy("app", backend.address, args=("--host=app.test",))
    pids = workers_of(two_workers)
    socks, threads, answers = held_requests(two_workers, 8)
    try:
        deadline = time.monotonic() + 5
        while backend.requests < 8 and time.monotonic() < deadline:
            time.sleep(0.02)
        assert two_workers.stop(signal.SIGTERM) == 0
        for thread in threads:
            thread.join(10)
        assert [status_of(a) for a in answers] == [200] * 8
    finally:
        for sock in socks:
            sock.close()
    assert wait_gone(pids, timeout=1) == []


def test_sigkill_of_the_control_process_takes_the_workers_with_it(two_workers: ProxyProcess) -> None:
    pids = workers_of(two_workers)
    assert len(pids) == 2 and all(alive(p) for p in pids)
    two_workers.stop(signal.SIGKILL)
    assert wait_gone(pids, timeout=10) == []


def test_state_is_restored_into_every_worker(tmp_path: Path, backend: Backend) -> None:
    first = ProxyProcess(tmp=tmp_path, workers=2).start()
    try:
        first.deploy("app", backend.address, args=("--host=app.test",))
    finally:
        assert first.stop() == 0
    second = ProxyProcess(tmp=tmp_path, workers=2).start()
    try:
        assert served_by(second, "app.test") == {"one": set(workers_of(second))}
    finally:
        second.stop()


def test_a_scrape_sums_the_requests_every_worker_served(tmp_path: Path, backend: Backend) -> None:
    port = free_port()
    proxy = ProxyProcess(tmp=tmp_path, workers=2, args=("--metrics-port", str(port))).start()
    try:
        proxy.deploy("app", backend.address, args=("--host=app.test",))
        assert served_by(proxy, "app.test") == {"one": set(workers_of(proxy))}  # both served some
        got = scrape(port)  # right away: the scrape asks the workers, it does not wait for a push
        total = got[
            ("kamal_proxy_http_requests_total", (("method", "GET"), ("service", "app"), ("status", "200")))
        ]
        assert total == CONNECTIONS
        assert got[("kamal_proxy_upstream_idle_connections", (("service", "app"),))] >= 2  # one per worker
    finally:
        proxy.stop(signal.SIGKILL)


def test_services_deployed_and_removed_one_change_at_a_time_route_on_every_worker(
    two_workers: ProxyProcess, backend: Backend, backend2: Backend
) -> None:
    """After the first snapshot each command reaches the workers as a change (only that service):
    every worker must still route every service as the control process does."""
    for i in range(6):
        chosen = backend if i % 2 == 0 else backend2
        two_workers.deploy(f"app{i}", chosen.address, args=(f"--host=app{i}.test",))
    two_workers.ctl("remove", "app1")
    two_workers.ctl("remove", "app4")
    two_workers.deploy("app2", backend2.address, args=("--host=app2.test",))  # redeployed elsewhere
    two_workers.deploy(
        "app1", backend.address, args=("--host=app1.test", "--path-prefix=/echo", "--strip-path-prefix=false")
    )
    two_workers.ctl("stop", "app5")
    two_workers.ctl("resume", "app5")
    both = set(workers_of(two_workers))
    expected = {"app0": "one", "app1": "one", "app2": "two", "app3": "two", "app5": "two"}
    for name, backend_name in expected.items():
        assert served_by(two_workers, f"{name}.test", count=12) == {backend_name: both}, name
    for _ in range(CONNECTIONS):
        with two_workers.connect() as sock:
            assert status_of(raw_request(sock, b"GET / HTTP/1.1\r\nHost: app4.test\r\n\r\n")) == 404
        with two_workers.connect() as sock:  # app1 is bound under /echo only now
            assert status_of(raw_request(sock, b"GET /other HTTP/1.1\r\nHost: app1.test\r\n\r\n")) == 404


def test_request_counters_do_not_go_backwards_when_a_worker_is_replaced(
    tmp_path: Path, backend: Backend
) -> None:
    port = free_port()
    proxy = ProxyProcess(tmp=tmp_path, workers=2, args=("--metrics-port", str(port))).start()
    key = ("kamal_proxy_http_requests_total", (("method", "GET"), ("service", "app"), ("status", "200")))
    try:
        proxy.deploy("app", backend.address, args=("--host=app.test",))
        victim, survivor = workers_of(proxy)
        assert served_by(proxy, "app.test") == {"one": {victim, survivor}}  # both counted some
        before = scrape(port)[key]
        assert before == CONNECTIONS
        os.kill(victim, signal.SIGKILL)
        replaced = proxy.wait_log(lambda e: e.get("msg") == "Worker replaced", timeout=15)
        after = scrape(port)
        assert after[key] >= before  # the dead worker's counts stay in the sum
        assert served_by(proxy, "app.test") == {"one": {survivor, replaced["pid"]}}
        again = scrape(port)
        assert again[key] == before + CONNECTIONS
        assert again[("kamal_proxy_http_in_flight_requests", (("service", "app"),))] == 0
    finally:
        proxy.stop(signal.SIGKILL)
