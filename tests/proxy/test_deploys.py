"""Health-gated deploys, swaps, drains, routing rules and removal, through the real daemon and CLI.

The router's decisions (health gating, deploy and drain timeouts, conflicts, rotation) are tested
in-process with a manual clock in test_router.py; these keep what needs the real daemon: real
health checks over HTTP, requests in flight across a swap, the CLI, the state file across restarts.
"""

from __future__ import annotations

import threading
import time
from pathlib import Path

import httpx

from tests.proxy.backend import Backend
from tests.proxy.conftest import ProxyProcess, raw_request, status_of


def backend_of(proxy: ProxyProcess, path: str = "/echo", host: str | None = None) -> str:
    headers = {"Host": host} if host else {}
    response = httpx.get(proxy.url(path), headers=headers)
    return str(response.headers.get("x-backend", str(response.status_code)))


def test_deploy_routes_to_the_target_once_healthy(proxy: ProxyProcess, backend: Backend) -> None:
    result = proxy.deploy("app", backend.address)
    assert result.stdout == "" and result.stderr == ""
    assert backend.health_checks >= 1
    assert backend_of(proxy) == "one"


def test_redeploy_swaps_targets_and_drains_the_old_ones(
    proxy: ProxyProcess, backend: Backend, backend2: Backend
) -> None:
    proxy.deploy("app", backend.address)
    results: list[int] = []

    def slow_request() -> None:
        results.append(httpx.get(proxy.url("/slow?ms=700"), timeout=10).status_code)

    inflight = threading.Thread(target=slow_request)
    inflight.start()
    time.sleep(0.2)
    started = time.monotonic()
    proxy.deploy("app", backend2.address)
    took = time.monotonic() - started
    inflight.join()
    assert results == [200]  # the in-flight request to the old target finished
    assert took >= 0.3  # deploy returned only after the drain
    assert backend_of(proxy) == "two"


def test_drain_timeout_cancels_leftover_requests_with_504(
    proxy: ProxyProcess, backend: Backend, backend2: Backend
) -> None:
    proxy.deploy("app", backend.address)
    results: list[int] = []
    inflight = threading.Thread(
        target=lambda: results.append(httpx.get(proxy.url("/slow?ms=5000"), timeout=10).status_code)
    )
    inflight.start()
    time.sleep(0.2)
    started = time.monotonic()
    proxy.deploy("app", backend2.address, args=("--drain-timeout=500ms",))
    assert time.monotonic() - started < 3
    inflight.join()
    assert results == [504]


def test_websockets_to_old_targets_are_closed_at_once_on_swap(
    proxy: ProxyProcess, backend: Backend, backend2: Backend
) -> None:
    proxy.deploy("app", backend.address)
    sock = proxy.connect()
    response = raw_request(
        sock, b"GET /ws HTTP/1.1\r\nHost: a\r\nConnection: Upgrade\r\nUpgrade: websocket\r\n\r\n"
    )
    assert status_of(response) == 101
    started = time.monotonic()
    proxy.deploy("app", backend2.address, args=("--drain-timeout=10s",))
    assert time.monotonic() - started < 5  # no waiting for the tunnel to end by itself
    sock.settimeout(5)
    assert sock.recv(10) == b""


def test_failed_deploy_leaves_previous_targets_serving_and_state_byte_for_byte_intact(
    control_proxy: ProxyProcess, backend: Backend, backend2: Backend
) -> None:
    proxy = control_proxy
    proxy.deploy("app", backend.address, args=("--host=app.example.com",))
    state_before = proxy.state_path.read_bytes()
    list_before = proxy.ctl("list", "--json").stdout
    backend2.healthy = False
    result = proxy.ctl(
        "deploy", "app", f"--target={backend2.address}", "--host=new.example.com",
        "--deploy-timeout=600ms", "--health-check-interval=100ms", check=False,
    )  # fmt: skip
    assert result.returncode == 1
    assert result.stderr == "Error: target failed to become healthy within configured timeout (600ms)\n"
    assert proxy.state_path.read_bytes() == state_before
    assert proxy.ctl("list", "--json").stdout == list_before
    assert backend_of(proxy, host="app.example.com") == "one"
    assert backend_of(proxy, host="new.example.com") == "404"


def test_no_healthy_target_is_503_until_one_recovers(
    proxy: ProxyProcess, backend: Backend, backend2: Backend
) -> None:
    # Which target is in rotation when is tested in-process (test_router.py); this is the data
    # plane's answer when none is.
    proxy.deploy("app", backend.address, backend2.address, args=("--health-check-timeout=200ms",))
    backend.healthy = backend2.healthy = False
    deadline = time.monotonic() + 5
    while time.monotonic() < deadline and backend_of(proxy) != "503":
        time.sleep(0.05)
    response = httpx.get(proxy.url("/echo"))
    assert response.status_code == 503
    assert "503 — Service Temporarily Unavailable" in response.text
    backend2.healthy = True
    deadline = time.monotonic() + 5
    while time.monotonic() < deadline and backend_of(proxy) != "two":
        time.sleep(0.05)
    assert backend_of(proxy) == "two"


