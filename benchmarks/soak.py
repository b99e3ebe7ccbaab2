"""Soak and chaos run (``make soak``): mixed traffic through the real daemon while its world changes.

For a bounded time, clients of every kind talk to one service — keep-alive GETs, pipelined GETs,
uploads, slow readers of large responses, WebSocket echoes — while a chaos loop deploys the service
back and forth between two backends, pauses and resumes it, and kills the idle backend (restarting
it before it is deployed again). At the end it reports requests served per kind, errors by cause,
and the daemon's RSS and open file descriptors after warm-up and at the end, and exits 1 when
a request failed for a reason the chaos does not explain, or when RSS or descriptors grew.

    python -m benchmarks.soak --seconds 60 [--json report.json]

Everything runs on 127.0.0.1 with port 0; every loop is bounded by the deadline and every wait by
a timeout.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import signal
import subprocess
import sys
import tempfile
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from tests.proxy.conftest import ProxyProcess

HOST = "soak.test"
IO_TIMEOUT = 10.0
RSS_GROWTH_LIMIT_KIB = 16 * 1024  # after warm-up, the end may be this much above the start
FD_GROWTH_LIMIT = 16
BACKEND_CODE = """
import signal, sys, time
from tests.proxy.backend import Backend
b = Backend(sys.argv[1])
signal.signal(signal.SIGUSR1, lambda *_: b.close_idle_connections())
print(b.port, flush=True)
while True:
    time.sleep(3600)
