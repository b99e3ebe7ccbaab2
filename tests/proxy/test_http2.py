"""HTTP/2 on the TLS listener, through the real daemon with real HTTP/2 clients.

The request-handling tests run over HTTP/1.1 and HTTP/2 (``proto``): one exchange logic serves
both, so routing, modes, buffering limits, forwarded headers, request IDs, the access log, error
pages, the target timeout and draining must behave the same. The HTTP/2-only tests cover
multiplexing, flow control, resets, smuggling attempts, floods and GOAWAY.
"""

from __future__ import annotations

import asyncio
import json
import shutil
import signal
import socket
import subprocess
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import h2.errors
import h2.events
import httpx
import pytest
from hyperframe.frame import ContinuationFrame, HeadersFrame, PingFrame, SettingsFrame

from tests.proxy.backend import Backend
from tests.proxy.certs import CA
from tests.proxy.conftest import ProxyProcess
from tests.proxy.h2_client import H1, H2, HOST, Https, RawH2, client_context, deploy_tls, rss_kib

MiB = 1 << 20


@pytest.fixture(scope="module")
def ca() -> CA:
    return CA.create()


@pytest.fixture(params=[H1, H2])
def proto(request: pytest.FixtureRequest) -> str:
    return str(request.param)


@pytest.fixture
def h2_proxy(tmp_path: Path) -> Iterator[ProxyProcess]:
    """One daemon (httptools) for the HTTP/2-only tests: the upstream parser is not what they test."""
    p = ProxyProcess(tmp=tmp_path, args=("--idle-timeout=2s",)).start()
    yield p
    p.stop(signal.SIGKILL)


def requests_for(
    proxy: ProxyProcess, path: str, count: int = 1, timeout: float = 5
) -> list[dict[str, object]]:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        found = [e for e in proxy.requests_logged() if e.get("path") == path]
        if len(found) >= count:
            return found
        time.sleep(0.02)
    raise AssertionError(f"{count} request(s) for {path} not logged")


# ---------------------------------------------------------------------------------- both protocols
def test_alpn_picks_h2_when_offered_and_http1_otherwise(
    h2_proxy: ProxyProcess, backend: Backend, ca: CA
) -> None:
    deploy_tls(h2_proxy, ca, "app", backend.address)
    for offered, chosen in ((["h2", "http/1.1"], "h2"), (["http/1.1"], "http/1.1")):
        ctx = client_context(ca, h2_proxy.tmp, alpn=offered)
        with socket.create_connection(("127.0.0.1", h2_proxy.https_port), timeout=5) as raw:
            with ctx.wrap_socket(raw, server_hostname=HOST) as sock:
                assert sock.selected_alpn_protocol() == chosen


def test_routing_by_host_and_prefix_with_forwarded_headers_and_request_ids(
    proxy: ProxyProcess, backend: Backend, backend2: Backend, ca: CA, proto: str
) -> None:
    deploy_tls(proxy, ca, "app", backend.address)
    proxy.deploy("api", backend2.address, args=(f"--host={HOST}", "--path-prefix=/api"))
    client = Https(proxy, ca, proto)
    try:
        root = client.get("/echo?x=1", headers={"x-request-id": "abc-123", "cookie": "a=1"})
        api = client.get("/api/echo")
        unknown = client.get("/echo", host="nobody.example.com")
    finally:
        client.close()
    assert root.status_code == 200 and root.json()["backend"] == "one"
    assert api.status_code == 200 and api.json()["backend"] == "two" and api.json()["path"] == "/echo"
    headers = {n.lower(): v for n, v in root.json()["headers"]}
    assert headers["host"] == HOST
    assert headers["x-forwarded-proto"] == "https"
    assert headers["x-forwarded-port"] == str(proxy.https_port)
    assert headers["x-forwarded-for"] == "127.0.0.1"
    assert headers["x-request-id"] == "abc-123"
    assert headers["cookie"] == "a=1"
    api_headers = {n.lower(): v for n, v in api.json()["headers"]}
    assert len(api_headers["x-request-id"]) == 36  # made by the proxy
    assert unknown.status_code == 404 and "<html" in unknown.text.lower()


