"""The real daemon's memory while buffered bodies go to slow peers: bounded, not the body's size.

Kamal deploys with --buffer-requests --buffer-responses, so every large upload and download is
spilled to disk; forwarding it must follow the reader's pace in bounded slices.
"""

from __future__ import annotations

import signal
import socket
import time
from pathlib import Path

from tests.proxy.backend import Backend
from tests.proxy.conftest import ProxyProcess, raw_request, status_of
from tests.proxy.h2_client import rss_kib

BODY = 50 * 1024 * 1024
MAX_GROWTH_KIB = 16 * 1024  # well under the 50 MiB body (before: +50 MiB uploads, +100 MiB downloads)


def test_buffered_bodies_to_slow_peers_keep_the_daemons_memory_bounded(
    tmp_path: Path, backend: Backend
) -> None:
    proxy = ProxyProcess(tmp=tmp_path).start()
    try:
        proxy.deploy("app", backend.address, args=("--buffer-requests", "--buffer-responses"))
        assert proxy.proc is not None
        pid = proxy.proc.pid
        warm = proxy.connect()
        assert (
            status_of(
                raw_request(
                    warm,
                    b"GET /big?size=2000000 HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n",
                    until_close=True,
                )
            )
            == 200
        )
        warm.close()
        baseline = rss_kib(pid)
        peak = baseline

        # A ~50 MiB buffered response to a reader that takes 256 KiB every 10 ms.
        sock = proxy.connect()
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 64 * 1024)
        sock.sendall(b"GET /big?size=%d HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n" % BODY)
        received = 0
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            data = sock.recv(256 * 1024)
            if not data:
                break
            received += len(data)
            peak = max(peak, rss_kib(pid))
            time.sleep(0.01)
        sock.close()
        assert received > BODY

        # A ~50 MiB buffered upload to a target that reads 256 KiB every 10 ms.
        sock = proxy.connect()
        sock.sendall(
            b"POST /sink?rate=262144 HTTP/1.1\r\nHost: x\r\nContent-Length: %d\r\nConnection: close\r\n\r\n"
            % BODY
        )
        piece = b"u" * (1024 * 1024)
        for _ in range(BODY // len(piece)):
            sock.sendall(piece)
        sock.settimeout(0.05)
        response = b""
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            peak = max(peak, rss_kib(pid))
            try:
                data = sock.recv(65536)
            except TimeoutError:
                continue
            if not data:
                break
            response += data
        sock.close()
        assert status_of(response) == 200 and response.endswith(b"\r\n\r\n%d" % BODY)
        growth = peak - baseline
        print(f"RSS baseline {baseline} KiB, peak {peak} KiB, growth {growth} KiB")
        assert growth < MAX_GROWTH_KIB, f"RSS grew by {growth} KiB for a {BODY // 1024} KiB body"
    finally:
        proxy.stop(signal.SIGKILL)
