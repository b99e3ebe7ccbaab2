"""The real daemon's start-up: state-file recovery, port checks, one daemon per socket, fd exhaustion."""

from __future__ import annotations

import asyncio
import json
import os
import resource
import socket
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest

from proxy.control import DaemonRunning, claim_socket
from proxy.daemon import Daemon, DaemonConfig
from proxy.ratelimit import RateLimited, loop_error_handler
from tests.proxy.backend import Backend
from tests.proxy.conftest import ProxyProcess, clean_env
from tests.proxy.control_plane import CapturedLog


def entry(name: str, target: str, host: str, **overrides: object) -> dict[str, object]:
    data: dict[str, object] = {
        "name": name,
        "options": {"hosts": [host], "path_prefixes": ["/"]},
        "target_options": {"health_check_config": {"path": "/up"}},
        "active_targets": [target],
        "pause_controller": {"state": 0, "stop_message": "", "fail_after": 0},
    }
    data.update(overrides)
    return data


def test_one_bad_entry_costs_only_that_service(tmp_path: Path, backend: Backend) -> None:
    proxy = ProxyProcess(tmp=tmp_path)
    proxy.state_path.parent.mkdir(parents=True)
    raw = json.dumps(
        [
            entry("good", backend.address, "good.test"),
            entry("typed", backend.address, "typed.test", options="x"),
            entry(
                "duration",
                backend.address,
                "duration.test",
                target_options={"response_timeout": "30s"},
            ),
            entry("also-good", backend.address, "also.test"),
        ]
    ).encode()
    proxy.state_path.write_bytes(raw)
    stray = proxy.state_path.parent / ".kamal-proxy.state.abc123"
    stray.write_bytes(b"[half a save")
    proxy.start()
    try:
        assert set(json.loads(proxy.ctl("list", "--json").stdout)) == {"good", "also-good"}
        assert httpx.get(proxy.url("/echo"), headers={"Host": "also.test"}).headers["x-backend"] == "one"
        errors = [e for e in proxy.logs() if e.get("msg") == "Unable to restore service"]
        assert [(e["level"], e["service"], e["path"]) for e in errors] == [
            ("ERROR", "typed", str(proxy.state_path)),
            ("ERROR", "duration", str(proxy.state_path)),
        ]
        assert errors[0]["error"] == 'options: must be an object, got "x"'
        assert (
            errors[1]["error"]
            == 'target_options.response_timeout: must be an integer number of nanoseconds, got "30s"'
        )
        kept = proxy.wait_log(lambda e: e.get("msg") == "Kept a copy of the damaged state file")
        assert Path(kept["copy"]).read_bytes() == raw
        assert not stray.exists()
        proxy.deploy("next", backend.address, args=("--host=next.test",))  # the save replaces the file
        assert Path(kept["copy"]).read_bytes() == raw
        assert {e["name"] for e in json.loads(proxy.state_path.read_bytes())} == {"good", "also-good", "next"}
    finally:
        proxy.stop()


def test_an_unreadable_state_file_is_kept_before_the_first_save(tmp_path: Path, backend: Backend) -> None:
    proxy = ProxyProcess(tmp=tmp_path)
    proxy.state_path.parent.mkdir(parents=True)
    proxy.state_path.write_bytes(b'[{"name": "app", ')
    proxy.start()
    try:
        failed = proxy.wait_log(lambda e: e.get("msg") == "Unable to restore saved state")
        assert failed["level"] == "ERROR" and failed["path"] == str(proxy.state_path)
        kept = proxy.wait_log(lambda e: e.get("msg") == "Kept a copy of the damaged state file")
        proxy.deploy("app", backend.address)
        assert Path(kept["copy"]).read_bytes() == b'[{"name": "app", '
        assert Path(kept["copy"]).name.startswith("kamal-proxy.state.bad-")
    finally:
        proxy.stop()


def run_cli(tmp_path: Path, *args: str, **env: str) -> subprocess.CompletedProcess[str]:
    environ = clean_env(**{"HOME": str(tmp_path), "KAMAL_PROXY_SOCKET": str(tmp_path / "s.sock"), **env})
    return subprocess.run(
        [sys.executable, "-m", "proxy.cli.main", *args],
        env=environ,
        capture_output=True,
        text=True,
        timeout=30,
        cwd=tmp_path,
    )


def test_out_of_range_ports_are_refused(tmp_path: Path) -> None:
    result = run_cli(tmp_path, "run", "--http-port", "99999")
    assert (result.returncode, result.stderr) == (
        1,
        'Error: invalid argument "99999" for "--http-port" flag: port must be between 0 and 65535\n',
    )
    result = run_cli(tmp_path, "run", "--metrics-port=-1")
    assert result.returncode == 1 and '"--metrics-port" flag' in result.stderr
    result = run_cli(tmp_path, "run", KAMAL_PROXY_HTTPS_PORT="70000")
    assert (result.returncode, result.stderr) == (
        1,
        'Error: invalid value "70000" for environment variable KAMAL_PROXY_HTTPS_PORT: '
        "port must be between 0 and 65535\n",
    )
    assert not (tmp_path / "s.sock").exists()


