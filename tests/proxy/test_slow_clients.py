"""Slow clients against the real daemon: a head trickled a byte at a time cannot keep a connection,
nor can a client that stops reading its response."""

from __future__ import annotations

import signal
import socket
import time
from pathlib import Path

from tests.proxy.backend import Backend
from tests.proxy.certs import CA
from tests.proxy.conftest import ProxyProcess, raw_request, status_of
from tests.proxy.test_tls import HOST, client_context, deploy_static

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


TCP_ESTABLISHED = 1  # tcpi_state, the first byte of struct tcp_info (Linux)


def tcp_state(sock: socket.socket) -> int:
    return sock.getsockopt(socket.IPPROTO_TCP, socket.TCP_INFO, 8)[0]


def test_a_client_that_never_reads_is_reset_at_the_write_timeout_while_another_is_served(
    tmp_path: Path, parser: str, backend: Backend
) -> None:
    """Through the worker process: --write-timeout reaches the workers, and the connection that
    stopped reading is reset (its TCP state leaves ESTABLISHED without the client reading a byte)."""
    proxy = ProxyProcess(tmp=tmp_path, parser=parser, args=("--write-timeout", "1s")).start()
    stalled = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    try:
        proxy.deploy("app", backend.address)
        stalled.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)  # (before connecting: a small window)
        stalled.settimeout(10)
        stalled.connect(("127.0.0.1", proxy.port))
        stalled.sendall(b"GET /big?size=%d HTTP/1.1\r\nHost: localhost\r\n\r\n" % (16 << 20))
        started = time.monotonic()
        other = proxy.connect()
        served = 0
        # Meanwhile another client is served, request after request on its own connection, for at
        # most 8 s; 1 s timeout, swept about once a second.
        while tcp_state(stalled) == TCP_ESTABLISHED and time.monotonic() - started < 8:
            response = raw_request(other, b"GET /echo HTTP/1.1\r\nHost: localhost\r\n\r\n")
            assert status_of(response) == 200
            served += 1
            time.sleep(0.05)
        elapsed = time.monotonic() - started
        assert tcp_state(stalled) != TCP_ESTABLISHED, f"still open after {elapsed:.1f}s"
        assert 0.9 < elapsed < 4.5 and served > 5
        assert status_of(raw_request(other, b"GET /echo HTTP/1.1\r\nHost: localhost\r\n\r\n")) == 200
        timed_out = proxy.wait_log(lambda e: e.get("msg") == "Response write timed out")
        assert timed_out["unsent"] > 0
        line = proxy.wait_log(lambda e: e.get("msg") == "Request" and e.get("path") == "/big")
        assert line["status"] == 499 and 0 < line["resp_content_length"] < 16 << 20
        other.close()
    finally:
        stalled.close()
        proxy.stop(signal.SIGKILL)


def test_a_slow_but_steady_https_reader_is_not_cut_by_the_write_timeout(
    tmp_path: Path, backend: Backend
) -> None:
    """Under TLS the proxy's transport buffer does not shrink while a client reads slowly (uvloop's
    TLS layer refills the socket's buffer in bursts): the bytes the client's TCP acknowledged are
    the progress that keeps the connection."""
    ca = CA.create()
    proxy = ProxyProcess(tmp=tmp_path, args=("--write-timeout", "1s")).start()
    raw = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    try:
        deploy_static(proxy, ca, backend, HOST)
        raw.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
        raw.settimeout(10)
        raw.connect(("127.0.0.1", proxy.https_port))
        sock = client_context(ca, tmp_path).wrap_socket(raw, server_hostname=HOST)
        size = 16 << 20
        sock.sendall(b"GET /big?size=%d HTTP/1.1\r\nHost: %s\r\n\r\n" % (size, HOST.encode()))
        head = b""
        while b"\r\n\r\n" not in head:
            head += sock.recv(4096)
        head, _, body = head.partition(b"\r\n\r\n")
        assert status_of(head) == 200
        received = len(body)
        started = time.monotonic()
        while time.monotonic() - started < 4:  # 4 x the timeout at ~80 KiB/s: paused all along
            received += len(sock.recv(8192))
            time.sleep(0.1)
        assert tcp_state(sock) == TCP_ESTABLISHED and received < size // 2
        while received < size:  # then the rest, at full speed: nothing was cut
            piece = sock.recv(1 << 20)
            assert piece, f"closed after {received} of {size} bytes"
            received += len(piece)
        assert received == size
        assert not [e for e in proxy.logs() if e.get("msg") == "Response write timed out"]
        sock.close()
    finally:
        raw.close()
        proxy.stop(signal.SIGKILL)