def test_access_log_fields(proxy: ProxyProcess, backend: Backend, ca: CA, proto: str) -> None:
    deploy_tls(proxy, ca, "app", backend.address)
    client = Https(proxy, ca, proto)
    try:
        response = client.request(
            "POST", "/echo?q=1", content=b"hello", headers={"content-type": "text/plain"}
        )
    finally:
        client.close()
    assert response.status_code == 200
    (line,) = requests_for(proxy, "/echo")
    assert line["proto"] == ("HTTP/2.0" if proto == H2 else "HTTP/1.1")
    assert line["method"] == "POST" and line["status"] == 200 and line["query"] == "q=1"
    assert line["scheme"] == "https" and line["port"] == proxy.https_port
    assert line["req_content_length"] == 5 and line["req_content_type"] == "text/plain"
    assert line["resp_content_length"] == len(response.content) and line["service"] == "app"


def test_pause_holds_then_resume_serves_and_stop_answers_503(
    proxy: ProxyProcess, backend: Backend, ca: CA, proto: str
) -> None:
    deploy_tls(proxy, ca, "app", backend.address)
    client = Https(proxy, ca, proto)
    try:
        proxy.ctl("pause", "app")
        assert client.get("/up").status_code == 200  # the health path answers while paused
        results: list[int] = []
        held = threading.Thread(target=lambda: results.append(client.get("/echo").status_code))
        held.start()
        requests_for_none = [e for e in proxy.requests_logged() if e.get("path") == "/echo"]
        time.sleep(0.3)  # the request is held, not answered (asserted next)
        assert results == [] and requests_for_none == []
        proxy.ctl("resume", "app")
        held.join(10)
        assert results == [200]
        proxy.ctl("stop", "app", "--message=Back soon")
        stopped = client.get("/echo")
        assert stopped.status_code == 503 and "Back soon" in stopped.text
    finally:
        client.close()


def test_request_body_over_the_buffer_limit_is_413(
    proxy: ProxyProcess, backend: Backend, ca: CA, proto: str
) -> None:
    deploy_tls(proxy, ca, "app", backend.address, args=("--buffer-requests", "--max-request-body=1000"))
    client = Https(proxy, ca, proto)
    try:
        small = client.request("POST", "/echo", content=b"a" * 500)
        big = client.request("POST", "/echo", content=b"a" * 200_000)
    finally:
        client.close()
    assert small.status_code == 200 and small.json()["body"] == "a" * 500
    assert big.status_code == 413


def test_target_timeout_is_504(proxy: ProxyProcess, backend: Backend, ca: CA, proto: str) -> None:
    deploy_tls(proxy, ca, "app", backend.address, args=("--target-timeout=300ms",))
    client = Https(proxy, ca, proto)
    try:
        response = client.get("/slow?ms=3000")
        fast = client.get("/echo")  # the connection goes on
    finally:
        client.close()
    assert response.status_code == 504 and "<html" in response.text.lower()
    assert fast.status_code == 200


def test_draining_target_past_drain_timeout_is_504(
    proxy: ProxyProcess, backend: Backend, backend2: Backend, ca: CA, proto: str
) -> None:
    deploy_tls(proxy, ca, "app", backend.address)
    client = Https(proxy, ca, proto)
    try:
        results: list[int] = []
        slow = threading.Thread(target=lambda: results.append(client.get("/slow?ms=5000").status_code))
        slow.start()
        deadline = time.monotonic() + 5
        while backend.requests == 0 and time.monotonic() < deadline:
            time.sleep(0.02)
        deploy_tls(proxy, ca, "app", backend2.address, args=("--drain-timeout=300ms",))
        slow.join(10)
        assert results == [504]
        assert client.get("/echo").json()["backend"] == "two"
    finally:
        client.close()


def test_sse_streams_events_as_they_come(proxy: ProxyProcess, backend: Backend, ca: CA, proto: str) -> None:
    deploy_tls(proxy, ca, "app", backend.address)
    client = Https(proxy, ca, proto)
    try:
        url = f"https://127.0.0.1:{proxy.https_port}/sse?n=3&ms=300"
        with client.client.stream(
            "GET", url, headers={"host": HOST}, extensions={"sni_hostname": HOST}
        ) as response:
            started = time.monotonic()
            pieces = response.iter_raw()
            first = next(pieces)
            first_at = time.monotonic() - started
            rest = b"".join(pieces)
    finally:
        client.close()
    assert response.headers["content-type"].startswith("text/event-stream")
    assert first.startswith(b"data:") and first_at < 0.5  # not held until the stream ends
    assert (first + rest).count(b"data:") == 3


