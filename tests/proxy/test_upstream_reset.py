"""A target that resets its connection mid-body: the real daemon must not complete the response."""

from __future__ import annotations

import socket
import struct
import threading
import time
from collections.abc import Iterator

import pytest

from tests.proxy.conftest import ProxyProcess, status_of


class ResettingBackend:
    """Answers /up with 200; anything else with a close-delimited body, then a reset (SO_LINGER 0)."""

    def __init__(self) -> None:
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.listener.settimeout(0.2)
        self.address = f"127.0.0.1:{self.listener.getsockname()[1]}"
        self.stopping = threading.Event()
        self.resets = 0
        self.thread = threading.Thread(target=self._serve, daemon=True)
        self.thread.start()

    def _serve(self) -> None:
        while not self.stopping.is_set():
            try:
                conn, _ = self.listener.accept()
            except TimeoutError:
                continue
            with conn:
                conn.settimeout(5)
                head = b""
                while b"\r\n\r\n" not in head:
                    piece = conn.recv(4096)
                    if not piece:
                        break
                    head += piece
                if head.startswith(b"GET /up "):
                    conn.sendall(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\nConnection: close\r\n\r\nOK")
                    continue
                conn.sendall(b"HTTP/1.1 200 OK\r\nConnection: close\r\n\r\n" + b"part one " * 1000)
                time.sleep(0.2)  # the proxy relays what came, then the connection is reset
                conn.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
                self.resets += 1

    def stop(self) -> None:
        self.stopping.set()
        self.thread.join(5)
        self.listener.close()


@pytest.fixture
def resetting_backend() -> Iterator[ResettingBackend]:
    b = ResettingBackend()
    yield b
    b.stop()


def test_a_close_delimited_body_ended_by_a_reset_is_not_completed_towards_the_client(
    proxy: ProxyProcess, resetting_backend: ResettingBackend
) -> None:
    proxy.deploy("app", resetting_backend.address)
    sock = proxy.connect()
    sock.settimeout(5)
    sock.sendall(b"GET /download HTTP/1.1\r\nHost: x\r\n\r\n")
    received = b""
    closed_by = "timeout"
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        try:
            piece = sock.recv(65536)
        except ConnectionResetError:
            closed_by = "reset"
            break
        if not piece:
            closed_by = "close"
            break
        received += piece
    sock.close()
    assert resetting_backend.resets == 1
    assert status_of(received) == 200 and b"Transfer-Encoding: chunked" in received
    assert b"part one" in received
    assert closed_by in ("reset", "close")
    assert not received.endswith(b"0\r\n\r\n"), "the truncated body was completed towards the client"
