"""Proxying through the real daemon to real backends, with each parser."""

from __future__ import annotations

import json
import socket
import threading
import time
from collections.abc import Iterator

import httpx

from tests.proxy.backend import Backend
from tests.proxy.conftest import ProxyProcess, raw_request, status_of


def echo(proxy: ProxyProcess, path: str = "/echo", **kwargs: object) -> dict[str, object]:
    response = httpx.get(proxy.url(path), **kwargs)  # type: ignore[arg-type]
    assert response.status_code == 200, response.text
    return dict(response.json())


def headers_of(data: dict[str, object]) -> dict[str, str]:
    pairs = data["headers"]
    assert isinstance(pairs, list)
    return {str(n).lower(): str(v) for n, v in pairs}


def test_request_reaches_target_with_host_query_and_forwarding_headers(
    proxy: ProxyProcess, backend: Backend
) -> None:
    proxy.deploy("app", backend.address)
    data = echo(proxy, "/echo?p1=a;b;c&p2=%x", headers={"Host": "app.example.com:8080"})
    assert data["target"] == "/echo?p1=a;b;c&p2=%x"
    headers = headers_of(data)
    assert headers["host"] == "app.example.com:8080"
    assert headers["x-forwarded-for"] == "127.0.0.1"
    assert headers["x-forwarded-host"] == "app.example.com:8080"
    assert headers["x-forwarded-proto"] == "http"
    assert headers["x-kamal-target"] == backend.address
    assert headers["x-request-start"].startswith("t=")
    assert abs(int(headers["x-request-start"][2:]) - time.time() * 1000) < 60_000
    assert len(headers["x-request-id"]) == 36 and headers["x-request-id"][14] == "4"


def test_forward_headers_extend_client_values_and_tls_default_replaces_them(
    proxy: ProxyProcess, backend: Backend
) -> None:
    proxy.deploy("app", backend.address)
    sent = {
        "X-Forwarded-For": "10.10.10.10",
        "X-Forwarded-Proto": "https",
        "X-Forwarded-Host": "front.example",
        "X-Request-Id": "my-id",
        "X-Request-Start": "t=1",
    }
    headers = headers_of(echo(proxy, headers=sent))
    assert headers["x-forwarded-for"] == "10.10.10.10, 127.0.0.1"
    assert headers["x-forwarded-proto"] == "https"
    assert headers["x-forwarded-host"] == "front.example"
    assert headers["x-request-id"] == "my-id"
    assert headers["x-request-start"] == "t=1"

    proxy.deploy("app", backend.address, args=("--forward-headers=false",))
    headers = headers_of(echo(proxy, headers=sent))
    assert headers["x-forwarded-for"] == "127.0.0.1"
    assert headers["x-forwarded-proto"] == "http"
    assert headers["x-forwarded-host"] == "127.0.0.1:%d" % proxy.port


def test_round_robin_over_targets_and_keep_alive_reuse(
    proxy: ProxyProcess, backend: Backend, backend2: Backend
) -> None:
    proxy.deploy("app", backend.address, backend2.address)
    with httpx.Client() as client:
        seen = [client.get(proxy.url("/echo")).json()["backend"] for _ in range(20)]
    assert seen.count("one") == 10 and seen.count("two") == 10
    # the proxy kept its upstream connections alive: far fewer connections than requests
    assert backend.connections <= 2 and backend2.connections <= 2


def test_application_errors_pass_through_untouched(proxy: ProxyProcess, backend: Backend) -> None:
    proxy.deploy("app", backend.address)
    response = httpx.get(proxy.url("/status/500"))
    assert response.status_code == 500
    assert response.text == "status 500"
    assert httpx.get(proxy.url("/status/404")).text == "status 404"


def test_request_bodies_stream_with_content_length_and_chunked(proxy: ProxyProcess, backend: Backend) -> None:
    proxy.deploy("app", backend.address)
    body = b"a" * 300_000
    response = httpx.post(proxy.url("/echo"), content=body)
    assert response.json()["body"] == body.decode()

    def gen() -> Iterator[bytes]:
        for i in range(5):
            yield f"part{i};".encode()

    response = httpx.post(proxy.url("/echo"), content=gen())
    assert response.json()["body"] == "part0;part1;part2;part3;part4;"


def test_chunked_response_trailers_reach_an_http11_client(proxy: ProxyProcess, backend: Backend) -> None:
    proxy.deploy("app", backend.address)
    sock = proxy.connect()
    sock.settimeout(5)
    sock.sendall(b"GET /chunked?n=2&trailer=X-Checksum:abc HTTP/1.1\r\nHost: a\r\n\r\n")
    end = b"\r\n0\r\nX-Checksum: abc\r\n\r\n"
    received = b""
    while not received.endswith(end) and len(received) < 65536:
        piece = sock.recv(65536)
        if not piece:
            break
        received += piece
    head, _, body = received.partition(b"\r\n\r\n")
    assert b"\r\nTrailer: X-Checksum\r\n" in head + b"\r\n" and b"Transfer-Encoding: chunked" in head
    assert body.endswith(end) and b"chunk 0\n" in body and b"chunk 1\n" in body
    sock.close()


