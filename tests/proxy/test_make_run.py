"""`make run` (scripts/demo.sh): a fresh state every run, and a clear message when a port is taken."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

from tests.proxy.conftest import ROOT, clean_env

SCRIPT = ROOT / "scripts" / "demo.sh"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def demo_env(tmp_path: Path, port: int, https_port: int, demo_port: int) -> dict[str, str]:
    return clean_env(
        PY=sys.executable,
        PORT=str(port),
        HTTPS_PORT=str(https_port),
        DEMO_PORT=str(demo_port),
        TMPDIR=str(tmp_path),
    )


class Demo:
    def __init__(self, tmp_path: Path, ports: tuple[int, int, int]) -> None:
        self.port = ports[0]
        self.output = tmp_path / f"demo-{time.monotonic_ns()}.log"
        with open(self.output, "wb") as out:
            self.proc = subprocess.Popen(
                ["sh", str(SCRIPT)],
                env=demo_env(tmp_path, *ports),
                stdout=out,
                stderr=subprocess.STDOUT,
                start_new_session=True,  # Ctrl-C goes to the whole group, as in a terminal
            )
        deadline = time.monotonic() + 30
        while "Demo deployed" not in self.text():
            assert self.proc.poll() is None, self.text()
            assert time.monotonic() < deadline, self.text()
            time.sleep(0.05)
        line = next(x for x in self.text().splitlines() if "KAMAL_PROXY_SOCKET=" in x)
        self.socket = line.split("KAMAL_PROXY_SOCKET=")[1].split()[0]

    def text(self) -> str:
        return self.output.read_text(errors="replace")

    def get(self) -> int:
        request = urllib.request.Request(f"http://127.0.0.1:{self.port}/", headers={"Host": "demo.localhost"})
        try:
            with urllib.request.urlopen(request, timeout=10) as response:
                return int(response.status)
        except urllib.error.HTTPError as exc:
            return exc.code

    def ctl(self, *args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [sys.executable, "-m", "proxy.cli.main", *args],
            env=clean_env(KAMAL_PROXY_SOCKET=self.socket),
            capture_output=True,
            text=True,
            timeout=30,
            cwd=ROOT,
        )

    def interrupt(self) -> int:
        os.killpg(self.proc.pid, signal.SIGINT)
        return self.proc.wait(20)


def test_every_run_starts_from_a_fresh_state_and_cleans_up(tmp_path: Path) -> None:
    ports = (free_port(), free_port(), free_port())
    first = Demo(tmp_path, ports)
    try:
        assert first.get() == 200
        assert first.ctl("pause", "demo").returncode == 0  # what a person might try in the demo
        assert "paused" in first.ctl("list").stdout
    finally:
        first.interrupt()
    assert not Path(first.socket).parent.exists(), "the run's state is removed on exit"

    second = Demo(tmp_path, ports)
    try:
        assert second.socket != first.socket
        assert second.get() == 200, "a new run does not come back paused"
        assert "running" in second.ctl("list").stdout
    finally:
        second.interrupt()


def test_a_taken_port_is_named_with_the_variable_that_changes_it(tmp_path: Path) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        result = subprocess.run(
            ["sh", str(SCRIPT)],
            env=demo_env(tmp_path, port, free_port(), free_port()),
            capture_output=True,
            text=True,
            timeout=30,
        )
    assert result.returncode == 1
    assert result.stderr == (
        f"make run: port {port} is already in use (PORT={port}). Stop what listens there, or pick "
        f"another port: make run PORT={port + 1}\n"
    )
    assert list(tmp_path.glob("kamal-proxy-demo.*")) == [], "nothing was started"
