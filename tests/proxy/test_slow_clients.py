"""Slow clients against the real daemon: a head trickled a byte at a time cannot keep a connection."""

from __future__ import annotations

import signal
import time
from pathlib import Path

from tests.proxy.backend import Backend
from tests.proxy.conftest import ProxyProcess

SLOW_CLIENTS = 5


def test_slowloris_connections_are_closed_at_the_read_header_timeout(
    tmp_path: Path, parser: str, backend: Backend
) -> None:
    proxy = ProxyProcess(tmp=tmp_path, parser=parser, args=("--read-header-timeout", "1s")).start()
    try:
        proxy.deploy("app", backend.address)
        socks = [proxy.connect() for _ in range(SLOW_CLIENTS)]
        head = b"GET / HTTP/1.1\r\nHost: localhost\r\nX-Padding: " + b"a" * 100
        started = time.monotonic()
        open_socks = list(socks)
        i = 0
        # The slow client: a byte from each connection every 0.1 s, for at most 5 s.
        while open_socks and time.monotonic() - started < 5:
            for sock in list(open_socks):
                try:
                    sock.sendall(head[i : i + 1])
                except OSError:  # closed by the proxy (reset: our bytes were unread)
                    open_socks.remove(sock)
            i = min(i + 1, len(head) - 1)
            time.sleep(0.1)
        elapsed = time.monotonic() - started
        assert not open_socks, f"{len(open_socks)} slow connections still open after {elapsed:.1f}s"
        assert elapsed < 3.5  # 1 s timeout, swept about once a second
        for sock in socks:
            sock.settimeout(1)
            try:
                assert sock.recv(100) == b""
            except OSError:
                pass  # reset: the proxy closed with our bytes unread
            sock.close()
    finally:
        proxy.stop(signal.SIGKILL)


def test_a_stalled_request_body_gets_408_at_the_request_body_timeout(
    tmp_path: Path, parser: str, backend: Backend
) -> None:
    """Through the worker process: the body timeout reaches the workers with their configuration."""
    proxy = ProxyProcess(tmp=tmp_path, parser=parser, args=("--request-body-timeout", "1s")).start()
    try:
        proxy.deploy("app", backend.address)
        sock = proxy.connect()
        sock.sendall(b"POST /echo HTTP/1.1\r\nHost: localhost\r\nContent-Length: 100\r\n\r\n" + b"x" * 10)
        sock.settimeout(5)
        started = time.monotonic()
        answer = b""
        while b"\r\n\r\n" not in answer:
            chunk = sock.recv(65536)
            if not chunk:
                break
            answer += chunk
        elapsed = time.monotonic() - started
        assert answer.startswith(b"HTTP/1.1 408 "), answer[:100]
        assert 0.5 < elapsed < 3.5  # 1 s timeout, swept about once a second
        sock.close()
    finally:
        proxy.stop(signal.SIGKILL)
