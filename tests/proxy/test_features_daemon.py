"""Issue 12 through the real daemon and the real CLI, on both parsers: canary rollouts (split,
state file, restore after SIGKILL, list), read targets with writer affinity, custom error pages
with a stop message, cookie path scoping with the client-IP header, and the metrics endpoint."""

from __future__ import annotations

import json
import signal
import socket
import urllib.request
from pathlib import Path

from prometheus_client.parser import text_string_to_metric_families

from proxy.rollout import RolloutSplit
from tests.proxy.backend import Backend
from tests.proxy.conftest import ProxyProcess, raw_request, status_of


def get(proxy: ProxyProcess, sock: socket.socket, path: str = "/echo", *, extra: str = "") -> bytes:
    head = f"GET {path} HTTP/1.1\r\nHost: app.test\r\n{extra}\r\n"
    return raw_request(sock, head.encode())


def backend_of(response: bytes) -> str:
    for line in response.split(b"\r\n"):
        if line.lower().startswith(b"x-backend:"):
            return line.split(b":", 1)[1].strip().decode()
    raise AssertionError(f"no X-Backend in {response[:200]!r}")


def to_rollout(proxy: ProxyProcess, values: list[str]) -> int:
    """How many of these kamal-rollout cookie values the proxy sends to the backend named "two"."""
    with proxy.connect() as sock:
        return sum(
            backend_of(get(proxy, sock, extra=f"Cookie: kamal-rollout={value}\r\n")) == "two"
            for value in values
        )


def service_json(proxy: ProxyProcess, name: str) -> dict[str, object]:
    services = json.loads(proxy.ctl("list", "--json").stdout)
    entry = services[name]
    assert isinstance(entry, dict)
    return entry


def test_rollout_splits_by_cookie_persists_and_survives_sigkill(
    proxy: ProxyProcess, backend: Backend, backend2: Backend
) -> None:
    proxy.deploy("app", backend.address)
    missing = proxy.ctl("rollout", "set", "app", "--percent", "50", check=False)
    assert (missing.returncode, missing.stderr) == (1, "Error: rollout target not set\n")
    unknown = proxy.ctl("rollout", "deploy", "nope", "--target", backend2.address, check=False)
    assert (unknown.returncode, unknown.stderr) == (1, "Error: service not found\n")
    no_flags = proxy.ctl("rollout", "set", "app", check=False)
    assert no_flags.stderr == "Error: at least one of the flags in the group [percent list] is required\n"
    proxy.ctl("rollout", "deploy", "app", "--target", backend2.address)

    values = [f"{i:05d}" for i in range(1000)]
    assert to_rollout(proxy, values[:50]) == 0  # deployed but no split: everything stays on active
    proxy.ctl("rollout", "set", "app", "--percent", "60", "--list", "special,vip")
    expected = sum(RolloutSplit(percent=60).uses_rollout(v) for v in values)
    assert 575 <= expected <= 625
    assert to_rollout(proxy, values) == expected  # kamal-proxy's hash, value for value
    assert to_rollout(proxy, ["vip"]) == 1 and to_rollout(proxy, [""]) == 0

    [saved] = json.loads(proxy.state_path.read_text())
    assert saved["rollout_targets"] == [backend2.address] and saved["rollout_readers"] == []
    controller = saved["rollout_controller"]
    assert (controller["percentage"], controller["allowlist"]) == (60, ["special", "vip"])
    assert controller["percentage_split_point"] == float(0xFFFFFFFF) * 0.6
    rollout = service_json(proxy, "app")["rollout"]
    assert isinstance(rollout, dict) and rollout["percentage"] == 60
    assert backend2.address in proxy.ctl("list").stdout

    proxy.stop(signal.SIGKILL)
    proxy.start()
    assert to_rollout(proxy, values[:200]) == sum(
        RolloutSplit(percent=60).uses_rollout(v) for v in values[:200]
    )
    assert to_rollout(proxy, ["special"]) == 1

    proxy.ctl("rollout", "stop", "app")
    assert to_rollout(proxy, values[:100]) == 0
    [saved] = json.loads(proxy.state_path.read_text())
    assert saved["rollout_controller"] is None and saved["rollout_targets"] == [backend2.address]


def test_rollout_deploy_is_health_gated(proxy: ProxyProcess, backend: Backend, backend2: Backend) -> None:
    proxy.deploy("app", backend.address)
    backend2.healthy = False
    failed = proxy.ctl(
        "rollout", "deploy", "app", "--target", backend2.address, "--deploy-timeout", "300ms", check=False
    )
    assert (failed.returncode, failed.stderr) == (
        1,
        "Error: target failed to become healthy within configured timeout (300ms)\n",
    )
    assert service_json(proxy, "app")["rollout"] is None


def test_reads_go_to_read_targets_and_a_write_pins_the_client_to_writers(
    proxy: ProxyProcess, backend: Backend, backend2: Backend
) -> None:
    proxy.deploy("app", backend.address, args=(f"--read-target={backend2.address}",))
    assert service_json(proxy, "app")["target"] == f"{backend.address},{backend2.address}"
    with proxy.connect() as sock:
        assert backend_of(get(proxy, sock)) == "two"
        response = raw_request(sock, b"POST /echo HTTP/1.1\r\nHost: app.test\r\nContent-Length: 0\r\n\r\n")
        assert backend_of(response) == "one"
        cookie = next(
            line for line in response.split(b"\r\n") if line.startswith(b"Set-Cookie: kamal-writer=")
        )
        value = cookie.split(b";")[0].split(b": ", 1)[1].decode()
        assert backend_of(get(proxy, sock, extra=f"Cookie: {value}\r\n")) == "one"
        opted_out = raw_request(
            sock,
            b"POST /headers?X-Writer-Affinity=false HTTP/1.1\r\nHost: app.test\r\nContent-Length: 0\r\n\r\n",
        )
        assert b"kamal-writer" not in opted_out and b"X-Writer-Affinity" not in opted_out
    [saved] = json.loads(proxy.state_path.read_text())
    assert saved["active_readers"] == [backend2.address]