def test_bad_or_negative_timeouts_are_refused_before_anything_starts(tmp_path: Path) -> None:
    result = run_cli(tmp_path, "run", "--write-timeout", "30")
    assert (result.returncode, result.stderr) == (
        1,
        'Error: invalid argument "30" for "--write-timeout" flag: time: missing unit in duration "30"\n',
    )
    result = run_cli(tmp_path, "run", "--write-timeout=-1s")
    assert (result.returncode, result.stderr) == (
        1,
        'Error: invalid argument "-1s" for "--write-timeout" flag: must not be negative\n',
    )
    result = run_cli(tmp_path, "run", KAMAL_PROXY_WRITE_TIMEOUT="-1m30s")
    assert (result.returncode, result.stderr) == (
        1,
        'Error: invalid value "-1m30s" for environment variable KAMAL_PROXY_WRITE_TIMEOUT: must not be negative\n',
    )
    # its siblings alike (before, a negative one got past `run` and every worker refused to start)
    result = run_cli(tmp_path, "run", "--idle-timeout=-500ms")
    assert (result.returncode, result.stderr) == (
        1,
        'Error: invalid argument "-500ms" for "--idle-timeout" flag: must not be negative\n',
    )
    assert not (tmp_path / "s.sock").exists()


def test_worker_counts_out_of_range_are_refused(tmp_path: Path) -> None:
    result = run_cli(tmp_path, "run", "--workers", "0")
    assert (result.returncode, result.stderr) == (
        1,
        'Error: invalid argument "0" for "--workers" flag: must be between 1 and 1024\n',
    )
    result = run_cli(tmp_path, "run", WORKERS="2000")
    assert (result.returncode, result.stderr) == (
        1,
        'Error: invalid value "2000" for environment variable WORKERS: must be between 1 and 1024\n',
    )
    assert not (tmp_path / "s.sock").exists()


def test_workers_default_to_the_cpus_the_daemon_may_use(tmp_path: Path) -> None:
    proxy = ProxyProcess(tmp=tmp_path, workers=0, preexec=lambda: os.sched_setaffinity(0, {0})).start()
    try:
        started = proxy.wait_log(lambda e: e.get("msg") == "Server started")
        assert started["workers"] == 1  # one CPU allowed by its affinity: one worker
    finally:
        proxy.stop()


def test_a_second_daemon_on_the_same_socket_is_refused(control_proxy: ProxyProcess, backend: Backend) -> None:
    control_proxy.deploy("app", backend.address)
    second = subprocess.run(
        [sys.executable, "-m", "proxy.cli.main", "run", "--http-port", "0", "--bind", "127.0.0.1"],
        env=control_proxy.env,
        capture_output=True,
        text=True,
        timeout=30,
        cwd=control_proxy.tmp,
    )
    assert second.returncode == 1
    assert second.stderr == f"Error: another kamal-proxy is already running on {control_proxy.socket}\n"
    assert "app" in json.loads(control_proxy.ctl("list", "--json").stdout)  # the first still answers


def test_a_stale_socket_file_is_replaced(tmp_path: Path) -> None:
    path = tmp_path / "kamal-proxy.sock"
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as stale:
        stale.bind(str(path))  # bound, never listening: what a killed daemon leaves
    proxy = ProxyProcess(tmp=tmp_path).start()
    try:
        assert proxy.ctl("list", "--json").stdout.strip() == "{}"
    finally:
        proxy.stop()


def low_fd_limit() -> None:
    resource.setrlimit(resource.RLIMIT_NOFILE, (64, 64))


def test_running_out_of_file_descriptors_is_logged_and_recovers(tmp_path: Path, backend: Backend) -> None:
    proxy = ProxyProcess(tmp=tmp_path, preexec=low_fd_limit).start()
    clients: list[socket.socket] = []
    try:
        proxy.deploy("app", backend.address)
        for _ in range(80):  # more connections than the daemon has descriptors for
            clients.append(socket.create_connection(("127.0.0.1", proxy.port), timeout=5))
        entry = proxy.wait_log(lambda e: e.get("msg") == "Unable to accept connections: too many open files")
        assert entry["level"] == "ERROR"
        for client in clients:
            client.close()
        clients.clear()
        deadline = time.monotonic() + 10
        status = 0
        while time.monotonic() < deadline and status != 200:
            try:
                status = httpx.get(proxy.url("/echo"), timeout=2).status_code
            except httpx.HTTPError:
                time.sleep(0.1)
        assert status == 200
        lines = [
            e for e in proxy.logs() if e.get("msg") == "Unable to accept connections: too many open files"
        ]
        assert len(lines) <= 2  # rate-limited
    finally:
        for client in clients:
            client.close()
        proxy.stop()


