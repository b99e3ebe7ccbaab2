"""Fixed-response backends shared by every proxy under test.

Two implementations, same behaviour:

* ``nginx`` (default): one nginx master + one worker per backend port.  Written in C, it
  answers ``GET /`` with a 12-byte body at well over 100k req/s on one core, so it is not the
  bottleneck when it shares core 1 with wrk.  It also serves the large-body files with
  sendfile and reads-and-discards upload bodies.
* ``python``: a uvloop + httptools server in this file (``python -m benchmarks.backend``).
  Useful where nginx is absent, and as a sanity check; it is several times slower than nginx,
  so it caps the direct/peer numbers much lower.

Routes (both kinds):
  ``GET /``            -> 200, body ``hello world\\n`` (12 bytes)
  ``GET /bytes/1m``    -> 200, 1 MiB body;   ``GET /bytes/100m`` -> 200, 100 MiB body
  ``POST|PUT anything``-> reads the whole body, 200 with the 12-byte body
"""

from __future__ import annotations

import argparse
import asyncio
import os
import signal
import socket
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

BODY = b"hello world\n"
assert len(BODY) == 12

BIG_FILES = {"1m": 1 << 20, "100m": 100 << 20}


def free_port() -> int:
    """A currently free TCP port on 127.0.0.1 (bind port 0 and read it)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def wait_port(port: int, timeout: float = 10.0, proc: subprocess.Popen[bytes] | None = None) -> None:
    """Block until something accepts on 127.0.0.1:port."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc is not None and proc.poll() is not None:
            raise RuntimeError(f"process exited with {proc.returncode} before listening on {port}")
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.5):
                return
        except OSError:
            time.sleep(0.05)
    raise TimeoutError(f"nothing listening on 127.0.0.1:{port} after {timeout}s")


def taskset(cpu: str | None) -> list[str]:
    return ["taskset", "-c", cpu] if cpu is not None else []