def test_host_routing_exact_wildcard_and_catch_all(
    control_proxy: ProxyProcess, backend: Backend, backend2: Backend
) -> None:
    # The lookup rules are ServiceMap's (test_service_map.py); this is them through the real daemon.
    proxy = control_proxy
    third = Backend("three")
    try:
        proxy.deploy("exact", backend.address, args=("--host=app.example.com,www.example.com",))
        proxy.deploy("wild", backend2.address, args=("--host=*.example.com",))
        proxy.deploy("default", third.address)
        assert backend_of(proxy, host="app.example.com") == "one"
        assert backend_of(proxy, host="www.example.com:8080") == "one"  # port stripped
        assert backend_of(proxy, host="other.example.com") == "two"
        assert backend_of(proxy, host="a.b.example.com") == "three"  # one level only
        assert backend_of(proxy, host="example.com") == "three"
        assert backend_of(proxy, host="unknown.test") == "three"
    finally:
        third.stop()


def test_path_prefixes_longest_first_with_strip_and_no_fall_through(
    proxy: ProxyProcess, backend: Backend, backend2: Backend
) -> None:
    proxy.deploy("api", backend.address, args=("--host=app.example.com", "--path-prefix=/api"))
    proxy.deploy("internal", backend2.address, args=("--host=app.example.com", "--path-prefix=api/internal/"))
    proxy.deploy(
        "raw",
        backend2.address,
        args=("--host=raw.example.com", "--path-prefix=/raw", "--strip-path-prefix=false"),
    )

    def get(path: str, host: str = "app.example.com") -> httpx.Response:
        return httpx.get(proxy.url(path), headers={"Host": host})

    assert get("/api/echo?x=1").json()["target"] == "/echo?x=1"
    get("/api")
    assert backend.seen[-1]["target"] == "/"
    internal = get("/api/internal/echo?a=b").json()
    assert internal["backend"] == "two" and internal["target"] == "/echo?a=b"
    assert get("/apiary").status_code == 404  # the exact host has bindings: no fall-through
    get("/raw/file", host="raw.example.com")
    assert backend2.seen[-1]["target"] == "/raw/file"


def test_remove_and_rm_delete_routes(control_proxy: ProxyProcess, backend: Backend) -> None:
    proxy = control_proxy
    proxy.deploy("app", backend.address)
    proxy.ctl("remove", "app")
    assert backend_of(proxy) == "404"
    proxy.deploy("app", backend.address)
    proxy.ctl("rm", "app")
    result = proxy.ctl("remove", "app", check=False)
    assert (result.returncode, result.stderr) == (1, "Error: service not found\n")


def test_list_table_and_json(control_proxy: ProxyProcess, backend: Backend, backend2: Backend) -> None:
    proxy = control_proxy
    proxy.deploy("web", backend.address, backend2.address, args=("--host=a.com,b.com",))
    proxy.deploy("api", backend.address, args=("--path-prefix=/api",))
    table = proxy.ctl("list").stdout
    lines = table.splitlines()  # stdout is a pipe: no colour (tests/proxy/test_cli_output.py)
    assert lines[0].startswith("Service")
    assert lines[1].startswith("api") and lines[2].startswith("web")
    assert f"{backend.address},{backend2.address}" in lines[2] and "a.com,b.com" in lines[2]
    assert lines[2].split()[-2:] == ["running", "no"]
    assert proxy.ctl("ls").stdout == table
    import json

    data = json.loads(proxy.ctl("list", "--json").stdout)
    assert data["web"]["hosts"] == ["a.com", "b.com"]
    assert data["api"]["path_prefixes"] == ["/api"]
    assert data["web"]["targets"][0] == {"address": backend.address, "state": "healthy"}


def test_redeploy_under_load_has_no_errors(proxy: ProxyProcess, backend: Backend, backend2: Backend) -> None:
    proxy.deploy("app", backend.address)
    stop = threading.Event()
    failures: list[str] = []
    counts = [0] * 8

    def client(index: int) -> None:
        with httpx.Client(timeout=10) as http:
            deadline = time.monotonic() + 8
            while not stop.is_set() and time.monotonic() < deadline:
                try:
                    response = http.get(proxy.url("/echo"))
                    if response.status_code != 200:
                        failures.append(str(response.status_code))
                    counts[index] += 1
                except httpx.HTTPError as exc:
                    failures.append(repr(exc))

    threads = [threading.Thread(target=client, args=(i,)) for i in range(8)]
    for t in threads:
        t.start()
    try:
        for i in range(6):
            target = backend2 if i % 2 == 0 else backend
            proxy.deploy("app", target.address, args=("--drain-timeout=2s",))
            time.sleep(0.3)
    finally:
        stop.set()
        for t in threads:
            t.join(15)
    assert failures == []
    assert sum(counts) > 100