# ---------------------------------------------------------------------------------- HTTP/2 only
def test_hundred_streams_on_one_connection_mixed_slow_and_fast(
    h2_proxy: ProxyProcess, backend: Backend, ca: CA
) -> None:
    deploy_tls(h2_proxy, ca, "app", backend.address)

    async def run() -> tuple[list[tuple[str, int, float]], int, list[tuple[str, int, float]]]:
        ctx = client_context(ca, h2_proxy.tmp, alpn=["h2"])
        async with httpx.AsyncClient(http2=True, http1=False, verify=ctx, timeout=20) as client:
            started = time.monotonic()

            async def one(path: str) -> tuple[str, int, float]:
                r = await client.get(
                    f"https://127.0.0.1:{h2_proxy.https_port}{path}",
                    headers={"host": HOST},
                    extensions={"sni_hostname": HOST},
                )
                assert r.http_version == H2
                return path, r.status_code, time.monotonic() - started

            await one("/echo")  # one connection, opened first
            paths = ["/slow?ms=1500" if i % 2 else f"/echo?i={i}" for i in range(100)]
            first = await asyncio.gather(*(one(p) for p in paths))
            opened = backend.connections
            again = await asyncio.gather(*(one(f"/echo?again={i}") for i in range(50)))
            return first, opened, again

    results, opened, again = asyncio.run(run())
    assert all(status == 200 for _, status, _ in results)
    # the slow streams did not hold the fast ones, as the proxy timed them (the client's own task
    # scheduling of 100 coroutines may finish one late)
    requests_for(h2_proxy, "/slow", 50)
    logged = h2_proxy.requests_logged()
    fast = [e["duration"] / 1e9 for e in logged if e["path"] == "/echo" and e["query"].startswith("i=")]
    slow = [e["duration"] / 1e9 for e in logged if e["path"] == "/slow"]
    assert len(fast) == 50 and len(slow) == 50
    assert max(fast) < 1.0 <= 1.5 <= min(slow)
    ports = {e["client_port"] for e in h2_proxy.requests_logged()}
    assert len(ports) == 1  # all multiplexed on one client connection
    # onto pooled HTTP/1.1 upstream connections: the second burst needs no new one
    assert all(status == 200 for _, status, _ in again)
    assert opened <= 101 and backend.connections == opened


def test_large_download_to_a_slow_reader_keeps_memory_flat_and_other_streams_flow(
    h2_proxy: ProxyProcess, backend: Backend, ca: CA
) -> None:
    size = 100 * MiB
    deploy_tls(h2_proxy, ca, "app", backend.address)
    assert h2_proxy.proc is not None
    pid = h2_proxy.proc.pid
    client = RawH2(h2_proxy, ca)
    try:
        client.conn.increment_flow_control_window(16 * MiB)  # only the stream's own window limits it
        client.flush()
        status, _, _ = client.response(client.request("/echo"))
        assert status == 200
        baseline = rss_kib(pid)
        big = client.request(f"/big?size={size}")
        # the reader does not acknowledge for a while: the proxy must stop reading the target...
        peak = baseline
        deadline = time.monotonic() + 1.0
        while time.monotonic() < deadline:
            client.read(0.1)
            peak = max(peak, rss_kib(pid))
        # ...and another stream on the same connection is answered meanwhile
        other_status, _, other_body = client.response(client.request("/echo?other=1"))
        assert other_status == 200 and b"other=1" in other_body
        stalled = [e for e in client.events if isinstance(e, h2.events.DataReceived) and e.stream_id == big]
        received = sum(len(e.data or b"") for e in stalled)
        assert received <= 256 * 1024  # only the stream's window went out
        client.conn.acknowledge_received_data(sum(e.flow_controlled_length or 0 for e in stalled), big)
        client.flush()
        deadline = time.monotonic() + 100
        done = False
        while not done and time.monotonic() < deadline and not client.closed:
            for event in client.read(1.0):
                if isinstance(event, h2.events.DataReceived) and event.stream_id == big:
                    received += len(event.data or b"")
                    client.conn.acknowledge_received_data(event.flow_controlled_length or 0, big)
                elif isinstance(event, h2.events.StreamEnded) and event.stream_id == big:
                    done = True
            client.flush()
            peak = max(peak, rss_kib(pid))
        assert done and received == size
        assert peak - baseline < 40 * 1024, (baseline, peak)  # KiB: nowhere near the 100 MiB body
    finally:
        client.close()


