"""--buffer-requests / --buffer-responses: memory, spill to disk, limits, SSE and WebSocket bypass."""

from __future__ import annotations

import time
from collections.abc import Iterator

import httpx

from tests.proxy.backend import Backend
from tests.proxy.conftest import ProxyProcess, raw_request, status_of

BUFFERED = ("--buffer-requests", "--buffer-responses", "--buffer-memory=1000")


def test_buffered_request_reaches_target_whole_with_content_length(
    proxy: ProxyProcess, backend: Backend
) -> None:
    proxy.deploy("app", backend.address, args=BUFFERED)

    def gen() -> Iterator[bytes]:
        for _ in range(50):
            yield b"0123456789" * 100  # 50 kB, past the 1000-byte memory part: spilled to disk

    response = httpx.post(proxy.url("/echo"), content=gen())
    assert response.status_code == 200
    assert response.json()["body"] == "0123456789" * 5000
    headers = {n.lower(): v for n, v in backend.seen[-1]["headers"]}
    assert headers["content-length"] == "50000"
    assert "transfer-encoding" not in headers


def test_buffered_redirects_and_errors_keep_their_status(proxy: ProxyProcess, backend: Backend) -> None:
    proxy.deploy("app", backend.address, args=BUFFERED)
    assert httpx.get(proxy.url("/status/302")).status_code == 302
    assert httpx.get(proxy.url("/status/503")).text == "status 503"


def test_sse_bypasses_response_buffering(proxy: ProxyProcess, backend: Backend) -> None:
    proxy.deploy("app", backend.address, args=BUFFERED)
    arrivals = []
    with httpx.stream("GET", proxy.url("/sse?n=3&ms=300")) as response:
        for line in response.iter_lines():
            if line.startswith("data:"):
                arrivals.append(time.monotonic())
    assert len(arrivals) == 3 and arrivals[2] - arrivals[0] > 0.4


def test_websockets_work_with_buffering(proxy: ProxyProcess, backend: Backend) -> None:
    proxy.deploy("app", backend.address, args=BUFFERED)
    sock = proxy.connect()
    response = raw_request(
        sock, b"GET /ws HTTP/1.1\r\nHost: a\r\nConnection: Upgrade\r\nUpgrade: websocket\r\n\r\n"
    )
    assert status_of(response) == 101
    sock.sendall(b"hello")
    assert sock.recv(10) == b"hello"
