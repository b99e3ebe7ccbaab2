"""Fixtures: the real daemon as a subprocess (temp HOME, own socket, port 0 on 127.0.0.1), real backends."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from proxy import native
from tests.proxy.backend import Backend

ROOT = Path(__file__).resolve().parents[2]
PARSERS = ["httptools", "h11"]


def clean_env(**extra: str) -> dict[str, str]:
    env = {
        k: v
        for k, v in os.environ.items()
        if (not k.startswith("KAMAL_PROXY_") or k == native.PURE_ENV)  # the pure-Python test run
        and k not in ("HTTP_PORT", "HTTPS_PORT", "METRICS_PORT", "DEBUG", "XDG_RUNTIME_DIR", "WORKERS")
    }
    env["PYTHONPATH"] = str(ROOT)
    env.update(extra)
    return env


class ProxyProcess:
    """The daemon under test and a way to drive it with the real CLI."""

    def __init__(
        self,
        *,
        tmp: Path,
        parser: str = "httptools",
        args: tuple[str, ...] = (),
        preexec: Callable[[], None] | None = None,
        workers: int = 1,
    ) -> None:
        self.tmp = tmp
        self.workers = workers
        self.preexec = preexec
        self.parser = parser
        self.args = args
        self.home = tmp / "home"
        self.home.mkdir(exist_ok=True)
        self.socket = tmp / "kamal-proxy.sock"
        self.env = clean_env(HOME=str(self.home), KAMAL_PROXY_SOCKET=str(self.socket))
        self.log_path = tmp / "proxy.log"
        self.state_path = self.home / ".config" / "kamal-proxy" / "kamal-proxy.state"
        self.proc: subprocess.Popen[bytes] | None = None
        self.port = 0
        self.https_port = 0
        self._log_offset = 0

    def start(self) -> ProxyProcess:
        self._log_offset = self.log_path.stat().st_size if self.log_path.exists() else 0
        with open(self.log_path, "ab") as log:
            self.proc = subprocess.Popen(
                [
                    sys.executable,
                    "-m",
                    "proxy.cli.main",
                    "run",
                    "--http-port",
                    "0",
                    "--https-port",
                    "0",
                    "--bind",
                    "127.0.0.1",
                    "--http-parser",
                    self.parser,
                    *(["--workers", str(self.workers)] if self.workers else []),  # 0: the daemon's default
                    *self.args,
                ],
                stdout=log,
                stderr=subprocess.STDOUT,
                env=self.env,
                cwd=self.tmp,
                preexec_fn=self.preexec,
            )
        deadline = time.monotonic() + 15
        while time.monotonic() < deadline:
            for entry in self.logs():
                if entry.get("msg") == "Server started":
                    self.port = int(entry["http"])
                    self.https_port = int(entry["https"])
                    return self
            if self.proc.poll() is not None:
                raise RuntimeError(f"proxy exited: {self.log_path.read_text()}")
            time.sleep(0.02)
        raise RuntimeError("proxy did not start")

    def logs(self) -> list[dict[str, Any]]:
        """The JSON log lines written since this process started."""
        if not self.log_path.exists():
            return []
        with open(self.log_path, "rb") as f:
            f.seek(self._log_offset)
            data = f.read()
        out = []
        for line in data.splitlines():
            try:
                out.append(json.loads(line))
            except ValueError:
                out.append({"raw": line.decode("latin-1")})
        return out

    def wait_log(self, predicate: Any, timeout: float = 5.0) -> dict[str, Any]:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            for entry in self.logs():
                if predicate(entry):
                    return entry
            time.sleep(0.02)
        raise AssertionError("log line not found")

    def requests_logged(self) -> list[dict[str, Any]]:
        return [e for e in self.logs() if e.get("msg") == "Request"]

    def ctl(self, *args: str, check: bool = True, timeout: float = 60) -> subprocess.CompletedProcess[str]:
        result = subprocess.run(
            [sys.executable, "-m", "proxy.cli.main", *args],
            env=self.env,
            capture_output=True,
            text=True,
            timeout=timeout,
            cwd=self.tmp,
        )
        if check and result.returncode != 0:
            raise AssertionError(f"proxyctl {' '.join(args)} failed: {result.stderr}")
        return result

    def ctl_async(self, *args: str) -> subprocess.Popen[str]:
        return subprocess.Popen(
            [sys.executable, "-m", "proxy.cli.main", *args],
            env=self.env,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            cwd=self.tmp,
        )

    def deploy(
        self, service: str, *targets: str, args: tuple[str, ...] = ()
    ) -> subprocess.CompletedProcess[str]:
        flags = [f"--target={t}" for t in targets]
        return self.ctl("deploy", service, *flags, "--health-check-interval=100ms", *args)

    def url(self, path: str = "/") -> str:
        return f"http://127.0.0.1:{self.port}{path}"

    def stop(self, sig: int = signal.SIGTERM, timeout: float = 15) -> int:
        assert self.proc is not None
        if self.proc.poll() is None:
            self.proc.send_signal(sig)
        return self.proc.wait(timeout)

    def connect(self) -> socket.socket:
        sock = socket.create_connection(("127.0.0.1", self.port), timeout=10)
        return sock


@pytest.fixture(params=PARSERS)
def parser(request: pytest.FixtureRequest) -> str:
    return str(request.param)


@pytest.fixture
def workers() -> int:
    """Worker processes of the daemon under test; a module overrides this to run its tests with more."""
    return 1


@pytest.fixture
def proxy(tmp_path: Path, parser: str, workers: int) -> Iterator[ProxyProcess]:
    """The daemon, once per parser: every proxying test runs against both."""
    p = ProxyProcess(tmp=tmp_path, parser=parser, workers=workers).start()
    yield p
    p.stop(signal.SIGKILL)


@pytest.fixture
def control_proxy(tmp_path: Path, workers: int) -> Iterator[ProxyProcess]:
    """The daemon for control-plane tests, where the parser does not matter."""
    p = ProxyProcess(tmp=tmp_path, workers=workers).start()
    yield p
    p.stop(signal.SIGKILL)


@pytest.fixture
def backend() -> Iterator[Backend]:
    b = Backend("one")
    yield b
    b.stop()


@pytest.fixture
def backend2() -> Iterator[Backend]:
    b = Backend("two")
    yield b
    b.stop()


def raw_request(sock: socket.socket, data: bytes, *, until_close: bool = False, timeout: float = 5) -> bytes:
    """Send bytes, read one response (by Content-Length or chunked end) or until the peer closes."""
    sock.settimeout(timeout)
    sock.sendall(data)
    return read_response(sock, until_close=until_close)


def read_response(sock: socket.socket, *, until_close: bool = False) -> bytes:
    buf = b""
    while True:
        if not until_close and b"\r\n\r\n" in buf:
            head, _, body = buf.partition(b"\r\n\r\n")
            lower = head.lower()
            if b"content-length:" in lower:
                length = int(lower.split(b"content-length:")[1].split(b"\r\n")[0])
                if len(body) >= length:
                    return buf
            elif b"transfer-encoding: chunked" in lower:
                if body.endswith(b"0\r\n\r\n"):
                    return buf
            elif lower.startswith(b"http/1.1 1"):
                return buf
        try:
            piece = sock.recv(65536)
        except TimeoutError:
            return buf
        if not piece:
            return buf
        buf += piece


def status_of(response: bytes) -> int:
    return int(response.split(b" ", 2)[1])
