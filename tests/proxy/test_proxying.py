"""Proxying through the real daemon to real backends, with each parser."""

from __future__ import annotations

import json
import socket
import threading
import time

import httpx

from tests.proxy.backend import Backend
from tests.proxy.conftest import ProxyProcess, raw_request, read_response, status_of


def echo(proxy: ProxyProcess, path: str = "/echo", **kwargs: object) -> dict[str, object]:
    response = httpx.get(proxy.url(path), **kwargs)  # type: ignore[arg-type]
    assert response.status_code == 200, response.text
    return dict(response.json())


def headers_of(data: dict[str, object]) -> dict[str, str]:
    return {str(n).lower(): str(v) for n, v in data["headers"]}  # type: ignore[union-attr]


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


def test_hop_by_hop_headers_are_not_forwarded(proxy: ProxyProcess, backend: Backend) -> None:
    proxy.deploy("app", backend.address)
    sock = proxy.connect()
    response = raw_request(
        sock,
        b"GET /echo HTTP/1.1\r\nHost: a\r\nConnection: keep-alive, X-Secret\r\nX-Secret: 1\r\n"
        b"Keep-Alive: timeout=5\r\nProxy-Authorization: basic x\r\nTE: trailers\r\nX-Kept: yes\r\n\r\n",
    )
    body = json.loads(response.partition(b"\r\n\r\n")[2])
    names = {n.lower() for n, _ in body["headers"]}
    assert "x-kept" in names
    assert not names & {"connection", "x-secret", "keep-alive", "proxy-authorization", "te"}


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


def test_no_route_is_404_page(proxy: ProxyProcess, backend: Backend) -> None:
    proxy.deploy("app", backend.address, args=("--host=app.example.com",))
    response = httpx.get(proxy.url("/"), headers={"Host": "other.example.com"})
    assert response.status_code == 404
    assert response.headers["content-type"] == "text/html; charset=utf-8"
    assert "404 — Not Found" in response.text


def test_dead_target_is_502_page(proxy: ProxyProcess, backend: Backend) -> None:
    proxy.deploy("app", backend.address)
    backend.stop()
    response = httpx.get(proxy.url("/echo"))
    assert response.status_code == 502
    assert "502 — Bad Gateway" in response.text
    assert proxy.wait_log(lambda e: e.get("msg") == "Error while proxying")["target"] == backend.address


def test_slow_target_is_504_after_target_timeout(proxy: ProxyProcess, backend: Backend) -> None:
    proxy.deploy("app", backend.address, args=("--target-timeout=300ms",))
    started = time.monotonic()
    response = httpx.get(proxy.url("/slow?ms=3000"))
    assert response.status_code == 504
    assert "504 — Gateway Timeout" in response.text
    assert time.monotonic() - started < 2.5


def test_malformed_request_is_400_and_other_connections_continue(
    proxy: ProxyProcess, backend: Backend
) -> None:
    proxy.deploy("app", backend.address)
    good = proxy.connect()
    assert status_of(raw_request(good, b"GET /echo HTTP/1.1\r\nHost: a\r\n\r\n")) == 200
    bad = proxy.connect()
    response = raw_request(bad, b"GET / HTTP/1.1\r\nHost: a\r\nBad Header Line\r\n\r\n", until_close=True)
    assert status_of(response) == 400
    assert b"<h1>400 Bad Request</h1>" in response
    assert status_of(raw_request(good, b"GET /echo HTTP/1.1\r\nHost: a\r\n\r\n")) == 200


def test_oversized_head_is_431(proxy: ProxyProcess, backend: Backend) -> None:
    proxy.deploy("app", backend.address)
    sock = proxy.connect()
    huge = b"X-Big: " + b"a" * (70 * 1024) + b"\r\n"
    response = raw_request(sock, b"GET / HTTP/1.1\r\nHost: a\r\n" + huge + b"\r\n", until_close=True)
    assert status_of(response) == 431


def test_pipelined_requests_are_answered_in_order(proxy: ProxyProcess, backend: Backend) -> None:
    proxy.deploy("app", backend.address)
    sock = proxy.connect()
    stream = raw_request(
        sock,
        b"GET /slow?ms=200 HTTP/1.1\r\nHost: a\r\n\r\n"
        b"GET /echo?n=2 HTTP/1.1\r\nHost: a\r\n\r\n"
        b"POST /echo?n=3 HTTP/1.1\r\nHost: a\r\nContent-Length: 5\r\nConnection: close\r\n\r\nhello",
        until_close=True,
    )
    responses = [b"HTTP/1.1 " + r for r in stream.split(b"HTTP/1.1 ")[1:]]
    assert len(responses) == 3
    assert responses[0].endswith(b"slow one")
    assert b'"target": "/echo?n=2"' in responses[1]
    assert b'"body": "hello"' in responses[2]