def test_recurring_errors_are_logged_once_per_interval_with_a_repeat_count() -> None:
    log = CapturedLog()
    limited = RateLimited(log=log, interval=10.0)
    assert limited.error(100.0, "Unable to accept connections: too many open files", connections=5)
    for now in (101.0, 105.0, 109.9):
        assert not limited.error(now, "Unable to accept connections: too many open files", connections=5)
    assert limited.error(101.0, "Another problem")  # each message has its own limit
    assert limited.error(110.0, "Unable to accept connections: too many open files", connections=7)
    entries = log.entries("Unable to accept connections: too many open files")
    assert [(e["level"], e["connections"], e.get("repeated")) for e in entries] == [
        ("ERROR", 5, None),
        ("ERROR", 7, 3),
    ]
    log.close()


def test_event_loop_error_reports_go_to_the_json_log(tmp_path: Path) -> None:
    """asyncio reports a failed accept (EMFILE) through the loop's exception handler."""
    log = CapturedLog()
    daemon = Daemon(config=DaemonConfig(socket_path=tmp_path / "s", state_path=tmp_path / "state"), log=log)
    loop = asyncio.new_event_loop()
    try:
        context = {
            "message": "socket.accept() out of system resource",
            "exception": OSError(24, "Too many open files"),
        }
        handler = loop_error_handler(daemon.errors)
        handler(loop, context)
        handler(loop, context)
    finally:
        loop.close()
    entries = log.entries("Event loop error")
    assert len(entries) == 1
    assert entries[0]["error"] == "socket.accept() out of system resource"
    assert entries[0]["exception"] == "OSError: [Errno 24] Too many open files"
    log.close()


ISSUE_REQUESTS = [
    b'{"command":"deploy","args":{"service":"app","targets":["web:80"],"service_options":{"hosts":"a.test"}}}',
    b'{"command":"deploy","args":{"service":"app","targets":["web:80"],"service_options":"x"}}',
    b'{"command":"deploy","args":{"service":"app","targets":["web:80"],"target_options":{"buffer_requests":"no"}}}',
    b'{"command":"deploy","args":{"service":"app","targets":["web:80"],'
    b'"target_options":{"max_request_body_size":"100"}}}',
    b'{"command":"deploy","args":{"service":"app","targets":["web:80"],"deployment_options":{"drain_timeout":NaN}}}',
    b'{"command":"deploy","args":{"service":"app","targets":["web:80"],"target_options":{"response_timeout":1e400}}}',
    b'{"command":"list"',
    b"x" * 2_000_000,
]


def test_the_issues_bad_commands_over_the_real_socket_change_nothing(
    control_proxy: ProxyProcess, backend: Backend
) -> None:
    proxy = control_proxy
    proxy.deploy("app", backend.address, args=("--host=app.test",))
    state, listing = proxy.state_path.read_bytes(), proxy.ctl("list", "--json").stdout
    for raw in ISSUE_REQUESTS:
        with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as sock:
            sock.settimeout(10)
            sock.connect(str(proxy.socket))
            try:
                sock.sendall(raw + b"\n")
            except OSError:
                pass  # the daemon answered and closed before the oversized request was all sent
            reply = json.loads(sock.makefile("rb").readline())
        assert reply["ok"] is False and reply["error"], raw[:80]
        assert proxy.state_path.read_bytes() == state
        assert proxy.ctl("list", "--json").stdout == listing
    assert (
        httpx.post(proxy.url("/echo"), headers={"Host": "app.test"}, content=b"x" * 1000).status_code == 200
    )
    proxy.deploy("other", backend.address, args=("--host=other.test",))  # the control plane still works


def test_a_daemon_starting_while_another_holds_the_lock_is_refused(tmp_path: Path) -> None:
    """The lock closes the window between the socket check and the socket bind: a second `run`
    started at the same moment as the first is refused, before it binds any port."""
    path = tmp_path / "kamal-proxy.sock"
    holder = claim_socket(path)  # what a daemon still starting up holds
    try:
        result = run_cli(
            tmp_path, "run", "--http-port", "0", "--https-port", "0", KAMAL_PROXY_SOCKET=str(path)
        )
        assert (result.returncode, result.stderr) == (
            1,
            f"Error: another kamal-proxy is already running on {path}\n",
        )
        assert not path.exists()  # it never took the socket
    finally:
        os.close(holder)
    proxy = ProxyProcess(tmp=tmp_path).start()  # released: the next daemon starts
    try:
        assert proxy.ctl("list", "--json").stdout.strip() == "{}"
    finally:
        proxy.stop()


def test_the_daemon_lock_is_exclusive_and_released_on_close(tmp_path: Path) -> None:
    path = tmp_path / "sub" / "kamal-proxy.sock"
    first = claim_socket(path)
    with pytest.raises(DaemonRunning, match="already running"):
        claim_socket(path)
    os.close(first)
    os.close(claim_socket(path))
    assert (tmp_path / "sub" / "kamal-proxy.sock.lock").stat().st_mode & 0o777 == 0o600