def test_chunked_request_trailers_reach_the_target(proxy: ProxyProcess, backend: Backend) -> None:
    proxy.deploy("app", backend.address)
    sock = proxy.connect()
    response = raw_request(
        sock,
        b"POST /echo HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\nTrailer: X-Sum\r\n\r\n"
        b"3\r\nabc\r\n0\r\nX-Sum: 6\r\nHost: evil.test\r\n\r\n",
    )
    assert status_of(response) == 200
    data = json.loads(response.partition(b"\r\n\r\n")[2])
    assert data["body"] == "abc"
    assert data["trailers"] == [["X-Sum", "6"]]  # Host is never a trailer field: removed
    assert ["Trailer", "X-Sum"] in data["headers"]
    sock.close()


def test_large_download_streams(proxy: ProxyProcess, backend: Backend) -> None:
    proxy.deploy("app", backend.address)
    size = 20 * 1024 * 1024
    with httpx.stream("GET", proxy.url(f"/big?size={size}")) as response:
        total = sum(len(piece) for piece in response.iter_bytes())
    assert total == size


def test_slow_reading_upstream_applies_backpressure_to_a_fast_upload(
    proxy: ProxyProcess, backend: Backend
) -> None:
    proxy.deploy("app", backend.address)
    size = 8 * 1024 * 1024
    response = httpx.post(proxy.url("/sink?rate=262144"), content=b"z" * size, timeout=60)
    assert response.text == str(size)


def test_sse_events_are_flushed_as_they_arrive(proxy: ProxyProcess, backend: Backend) -> None:
    proxy.deploy("app", backend.address)
    arrivals = []
    with httpx.stream("GET", proxy.url("/sse?n=3&ms=300")) as response:
        for line in response.iter_lines():
            if line.startswith("data:"):
                arrivals.append(time.monotonic())
    assert len(arrivals) == 3
    assert arrivals[2] - arrivals[0] > 0.4  # not held back until the end


def test_websocket_upgrade_is_tunnelled(proxy: ProxyProcess, backend: Backend) -> None:
    proxy.deploy("app", backend.address)
    sock = proxy.connect()
    response = raw_request(
        sock,
        b"GET /ws HTTP/1.1\r\nHost: a\r\nConnection: Upgrade\r\nUpgrade: websocket\r\n"
        b"Sec-WebSocket-Version: 13\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\r\n",
    )
    assert status_of(response) == 101
    sock.sendall(b"ping-bytes")
    assert sock.recv(100) == b"ping-bytes"
    sock.close()


def test_idle_keep_alive_connections_are_closed_after_idle_timeout(
    tmp_path: object, parser: str, backend: Backend
) -> None:
    from pathlib import Path

    proxy = ProxyProcess(tmp=Path(str(tmp_path)), parser=parser, args=("--idle-timeout=1s",)).start()
    try:
        proxy.deploy("app", backend.address)
        sock = proxy.connect()
        assert status_of(raw_request(sock, b"GET /echo HTTP/1.1\r\nHost: a\r\n\r\n")) == 200
        sock.settimeout(5)
        started = time.monotonic()
        assert sock.recv(10) == b""  # closed by the proxy
        assert time.monotonic() - started < 4
    finally:
        proxy.stop()


def test_access_log_has_kamal_proxy_fields(proxy: ProxyProcess, backend: Backend) -> None:
    proxy.deploy(
        "app", backend.address, args=("--log-request-header=X-Custom", "--log-response-header=X-Backend")
    )
    httpx.get(
        proxy.url("/echo?a=1"),
        headers={"User-Agent": "tester", "X-Custom": "c1", "X-Forwarded-For": "9.9.9.9"},
    )
    entry = proxy.wait_log(lambda e: e.get("msg") == "Request")
    expected_order = [
        "time", "level", "msg", "host", "port", "path", "request_id", "status", "service", "target",
        "duration", "method", "req_content_length", "req_content_type", "resp_content_length",
        "resp_content_type", "client_addr", "client_port", "remote_addr", "user_agent", "proto",
        "scheme", "query", "req_x_custom", "resp_x_backend",
    ]  # fmt: skip
    assert list(entry) == expected_order
    assert entry["path"] == "/echo" and entry["query"] == "a=1"
    assert entry["status"] == 200 and entry["service"] == "app" and entry["target"] == backend.address
    assert entry["method"] == "GET" and entry["user_agent"] == "tester"
    assert entry["remote_addr"] == "9.9.9.9" and entry["client_addr"] == "127.0.0.1"
    assert entry["req_x_custom"] == "c1" and entry["resp_x_backend"] == "one"
    assert entry["resp_content_type"] == "application/json"
    assert entry["duration"] > 0 and entry["proto"] == "HTTP/1.1"


def test_many_concurrent_clients_do_not_disturb_each_other(proxy: ProxyProcess, backend: Backend) -> None:
    proxy.deploy("app", backend.address)
    errors: list[str] = []

    def worker() -> None:
        with httpx.Client() as client:
            for _ in range(30):
                r = client.get(proxy.url("/echo"))
                if r.status_code != 200:
                    errors.append(str(r.status_code))

    threads = [threading.Thread(target=worker) for _ in range(8)]
    garbage = proxy.connect()
    garbage.sendall(b"\x16\x03\x01garbage that is not http\r\n\r\n")
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    assert errors == []
    garbage.close()


def _unused(sock: socket.socket) -> None:
    sock.close()


def test_targets_given_by_name_are_resolved(proxy: ProxyProcess, backend: Backend) -> None:
    proxy.deploy("app", f"localhost:{backend.port}")
    with httpx.Client() as client:
        for _ in range(3):
            assert client.get(proxy.url("/echo")).json()["backend"] == "one"
    assert backend.last_headers["x-kamal-target"] == f"localhost:{backend.port}"