def test_error_pages_render_the_stop_message_and_a_bad_directory_changes_nothing(
    proxy: ProxyProcess, backend: Backend, tmp_path: Path
) -> None:
    pages = tmp_path / "pages"
    pages.mkdir()
    (pages / "503.html").write_text("<h1>Maintenance</h1>{{ if .Message }}<p>{{ .Message }}</p>{{ end }}\n")
    proxy.deploy("app", backend.address, args=(f"--error-pages={pages}",))
    proxy.ctl("stop", "app", "--message", "Back at 5pm & later")
    with proxy.connect() as sock:
        response = get(proxy, sock, "/")
    assert status_of(response) == 503
    assert response.endswith(b"<h1>Maintenance</h1><p>Back at 5pm &amp; later</p>\n")
    (tmp_path / "bad").mkdir()
    (tmp_path / "bad" / "503.html").write_text("{{ .Nope }}")
    before = proxy.state_path.read_bytes()
    for directory in (tmp_path / "bad", tmp_path / "missing"):
        result = proxy.ctl(
            "deploy", "app", f"--target={backend.address}", f"--error-pages={directory}", check=False
        )
        assert (result.returncode, result.stderr) == (1, "Error: unable to load error pages\n")
    assert proxy.state_path.read_bytes() == before
    proxy.ctl("resume", "app")
    proxy.ctl(
        "deploy", "app", f"--target={backend.address}", "--target-timeout=200ms", f"--error-pages={pages}"
    )
    with proxy.connect() as sock:
        slow = get(proxy, sock, "/slow?ms=1000")
    assert status_of(slow) == 504 and b"Gateway Timeout" in slow  # no 504.html: the built-in page
    line = proxy.wait_log(lambda e: e.get("msg") == "Request" and e.get("path") == "/slow")
    assert line["target"] == backend.address  # the proxy's own 504 names the target it picked


def test_cookie_paths_are_scoped_and_the_client_ip_header_is_forwarded(
    proxy: ProxyProcess, backend: Backend
) -> None:
    proxy.deploy(
        "app",
        backend.address,
        args=("--path-prefix=/api", "--scope-cookie-paths", "--client-ip-header=X-Real-IP"),
    )
    with proxy.connect() as sock:
        response = get(proxy, sock, "/api/headers?Set-Cookie=a%3D1%3B+Path%3D%2Fadmin")
        assert b"Set-Cookie: a=1; Path=/api/admin\r\n" in response
        echo = get(proxy, sock, "/api/echo", extra="X-Real-IP: 203.0.113.9\r\n")
    headers = dict((k.lower(), v) for k, v in json.loads(echo.split(b"\r\n\r\n", 1)[1])["headers"])
    assert headers["x-forwarded-for"] == "203.0.113.9, 127.0.0.1"
    line = proxy.wait_log(lambda e: e.get("msg") == "Request" and e.get("path") == "/api/echo")
    assert line["remote_addr"] == "203.0.113.9"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def scrape(port: int, path: str = "/metrics") -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    with urllib.request.urlopen(f"http://127.0.0.1:{port}{path}", timeout=5) as reply:
        text = reply.read().decode()
    return {
        (s.name, tuple(sorted(s.labels.items()))): s.value
        for family in text_string_to_metric_families(text)
        for s in family.samples
    }


def test_metrics_after_a_known_sequence_of_requests(tmp_path: Path, parser: str, backend: Backend) -> None:
    port = free_port()
    proxy = ProxyProcess(tmp=tmp_path, parser=parser, args=("--metrics-port", str(port))).start()
    try:
        proxy.deploy("app", backend.address, args=("--host=app.test", "--exclude-metrics-path=/skip"))
        with proxy.connect() as sock:
            for _ in range(3):
                assert status_of(get(proxy, sock, "/echo")) == 200
            raw_request(sock, b"POST /status/418 HTTP/1.1\r\nHost: app.test\r\nContent-Length: 0\r\n\r\n")
            get(proxy, sock, "/skip")
            assert status_of(raw_request(sock, b"GET / HTTP/1.1\r\nHost: other.test\r\n\r\n")) == 404
        got = scrape(port)
        assert scrape(port, "/anything").keys() == got.keys()

        def value(name: str, **labels: str) -> float:
            return got[(name, tuple(sorted(labels.items())))]

        total = "kamal_proxy_http_requests_total"
        assert value(total, service="app", method="GET", status="200") == 3
        assert value(total, service="app", method="POST", status="418") == 1
        assert value(total, service="", method="GET", status="404") == 1
        assert not any(
            labels == (("method", "GET"), ("service", "app"), ("status", "404")) for _, labels in got
        )
        hist = "kamal_proxy_http_request_duration_seconds_count"
        assert value(hist, service="app", method="GET", status="200") == 3
        assert value("kamal_proxy_http_in_flight_requests", service="app") == 0
        assert value("kamal_proxy_targets", service="app", state="healthy") == 1
        assert value("kamal_proxy_upstream_idle_connections", service="app") >= 1
        assert any(name.startswith("process_") for name, _ in got)
    finally:
        proxy.stop(signal.SIGKILL)


def test_metrics_port_zero_serves_no_metrics(proxy: ProxyProcess) -> None:
    assert not any(e.get("msg") == "Metrics enabled" for e in proxy.logs())
