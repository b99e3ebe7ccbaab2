"""pause / stop / resume: held requests, maintenance pages, health checks let through, state kept."""

from __future__ import annotations

import threading
import time
from pathlib import Path

import httpx
import pytest

from tests.proxy.backend import Backend
from tests.proxy.conftest import ProxyProcess
from tests.proxy.test_cli import bash


@pytest.fixture(params=[1, 2], ids=["1-worker", "2-workers"])
def workers(request: pytest.FixtureRequest) -> int:
    """Modes must reach every worker: these tests run with one worker and with two."""
    return int(request.param)


def test_stop_serves_503_with_message_and_resume_restores(proxy: ProxyProcess, backend: Backend) -> None:
    proxy.deploy("app", backend.address)
    proxy.ctl("stop", "app", "--message=Back at <5pm>")
    response = httpx.get(proxy.url("/echo"))
    assert response.status_code == 503
    assert response.headers["content-type"] == "text/html; charset=utf-8"
    assert "Back at &lt;5pm&gt;" in response.text
    assert "stopped" in proxy.ctl("list").stdout
    up = httpx.get(proxy.url("/up"))
    assert (up.status_code, up.content) == (200, b"")  # health checks pass while stopped
    assert backend.requests == 0
    proxy.ctl("resume", "app")
    assert httpx.get(proxy.url("/echo")).status_code == 200


def test_paused_requests_are_held_and_go_to_the_targets_active_at_resume(
    proxy: ProxyProcess, backend: Backend, backend2: Backend
) -> None:
    proxy.deploy("app", backend.address)
    proxy.ctl("pause", "app")
    results: list[httpx.Response] = []
    held = threading.Thread(
        target=lambda: results.append(httpx.post(proxy.url("/echo"), content=b"held body", timeout=20))
    )
    held.start()
    time.sleep(0.5)
    assert results == []  # still waiting
    proxy.deploy("app", backend2.address)  # deploys work while paused
    proxy.ctl("resume", "app")
    held.join(10)
    assert results[0].status_code == 200
    data = results[0].json()
    assert data["backend"] == "two" and data["body"] == "held body"


def test_stop_lets_in_flight_requests_finish_before_returning(proxy: ProxyProcess, backend: Backend) -> None:
    proxy.deploy("app", backend.address)
    results: list[int] = []
    inflight = threading.Thread(
        target=lambda: results.append(httpx.get(proxy.url("/slow?ms=700")).status_code)
    )
    inflight.start()
    time.sleep(0.2)
    started = time.monotonic()
    proxy.ctl("stop", "app")
    assert time.monotonic() - started >= 0.3
    inflight.join()
    assert results == [200]


def test_modes_survive_a_restart(tmp_path: Path, backend: Backend) -> None:
    proxy = ProxyProcess(tmp=tmp_path).start()
    proxy.deploy("app", backend.address)
    proxy.ctl("stop", "app", "--message=maintenance")
    proxy.stop(9)
    proxy.start()
    try:
        response = httpx.get(proxy.url("/echo"))
        assert response.status_code == 503 and "maintenance" in response.text
        proxy.ctl("resume", "app")
        assert httpx.get(proxy.url("/echo")).status_code == 200
    finally:
        proxy.stop()


def test_kamal_maintenance_and_live_lines(control_proxy: ProxyProcess, backend: Backend) -> None:
    control_proxy.deploy("app-web", backend.address)
    stop = bash(control_proxy, 'kamal-proxy stop app-web --drain-timeout="30s" --message="Hi"')
    assert (stop.returncode, stop.stderr) == (0, "")
    assert "Hi" in httpx.get(control_proxy.url("/")).text
    assert bash(control_proxy, "kamal-proxy resume app-web").returncode == 0
    assert httpx.get(control_proxy.url("/echo")).status_code == 200
    missing = control_proxy.ctl("pause", "nope", check=False)
    assert (missing.returncode, missing.stderr) == (1, "Error: service not found\n")