def test_client_reset_cancels_the_upstream_request_logged_499(
    h2_proxy: ProxyProcess, backend: Backend, ca: CA
) -> None:
    deploy_tls(h2_proxy, ca, "app", backend.address)
    client = RawH2(h2_proxy, ca)
    try:
        sid = client.request("/slow?ms=3000")
        deadline = time.monotonic() + 5
        while backend.requests == 0 and time.monotonic() < deadline:
            time.sleep(0.02)
        client.conn.reset_stream(sid, h2.errors.ErrorCodes.CANCEL)
        client.flush()
        (line,) = requests_for(h2_proxy, "/slow", timeout=2)  # well before the target would answer
        assert line["status"] == 499
        status, _, _ = client.response(client.request("/echo"))  # the connection goes on
        assert status == 200
    finally:
        client.close()


def test_trailers_pass_both_ways_between_http2_clients_and_http1_targets(
    h2_proxy: ProxyProcess, backend: Backend, ca: CA
) -> None:
    deploy_tls(h2_proxy, ca, "app", backend.address)
    client = RawH2(h2_proxy, ca)
    try:
        sid = client.request("/chunked?n=2&trailer=X-Checksum:abc")
        status, headers, body = client.response(sid)
        assert status == 200 and body == b"chunk 0\nchunk 1\n" and headers[b"trailer"] == b"X-Checksum"
        [trailers] = [e for e in client.events if isinstance(e, h2.events.TrailersReceived)]
        assert trailers.stream_id == sid and list(trailers.headers or []) == [(b"x-checksum", b"abc")]
        sid = client.request("/echo", method="POST", end=False)  # no content-length: chunked upstream
        client.conn.send_data(sid, b"abc")
        client.conn.send_headers(sid, [(b"x-sum", b"6")], end_stream=True)
        client.flush()
        status, _, body = client.response(sid)
        echoed = json.loads(body)
        assert status == 200 and echoed["body"] == "abc" and echoed["trailers"] == [["x-sum", "6"]]
    finally:
        client.close()


SMUGGLING = {
    "uppercase name": [("X-Bad", "1")],
    "CR LF in a value": [("x-bad", "a\r\nx-injected: 1")],
    "NUL in a value": [("x-bad", "a\x00b")],
    "connection-specific field": [("connection", "keep-alive")],
    "transfer-encoding": [("transfer-encoding", "chunked")],
    "te other than trailers": [("te", "gzip")],
    "content-length not a number": [("content-length", "1, 2")],
    "two content-lengths that differ": [("content-length", "3"), ("content-length", "4")],
    "pseudo-header after a regular field": [("x-ok", "1"), (":method", "GET")],
    "unknown pseudo-header": [(":foo", "bar")],
    "host differing from :authority": [("host", "other.example.com")],
    "space around a value": [("x-bad", " padded")],
    "extended CONNECT (websocket over h2)": [(":protocol", "websocket")],
}


# h2 reads content-length itself (to check it against the DATA) and makes these connection errors
H2_CONNECTION_ERRORS = {"content-length not a number", "two content-lengths that differ"}


@pytest.mark.parametrize("case", sorted(SMUGGLING))
def test_smuggling_attempts_reset_the_stream_and_never_reach_the_target(
    h2_proxy: ProxyProcess, backend: Backend, ca: CA, case: str
) -> None:
    deploy_tls(h2_proxy, ca, "app", backend.address)
    before = backend.requests
    client = RawH2(h2_proxy, ca, validate=False)
    try:
        method = "CONNECT" if case.startswith("extended") else "POST"
        sid = client.request("/echo", method=method, headers=SMUGGLING[case], end=False)
        client.conn.send_data(sid, b"abcdef", end_stream=True)
        client.flush()
        reset = client.reset_of(sid)
        if case in H2_CONNECTION_ERRORS:
            assert reset is not None or client.goaway() is not None, client.events
        else:
            assert reset is not None and reset.error_code == h2.errors.ErrorCodes.PROTOCOL_ERROR
            status, _, _ = client.response(client.request("/echo"))  # a stream error: the connection goes on
            assert status == 200
    finally:
        client.close()
    assert backend.requests == before + (0 if case in H2_CONNECTION_ERRORS else 1)