def test_http10_client_gets_close_delimited_or_keep_alive_response(
    proxy: ProxyProcess, backend: Backend
) -> None:
    proxy.deploy("app", backend.address)
    sock = proxy.connect()
    response = raw_request(sock, b"GET /chunked?n=2 HTTP/1.0\r\nHost: a\r\n\r\n", until_close=True)
    assert response.endswith(b"chunk 0\nchunk 1\n")
    assert b"transfer-encoding" not in response.lower()
    sock = proxy.connect()
    response = raw_request(sock, b"GET /echo HTTP/1.0\r\nHost: a\r\nConnection: keep-alive\r\n\r\n")
    assert b"Connection: keep-alive" in response
    assert (
        status_of(raw_request(sock, b"GET /echo HTTP/1.0\r\nHost: a\r\nConnection: keep-alive\r\n\r\n"))
        == 200
    )


def test_request_bodies_stream_with_content_length_and_chunked(proxy: ProxyProcess, backend: Backend) -> None:
    proxy.deploy("app", backend.address)
    body = b"a" * 300_000
    response = httpx.post(proxy.url("/echo"), content=body)
    assert response.json()["body"] == body.decode()

    def gen():  # type: ignore[no-untyped-def]
        for i in range(5):
            yield f"part{i};".encode()

    response = httpx.post(proxy.url("/echo"), content=gen())
    assert response.json()["body"] == "part0;part1;part2;part3;part4;"


def test_chunked_and_close_delimited_responses_are_rechunked(proxy: ProxyProcess, backend: Backend) -> None:
    proxy.deploy("app", backend.address)
    with httpx.Client() as client:
        assert client.get(proxy.url("/chunked?n=4")).text == "chunk 0\nchunk 1\nchunk 2\nchunk 3\n"
        response = client.get(proxy.url("/close?size=100000"))
        assert response.content == b"y" * 100000
        assert response.headers["transfer-encoding"] == "chunked"
        assert client.get(proxy.url("/echo")).status_code == 200  # the client connection stayed usable


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


def test_expect_100_continue_is_relayed(proxy: ProxyProcess, backend: Backend) -> None:
    proxy.deploy("app", backend.address)
    sock = proxy.connect()
    sock.settimeout(5)
    sock.sendall(b"POST /echo HTTP/1.1\r\nHost: a\r\nContent-Length: 4\r\nExpect: 100-continue\r\n\r\n")
    interim = b""
    while b"\r\n\r\n" not in interim:
        interim += sock.recv(1)
    assert interim == b"HTTP/1.1 100 Continue\r\n\r\n"  # the target's, before any body was sent
    sock.sendall(b"data")
    response = read_response(sock)
    assert status_of(response) == 200
    assert b'"body": "data"' in response


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


def test_dead_pooled_connection_is_retried_for_safe_requests(proxy: ProxyProcess, backend: Backend) -> None:
    proxy.deploy("app", backend.address)
    with httpx.Client() as client:
        assert client.get(proxy.url("/echo")).status_code == 200
        backend.close_idle_connections()
        assert client.get(proxy.url("/echo")).status_code == 200


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


def test_slow_client_head_times_out_without_disturbing_others(
    tmp_path: object, parser: str, backend: Backend
) -> None:
    from pathlib import Path

    proxy = ProxyProcess(tmp=Path(str(tmp_path)), parser=parser, args=("--read-header-timeout=1s",)).start()
    try:
        proxy.deploy("app", backend.address)
        slow = proxy.connect()
        slow.sendall(b"GET / HTTP/1.1\r\nHost: a\r\n")  # never finishes its head
        with httpx.Client() as client:
            for _ in range(5):
                assert client.get(proxy.url("/echo")).status_code == 200
        slow.settimeout(5)
        assert slow.recv(100) == b""
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


def test_client_disconnect_mid_request_is_logged_499(proxy: ProxyProcess, backend: Backend) -> None:
    proxy.deploy("app", backend.address)
    sock = proxy.connect()
    sock.sendall(b"GET /slow?ms=500 HTTP/1.1\r\nHost: a\r\n\r\n")
    time.sleep(0.1)
    sock.close()
    entry = proxy.wait_log(lambda e: e.get("msg") == "Request")
    assert entry["status"] == 499
    # the proxy is still fine
    assert httpx.get(proxy.url("/echo")).status_code == 200


def _unused(sock: socket.socket) -> None:
    sock.close()


def test_targets_given_by_name_are_resolved(proxy: ProxyProcess, backend: Backend) -> None:
    proxy.deploy("app", f"localhost:{backend.port}")
    with httpx.Client() as client:
        for _ in range(3):
            assert client.get(proxy.url("/echo")).json()["backend"] == "one"
    assert backend.last_headers["x-kamal-target"] == f"localhost:{backend.port}"