def test_state_is_restored_after_sigkill(tmp_path: Path, backend: Backend, backend2: Backend) -> None:
    proxy = ProxyProcess(tmp=tmp_path).start()
    proxy.deploy(
        "web", backend.address, backend2.address, args=("--host=app.example.com", "--target-timeout=7s")
    )
    proxy.deploy("api", backend.address, args=("--path-prefix=/api",))
    listed = proxy.ctl("list", "--json").stdout
    proxy.stop(9)
    proxy.start()
    assert proxy.wait_log(lambda e: e.get("msg") == "Restored saved state")
    assert proxy.ctl("list", "--json").stdout == listed
    assert backend_of(proxy, host="app.example.com") in ("one", "two")
    assert httpx.get(proxy.url("/api/echo")).json()["target"] == "/echo"
    proxy.stop()


def test_state_file_of_kamal_proxy_itself_is_restored(tmp_path: Path, backend: Backend) -> None:
    proxy = ProxyProcess(tmp=tmp_path)
    proxy.state_path.parent.mkdir(parents=True)
    # kamal-proxy 0.8 wrote single targets and hosts at the top level; later versions nest them.
    proxy.state_path.write_text(
        '[{"name":"legacy","hosts":["old.example.com"],"active_target":"%s","options":{},'
        '"target_options":{"health_check_config":{"path":"/up","interval":1000000000,"timeout":5000000000},'
        '"response_timeout":30000000000}},'
        '{"name":"current","options":{"hosts":["new.example.com"],"path_prefixes":["/"],"tls_enabled":false,'
        '"strip_prefix":true,"writer_affinity_timeout":1000000000},"target_options":{"health_check_config":'
        '{"path":"/up","port":0,"interval":1000000000,"timeout":5000000000,"host":""},'
        '"response_timeout":30000000000,"forward_headers":true},"active_targets":["%s"],"active_readers":[],'
        '"rollout_targets":null,"rollout_readers":null,"pause_controller":{"state":0,"stop_message":"",'
        '"fail_after":0},"rollout_controller":null}]\n' % (backend.address, backend.address)
    )
    proxy.start()
    try:
        assert backend_of(proxy, host="old.example.com") == "one"
        assert backend_of(proxy, host="new.example.com") == "one"
    finally:
        proxy.stop()


def test_first_start_logs_no_previous_state(control_proxy: ProxyProcess) -> None:
    entry = control_proxy.wait_log(lambda e: e.get("msg") == "No previous state to restore")
    assert entry["path"] == str(control_proxy.state_path)


def test_state_file_is_private_and_written_atomically(control_proxy: ProxyProcess, backend: Backend) -> None:
    control_proxy.deploy("app", backend.address)
    assert control_proxy.state_path.stat().st_mode & 0o777 == 0o600
    assert control_proxy.state_path.parent.stat().st_mode & 0o777 == 0o700
    assert control_proxy.socket.stat().st_mode & 0o777 == 0o600
    leftovers = [p.name for p in control_proxy.state_path.parent.iterdir() if p.name != "kamal-proxy.state"]
    assert leftovers == []


def test_long_deploy_does_not_block_list(control_proxy: ProxyProcess, backend: Backend) -> None:
    backend.healthy = False
    slow = control_proxy.ctl_async("deploy", "app", f"--target={backend.address}", "--deploy-timeout=3s")
    time.sleep(0.5)
    started = time.monotonic()
    control_proxy.ctl("list")
    assert time.monotonic() - started < 2
    assert slow.poll() is None  # still waiting for health
    backend.healthy = True
    assert slow.wait(10) == 0


def test_sigterm_lets_in_flight_requests_finish(tmp_path: Path, backend: Backend) -> None:
    proxy = ProxyProcess(tmp=tmp_path).start()
    proxy.deploy("app", backend.address)
    results: list[int] = []
    t = threading.Thread(target=lambda: results.append(httpx.get(proxy.url("/slow?ms=800")).status_code))
    t.start()
    time.sleep(0.3)
    assert proxy.stop() == 0
    t.join()
    assert results == [200]
    assert any(e.get("msg") == "Server stopped" for e in proxy.logs())


def test_health_checks_send_kamal_proxy_agent_target_host_and_follow_redirects(
    proxy: ProxyProcess, backend: Backend, backend2: Backend
) -> None:
    proxy.deploy("app", backend.address)
    assert backend.health_headers["user-agent"] == "kamal-proxy"
    assert backend.health_headers["host"] == backend.address
    proxy.deploy(
        "other",
        backend2.address,
        args=("--host=o.test", "--health-check-path=redir", "--health-check-host=app.internal"),
    )
    assert backend2.health_headers["host"] == "app.internal"
    assert backend_of(proxy, host="o.test") == "two"