def test_content_length_disagreeing_with_data_never_completes_upstream(
    h2_proxy: ProxyProcess, backend: Backend, ca: CA
) -> None:
    deploy_tls(h2_proxy, ca, "app", backend.address)
    client = RawH2(h2_proxy, ca, validate=False)
    try:
        sid = client.request("/echo", method="POST", headers=[("content-length", "3")], end=False)
        client.conn.send_data(sid, b"abcdefgh", end_stream=True)  # more than announced
        client.flush()
        reset = client.reset_of(sid)
        assert reset is not None and reset.error_code == h2.errors.ErrorCodes.PROTOCOL_ERROR
        status, _, _ = client.response(client.request("/echo"))  # a stream error: the connection goes on
        assert status == 200
    finally:
        client.close()
    assert all(e.get("status") != 200 for e in h2_proxy.requests_logged())


def flood_client(proxy: ProxyProcess, ca: CA) -> RawH2:
    client = RawH2(proxy, ca)
    status, _, _ = client.response(client.request("/echo"))
    assert status == 200
    return client


def assert_connection_closed_with_calm_or_error(client: RawH2) -> None:
    goaway = client.goaway(timeout=10)
    assert goaway is not None or client.closed
    if goaway is not None:
        assert goaway.error_code != 0
    assert client.wait_closed(10)


def test_rapid_reset_flood_closes_the_connection(h2_proxy: ProxyProcess, backend: Backend, ca: CA) -> None:
    deploy_tls(h2_proxy, ca, "app", backend.address)
    assert h2_proxy.proc is not None
    before = rss_kib(h2_proxy.proc.pid)
    client = flood_client(h2_proxy, ca)
    try:
        for _ in range(1000):
            if client.closed:
                break
            sid = client.request("/echo", end=True)
            client.conn.reset_stream(sid, h2.errors.ErrorCodes.CANCEL)
            client.flush()
        assert_connection_closed_with_calm_or_error(client)
    finally:
        client.close()
    assert rss_kib(h2_proxy.proc.pid) - before < 20 * 1024


@pytest.mark.parametrize("kind", ["ping", "settings"])
def test_ping_and_settings_floods_close_the_connection(
    h2_proxy: ProxyProcess, backend: Backend, ca: CA, kind: str
) -> None:
    deploy_tls(h2_proxy, ca, "app", backend.address)
    client = flood_client(h2_proxy, ca)
    try:
        frame = PingFrame(0, opaque_data=b"12345678") if kind == "ping" else SettingsFrame(0)
        data = frame.serialize()
        for _ in range(50):
            client.send_raw(data * 100)
            if client.closed:
                break
        assert_connection_closed_with_calm_or_error(client)
    finally:
        client.close()


def test_ping_is_answered(h2_proxy: ProxyProcess, backend: Backend, ca: CA) -> None:
    deploy_tls(h2_proxy, ca, "app", backend.address)
    client = flood_client(h2_proxy, ca)
    try:
        client.conn.ping(b"pingpong")
        client.flush()
        ack = client.until(lambda e: isinstance(e, h2.events.PingAckReceived))
        assert isinstance(ack, h2.events.PingAckReceived) and ack.ping_data == b"pingpong"
    finally:
        client.close()


def test_continuation_flood_closes_the_connection(h2_proxy: ProxyProcess, backend: Backend, ca: CA) -> None:
    deploy_tls(h2_proxy, ca, "app", backend.address)
    assert h2_proxy.proc is not None
    before = rss_kib(h2_proxy.proc.pid)
    client = flood_client(h2_proxy, ca)
    try:
        sid = client.conn.get_next_available_stream_id()
        head = HeadersFrame(sid)
        head.data = client.conn.encoder.encode(
            [(b":method", b"GET"), (b":scheme", b"https"), (b":authority", HOST.encode()), (b":path", b"/")]
        )
        client.send_raw(head.serialize())  # no END_HEADERS: CONTINUATION frames follow, forever
        piece = ContinuationFrame(sid)
        piece.data = b"\x40\x01a\x01b" * 1000  # literal fields, never a complete header block
        data = piece.serialize()
        for _ in range(2000):
            client.send_raw(data)
            if client.closed:
                break
        assert client.wait_closed(10)
    finally:
        client.close()
    assert rss_kib(h2_proxy.proc.pid) - before < 20 * 1024