def stop_process(proc: subprocess.Popen[bytes], timeout: float = 5.0) -> None:
    """SIGTERM the process group we started, then SIGKILL it if it lingers."""
    if proc.poll() is not None:
        return
    try:
        os.killpg(proc.pid, signal.SIGTERM)
    except ProcessLookupError:
        return
    try:
        proc.wait(timeout)
    except subprocess.TimeoutExpired:
        try:
            os.killpg(proc.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        proc.wait(timeout)


def make_big_files(root: Path) -> Path:
    """Files served under /bytes/ (sparse: reading zeros is cheap, the proxy still copies them)."""
    d = root / "bytes"
    d.mkdir(parents=True, exist_ok=True)
    for name, size in BIG_FILES.items():
        p = d / name
        if not p.exists() or p.stat().st_size != size:
            with p.open("wb") as f:
                f.truncate(size)
    return root


# --------------------------------------------------------------------------------------
# Backend process handles
# --------------------------------------------------------------------------------------


@dataclass
class Backend:
    kind: str
    port: int
    proc: subprocess.Popen[bytes]
    workdir: Path
    pids: list[int] = field(default_factory=list)

    @property
    def addr(self) -> str:
        return f"127.0.0.1:{self.port}"

    def stop(self) -> None:
        stop_process(self.proc)


NGINX_BACKEND_CONF = """\
worker_processes 1;
daemon off;
master_process on;
pid {workdir}/nginx.pid;
error_log {workdir}/error.log warn;
worker_rlimit_nofile 20000;
events {{ worker_connections 16384; multi_accept on; }}
http {{
    access_log off;
    client_body_temp_path {workdir}/client_body;
    proxy_temp_path {workdir}/proxy;
    fastcgi_temp_path {workdir}/fastcgi;
    uwsgi_temp_path {workdir}/uwsgi;
    scgi_temp_path {workdir}/scgi;
    keepalive_requests 1000000;
    keepalive_timeout 300s;
    client_max_body_size 0;
    sendfile on;
    tcp_nopush on;
    default_type application/octet-stream;
    server {{
        listen 127.0.0.1:{port} reuseport backlog=4096;
        location / {{ return 200 "hello world\\n"; }}
        location /bytes/ {{ root {root}; }}
    }}
}}
"""


def start_nginx_backend(workdir: Path, cpu: str | None, files_root: Path) -> Backend:
    workdir.mkdir(parents=True, exist_ok=True)
    port = free_port()
    conf = workdir / "nginx.conf"
    conf.write_text(NGINX_BACKEND_CONF.format(workdir=workdir, port=port, root=files_root))
    proc = subprocess.Popen(
        [*taskset(cpu), "nginx", "-c", str(conf), "-p", str(workdir), "-e", str(workdir / "error.log")],
        stdout=subprocess.DEVNULL,
        stderr=open(workdir / "stderr.log", "wb"),
        start_new_session=True,
    )
    wait_port(port, proc=proc)
    return Backend("nginx", port, proc, workdir)


def start_python_backend(workdir: Path, cpu: str | None) -> Backend:
    workdir.mkdir(parents=True, exist_ok=True)
    port = free_port()
    repo = Path(__file__).resolve().parent.parent
    proc = subprocess.Popen(
        [*taskset(cpu), sys.executable, "-m", "benchmarks.backend", "--port", str(port)],
        cwd=repo,
        stdout=subprocess.DEVNULL,
        stderr=open(workdir / "stderr.log", "wb"),
        start_new_session=True,
    )
    wait_port(port, proc=proc)
    return Backend("python", port, proc, workdir)


def start_backend(kind: str, workdir: Path, cpu: str | None, files_root: Path) -> Backend:
    if kind == "nginx":
        return start_nginx_backend(workdir, cpu, files_root)
    if kind == "python":
        return start_python_backend(workdir, cpu)
    raise ValueError(f"unknown backend kind {kind!r}")


# --------------------------------------------------------------------------------------
# The uvloop + httptools server itself
# --------------------------------------------------------------------------------------

HELLO = b"HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: 12\r\n\r\n" + BODY
CHUNK = b"\0" * (256 * 1024)


class BackendProtocol(asyncio.Protocol):
    def __init__(self) -> None:
        import httptools

        self.parser = httptools.HttpRequestParser(self)
        self.transport: asyncio.Transport | None = None
        self.url = b""
        self.pending: list[bytes] = []
        self.writing = asyncio.Event()
        self.writing.set()

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]  # uvloop's TCPTransport

    def data_received(self, data: bytes) -> None:
        try:
            self.parser.feed_data(data)
        except Exception:
            if self.transport is not None:
                self.transport.close()

    def pause_writing(self) -> None:
        self.writing.clear()

    def resume_writing(self) -> None:
        self.writing.set()

    # httptools callbacks
    def on_url(self, url: bytes) -> None:
        self.url += url

    def on_message_complete(self) -> None:
        url, self.url = self.url, b""
        t = self.transport
        if t is None:
            return
        keep = self.parser.should_keep_alive()
        name = url.split(b"?", 1)[0].rsplit(b"/", 1)[-1].decode()
        if url.startswith(b"/bytes/") and name in BIG_FILES:
            asyncio.get_running_loop().create_task(self.send_big(BIG_FILES[name], keep))
            return
        t.write(HELLO)
        if not keep:
            t.close()

    async def send_big(self, size: int, keep: bool) -> None:
        t = self.transport
        assert t is not None
        t.write(b"HTTP/1.1 200 OK\r\nContent-Length: %d\r\n\r\n" % size)
        left = size
        while left > 0 and not t.is_closing():
            n = min(left, len(CHUNK))
            t.write(CHUNK[:n] if n < len(CHUNK) else CHUNK)
            left -= n
            await self.writing.wait()
        if not keep:
            t.close()


async def serve(port: int) -> None:
    loop = asyncio.get_running_loop()
    server = await loop.create_server(BackendProtocol, "127.0.0.1", port, backlog=4096, reuse_address=True)
    stop = asyncio.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    async with server:
        await stop.wait()


def main() -> None:
    ap = argparse.ArgumentParser(description="fixed-response uvloop+httptools backend")
    ap.add_argument("--port", type=int, required=True)
    args = ap.parse_args()
    try:
        import uvloop

        uvloop.install()
    except ImportError:
        pass
    asyncio.run(serve(args.port))


if __name__ == "__main__":
    main()