"""


@dataclass
class Tally:
    served: Counter[str] = field(default_factory=Counter)
    errors: Counter[str] = field(default_factory=Counter)

    def error(self, kind: str, cause: str) -> None:
        self.errors[f"{kind}: {cause}"] += 1


class BackendProcess:
    """A test backend (tests/proxy/backend.py) in its own process, so it can be killed."""

    def __init__(self, name: str, root: Path) -> None:
        self.name = name
        self.root = root
        self.proc: subprocess.Popen[str] | None = None
        self.port = 0

    def start(self) -> BackendProcess:
        env = dict(os.environ, PYTHONPATH=str(self.root))
        self.proc = subprocess.Popen(
            [sys.executable, "-c", BACKEND_CODE, self.name], stdout=subprocess.PIPE, text=True, env=env
        )
        assert self.proc.stdout is not None
        self.port = int(self.proc.stdout.readline())
        return self

    @property
    def address(self) -> str:
        return f"127.0.0.1:{self.port}"

    def kill(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(5)


async def _open(port: int) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
    return await asyncio.wait_for(asyncio.open_connection("127.0.0.1", port), IO_TIMEOUT)


async def _response(reader: asyncio.StreamReader) -> tuple[int, bytes]:
    """One response with a Content-Length or chunked body; returns (status, body)."""
    head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), IO_TIMEOUT)
    status = int(head.split(b" ", 2)[1])
    lower = head.lower()
    if b"content-length:" in lower:
        length = int(lower.split(b"content-length:", 1)[1].split(b"\r\n", 1)[0])
        return status, await asyncio.wait_for(reader.readexactly(length), IO_TIMEOUT)
    if b"transfer-encoding: chunked" in lower:
        parts: list[bytes] = []
        while True:
            size = int((await asyncio.wait_for(reader.readuntil(b"\r\n"), IO_TIMEOUT)).split(b";")[0], 16)
            if size == 0:
                await reader.readuntil(b"\r\n")
                return status, b"".join(parts)
            parts.append(await asyncio.wait_for(reader.readexactly(size + 2), IO_TIMEOUT))
    return status, b""


def _request(method: str, path: str, body: bytes = b"") -> bytes:
    length = f"Content-Length: {len(body)}\r\n" if body or method in ("POST", "PUT") else ""
    return f"{method} {path} HTTP/1.1\r\nHost: {HOST}\r\n{length}\r\n".encode() + body


async def keepalive(port: int, deadline: float, tally: Tally) -> None:
    await _conversation("keepalive", port, deadline, tally, [_request("GET", "/echo")])


async def pipelined(port: int, deadline: float, tally: Tally) -> None:
    await _conversation("pipelined", port, deadline, tally, [_request("GET", "/echo")] * 3)


async def uploads(port: int, deadline: float, tally: Tally) -> None:
    await _conversation("upload", port, deadline, tally, [_request("POST", "/echo", b"u" * 256 * 1024)])


async def _conversation(kind: str, port: int, deadline: float, tally: Tally, batch: list[bytes]) -> None:
    """Send the batch at once on one connection, read its responses; reconnect after any error."""
    while time.monotonic() < deadline:
        try:
            reader, writer = await _open(port)
        except (OSError, TimeoutError) as exc:
            tally.error(kind, f"connect {type(exc).__name__}")
            await asyncio.sleep(0.05)
            continue
        try:
            while time.monotonic() < deadline:
                writer.write(b"".join(batch))
                for _ in batch:
                    status, _body = await _response(reader)
                    if status == 200:
                        tally.served[kind] += 1
                    else:
                        tally.error(kind, f"status {status}")
        except (OSError, TimeoutError, asyncio.IncompleteReadError, ValueError, IndexError) as exc:
            tally.error(kind, type(exc).__name__)
        finally:
            writer.close()


async def slow_reader(port: int, deadline: float, tally: Tally) -> None:
    """Downloads 1 MiB at 16 KiB per 20 ms: the proxy must follow this pace, not buffer ahead."""
    while time.monotonic() < deadline:
        try:
            reader, writer = await _open(port)
            writer.write(_request("GET", "/big?size=1048576"))
            head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), IO_TIMEOUT)
            status = int(head.split(b" ", 2)[1])
            remaining = 1 << 20 if status == 200 else 0
            while remaining > 0:
                chunk = await asyncio.wait_for(reader.read(min(16384, remaining)), IO_TIMEOUT)
                if not chunk:
                    raise asyncio.IncompleteReadError(b"", remaining)
                remaining -= len(chunk)
                await asyncio.sleep(0.02)
            writer.close()
            if status == 200:
                tally.served["slow_reader"] += 1
            else:
                tally.error("slow_reader", f"status {status}")
        except (OSError, TimeoutError, asyncio.IncompleteReadError, ValueError, IndexError) as exc:
            tally.error("slow_reader", type(exc).__name__)


async def websocket(port: int, deadline: float, tally: Tally) -> None:
    """An upgraded connection echoing messages until it is closed (drains close tunnels: expected)."""
    upgrade = (
        f"GET /ws HTTP/1.1\r\nHost: {HOST}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
        "Sec-WebSocket-Key: c29haw==\r\nSec-WebSocket-Version: 13\r\n\r\n"
    ).encode()
    while time.monotonic() < deadline:
        try:
            reader, writer = await _open(port)
            writer.write(upgrade)
            head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), IO_TIMEOUT)
            if b" 101 " not in head.split(b"\r\n", 1)[0]:
                tally.error("websocket", f"status {head.split(b' ', 2)[1].decode()}")
                writer.close()
                continue
            while time.monotonic() < deadline:
                writer.write(b"ping-pong")
                echoed = await asyncio.wait_for(reader.readexactly(9), IO_TIMEOUT)
                tally.served["websocket"] += echoed == b"ping-pong"
                await asyncio.sleep(0.01)
            writer.close()
        except asyncio.IncompleteReadError:
            tally.served["websocket_closed_by_drain"] += 1  # a swap closes tunnels at once, by design
        except (OSError, TimeoutError, ValueError, IndexError) as exc:
            tally.error("websocket", type(exc).__name__)


async def chaos(
    proxy: ProxyProcess, backends: list[BackendProcess], deadline: float, events: Counter[str]
) -> None:
    """Deploy back and forth, pause/resume, and kill + restart the backend that is not deployed."""
    loop = asyncio.get_running_loop()
    active = 0
    step = 0
    while time.monotonic() < deadline - 2:
        await asyncio.sleep(1.0)
        step += 1
        if step % 3 == 0:
            await loop.run_in_executor(None, lambda: proxy.ctl("pause", "soak", "--drain-timeout=5s"))
            await asyncio.sleep(0.2)
            await loop.run_in_executor(None, lambda: proxy.ctl("resume", "soak"))
            events["pause_resume"] += 1
            continue
        idle = backends[1 - active]
        idle.kill()
        events["backend_killed"] += 1
        await loop.run_in_executor(None, idle.start)
        result = await loop.run_in_executor(
            None,
            lambda target=idle.address: proxy.ctl(  # type: ignore[misc]
                "deploy",
                "soak",
                f"--target={target}",
                f"--host={HOST}",
                "--health-check-interval=100ms",
                check=False,
            ),
        )
        if result.returncode == 0:
            active = 1 - active
            events["deploy"] += 1
        else:
            events[f"deploy failed: {result.stderr.strip()}"] += 1
        serving = backends[active].proc
        if serving is not None:
            serving.send_signal(signal.SIGUSR1)  # the target drops every connection, busy ones too
            events["upstream_connections_aborted"] += 1


def _resources(pid: int) -> dict[str, int]:
    status = Path(f"/proc/{pid}/status").read_text()
    rss = next(int(line.split()[1]) for line in status.splitlines() if line.startswith("VmRSS:"))
    return {"rss_kib": rss, "fds": len(os.listdir(f"/proc/{pid}/fd"))}


async def soak(seconds: float, root: Path, workdir: Path) -> dict[str, Any]:
    backends = [BackendProcess("a", root).start(), BackendProcess("b", root).start()]
    proxy = ProxyProcess(tmp=workdir).start()
    assert proxy.proc is not None
    try:
        proxy.ctl(
            "deploy",
            "soak",
            f"--target={backends[0].address}",
            f"--host={HOST}",
            "--health-check-interval=100ms",
        )
        tally, events = Tally(), Counter[str]()
        warmup = time.monotonic() + min(3.0, seconds / 5)
        clients = [keepalive] * 4 + [pipelined] * 2 + [uploads] * 2 + [slow_reader] * 2 + [websocket] * 2
        await asyncio.wait_for(
            asyncio.gather(*(c(proxy.port, warmup, Tally()) for c in clients)),
            timeout=min(3.0, seconds / 5) + 30,
        )
        start = _resources(proxy.proc.pid)
        deadline = time.monotonic() + seconds
        await asyncio.wait_for(
            asyncio.gather(
                chaos(proxy, backends, deadline, events), *(c(proxy.port, deadline, tally) for c in clients)
            ),
            timeout=seconds + 60,
        )
        await asyncio.sleep(1.0)  # let drains and pooled connections settle
        end = _resources(proxy.proc.pid)
    finally:
        proxy.proc.send_signal(signal.SIGTERM)
        with contextlib.suppress(subprocess.TimeoutExpired):
            proxy.proc.wait(15)
        for b in backends:
            b.kill()
    return {
        "seconds": seconds,
        "served": dict(tally.served),
        "errors": dict(tally.errors),
        "chaos": dict(events),
        "start": start,
        "end": end,
        "ok": _errors_explained(
            tally.errors, aborts=events["upstream_connections_aborted"], clients=len(clients)
        )
        and end["rss_kib"] - start["rss_kib"] <= RSS_GROWTH_LIMIT_KIB
        and end["fds"] - start["fds"] <= FD_GROWTH_LIMIT
        and sum(tally.served.values()) > 0,
    }


ABORT_CAUSES = ("status 502", "websocket: ConnectionResetError")


def _errors_explained(errors: Counter[str], *, aborts: int, clients: int) -> bool:
    """Only what a target dropping its connections causes, and no more than that can cause.

    Deploys, pauses and killing the backend that is not deployed are zero-downtime by design, so any
    other error fails the run. A target that drops connections with requests in flight fails those
    requests (502) and resets the tunnels through it, as it would behind any proxy; each client has
    at most one request or tunnel in flight, so each abort explains at most one error per client.
    """
    explained = sum(n for cause, n in errors.items() if cause.endswith(ABORT_CAUSES))
    return explained == sum(errors.values()) and explained <= aborts * clients


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--seconds", type=float, default=60.0)
    parser.add_argument("--json", type=Path, help="also write the report here")
    args = parser.parse_args(argv)
    root = Path(__file__).resolve().parent.parent
    with tempfile.TemporaryDirectory(prefix="soak-") as workdir:
        report = asyncio.run(soak(args.seconds, root, Path(workdir)))
    text = json.dumps(report, indent=1)
    print(text)
    if args.json:
        args.json.write_text(text)
    return 0 if report["ok"] else 1


if __name__ == "__main__":
    sys.exit(main())