def test_idle_connection_gets_goaway_and_is_closed(h2_proxy: ProxyProcess, backend: Backend, ca: CA) -> None:
    deploy_tls(h2_proxy, ca, "app", backend.address)
    client = flood_client(h2_proxy, ca)  # --idle-timeout=2s
    try:
        started = time.monotonic()
        goaway = client.goaway(timeout=10)
        assert goaway is not None and goaway.error_code == 0
        assert time.monotonic() - started >= 1.5
        assert client.wait_closed(5)
    finally:
        client.close()


def test_shutdown_sends_goaway_and_lets_the_stream_in_flight_finish(
    h2_proxy: ProxyProcess, backend: Backend, ca: CA
) -> None:
    # nghttp, because the h2 package's client treats any GOAWAY as the end of the connection
    if shutil.which("nghttp") is None:
        pytest.skip("nghttp is not installed (tests/proxy/setup.sh installs nghttp2-client)")
    deploy_tls(h2_proxy, ca, "app", backend.address)
    client = subprocess.Popen(
        [
            "nghttp",
            "-v",
            "-H",
            f":authority: {HOST}",
            f"https://127.0.0.1:{h2_proxy.https_port}/slow?ms=1000",
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    try:
        deadline = time.monotonic() + 10
        while backend.requests == 0 and time.monotonic() < deadline:
            time.sleep(0.02)
        assert h2_proxy.proc is not None
        h2_proxy.proc.send_signal(signal.SIGTERM)
        out, _ = client.communicate(timeout=20)
    finally:
        client.kill()
    goaway = out.index("recv GOAWAY frame")
    assert "error_code=NO_ERROR" in out[goaway:]
    assert ":status: 200" in out[goaway:] and "slow one" in out[goaway:]  # answered after the GOAWAY
    assert h2_proxy.proc.wait(10) == 0


def test_request_body_streams_with_flow_control_to_a_slow_target(
    h2_proxy: ProxyProcess, backend: Backend, ca: CA
) -> None:
    """A 4 MiB upload to a target reading 64 KiB per 10 ms: the client's window follows the target."""
    deploy_tls(h2_proxy, ca, "app", backend.address)
    client = Https(h2_proxy, ca, H2, timeout=60)
    try:
        body = b"u" * (4 * MiB)
        response = client.request("POST", "/sink?rate=65536", content=body)
    finally:
        client.close()
    assert response.status_code == 200 and str(len(body)) in response.text


def test_curl_http2(h2_proxy: ProxyProcess, backend: Backend, ca: CA) -> None:
    if shutil.which("curl") is None:
        pytest.skip("curl is not installed")
    deploy_tls(h2_proxy, ca, "app", backend.address)
    cafile = ca.write_ca(h2_proxy.tmp / "ca.pem")
    result = subprocess.run(
        [
            "curl", "-sS", "--http2", "--cacert", str(cafile), "-o", "/dev/null",
            "-w", "%{http_version} %{response_code}",
            "--resolve", f"{HOST}:{h2_proxy.https_port}:127.0.0.1",
            f"https://{HOST}:{h2_proxy.https_port}/echo",
        ],
        capture_output=True, text=True, timeout=30, check=False,
    )  # fmt: skip
    assert result.stdout == "2 200", result.stderr


def test_h2load_many_streams(h2_proxy: ProxyProcess, backend: Backend, ca: CA) -> None:
    if shutil.which("h2load") is None:
        pytest.skip("h2load is not installed (tests/proxy/setup.sh installs nghttp2-client)")
    deploy_tls(h2_proxy, ca, "app", backend.address)
    result = subprocess.run(
        ["h2load", "-n", "2000", "-c", "4", "-m", "20", "-H", f":authority: {HOST}",
         f"https://127.0.0.1:{h2_proxy.https_port}/echo"],
        capture_output=True, text=True, timeout=120, check=False,
    )  # fmt: skip
    assert "2000 succeeded, 0 failed, 0 errored" in result.stdout, result.stdout
    assert "status codes: 2000 2xx" in result.stdout, result.stdout
