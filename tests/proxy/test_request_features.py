"""Issue 12's data-plane features in-process, on both parsers: read targets and writer affinity,
the rollout split, per-service error pages, cookie path scoping, the client-IP header, the target
named in the access log on the proxy's own 502/504, and the metrics table."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path

from proxy.error_pages import load_error_pages
from proxy.lifecycle import ModeEvent, TargetEvent, TargetState
from proxy.options import HealthCheckConfig
from proxy.rollout import RolloutSplit
from proxy.targets import TargetSet
from tests.proxy.harness import Harness, get, ok, run, settle, status_of


def landed(h: Harness) -> list[str]:
    """The targets whose upstream connections received bytes since the last ``respond``."""
    return [conn.target.address for transport, conn in h.targets.connections if transport.written]


async def ask(h: Harness, request: bytes, response: bytes = b"") -> tuple[str, bytes]:
    """Send one request on a new client connection; the target it reached and the client's response."""
    conn, client = h.client()
    conn.data_received(request)
    await settle()
    [address] = landed(h)
    index = next(i for i, (t, c) in enumerate(h.targets.connections) if t.written)
    h.targets.respond(response or ok(), index=index)
    await settle()
    return address, client.take()


def request(method: bytes, path: bytes = b"/", extra: bytes = b"") -> bytes:
    body = b"Content-Length: 0\r\n" if method == b"POST" else b""
    return method + b" " + path + b" HTTP/1.1\r\nHost: app.test\r\n" + body + extra + b"\r\n"


def test_reads_go_to_readers_and_writes_to_writers_with_affinity(parser: str) -> None:
    async def scenario(h: Harness) -> None:
        h.deploy("app", "writer:1", readers=("reader:1",))
        for method in (b"GET", b"HEAD", b"OPTIONS"):
            target, _ = await ask(h, request(method))
            assert target == "reader:1", method
        target, response = await ask(h, request(b"POST"))
        assert target == "writer:1"
        cookie = next(
            line for line in response.split(b"\r\n") if line.startswith(b"Set-Cookie: kamal-writer=")
        )
        expiry = int(cookie.split(b"=")[1].split(b";")[0])
        assert 0 < expiry - time.time() * 1000 <= 1000  # --writer-affinity-timeout, 1s by default
        assert b"Path=/" in cookie and b"HttpOnly" in cookie
        # a read carrying the unexpired cookie goes to a writer; an expired one to a reader
        target, _ = await ask(h, request(b"GET", extra=b"Cookie: a=b; kamal-writer=%d\r\n" % expiry))
        assert target == "writer:1"
        past = int(time.time() * 1000) - 1
        target, _ = await ask(h, request(b"GET", extra=b"Cookie: kamal-writer=%d\r\n" % past))
        assert target == "reader:1"
        # the target opts out: no cookie, and the opt-out header does not reach the client
        _, response = await ask(h, request(b"DELETE"), ok(extra=b"X-Writer-Affinity: false\r\n"))
        assert b"kamal-writer" not in response and b"X-Writer-Affinity" not in response
        _, response = await ask(h, request(b"GET"), ok(extra=b"X-Writer-Affinity: true\r\n"))
        assert b"Set-Cookie" not in response and b"X-Writer-Affinity" not in response

    run(parser, scenario)


def test_websockets_go_to_writers_unless_readers_accept_them(parser: str) -> None:
    upgrade = b"Connection: Upgrade\r\nUpgrade: websocket\r\n"
    switch = b"HTTP/1.1 101 Switching Protocols\r\nConnection: Upgrade\r\nUpgrade: websocket\r\n\r\n"

    async def scenario(h: Harness) -> None:
        h.deploy("app", "writer:1", readers=("reader:1",), hosts=("app.test",))
        h.deploy(
            "ws",
            "writer:2",
            readers=("reader:2",),
            hosts=("ws.test",),
            service_options={"read_targets_accept_websockets": True},
        )
        target, _ = await ask(h, request(b"GET", extra=upgrade), switch)
        assert target == "writer:1"
        target, _ = await ask(h, get("/", host=b"ws.test", extra=upgrade), switch)
        assert target == "reader:2"

    run(parser, scenario)


def test_reads_fall_back_to_writers_while_no_reader_is_healthy(parser: str) -> None:
    async def scenario(h: Harness) -> None:
        service = h.deploy("app", "writer:1", readers=("reader:1",))
        service.active.readers[0].apply(TargetEvent.CHECK_FAILED)
        target, _ = await ask(h, request(b"GET"))
        assert target == "writer:1"
        service.active.readers[0].apply(TargetEvent.CHECK_PASSED)
        target, _ = await ask(h, request(b"GET"))
        assert target == "reader:1"

    run(parser, scenario)


def test_rollout_split_follows_the_cookie_allowlist_and_percentage(parser: str) -> None:
    async def scenario(h: Harness) -> None:
        service = h.deploy("app", "active:1")
        service.rollout = h.target_set("app", ("canary:1",))
        service.update_routing()
        beta = b"Cookie: kamal-rollout=beta\r\n"
        target, _ = await ask(h, request(b"GET", extra=beta))
        assert target == "active:1"  # rollout targets without a split get nothing
        service.rollout_split = RolloutSplit(percent=0, allowlist=("beta",))
        service.update_routing()
        target, _ = await ask(h, request(b"GET", extra=beta))
        assert target == "canary:1"
        target, _ = await ask(h, request(b"GET", extra=b"Cookie: kamal-rollout=gamma\r\n"))
        assert target == "active:1"
        service.rollout_split = RolloutSplit(percent=100)
        service.update_routing()
        target, _ = await ask(h, request(b"POST", extra=b"Cookie: kamal-rollout=gamma\r\n"))
        assert target == "canary:1"
        target, _ = await ask(h, request(b"GET"))
        assert target == "active:1"  # no cookie: active

    run(parser, scenario)


def test_error_pages_of_the_service_replace_the_built_in_ones(parser: str, tmp_path: Path) -> None:
    (tmp_path / "503.html").write_text(
        "<h1>Down</h1>{{ if .Message }}<p>{{ .Message }}</p>{{ else }}soon{{ end }}"
    )
    (tmp_path / "504.html").write_text("<h1>custom 504</h1>")
    pages = load_error_pages(str(tmp_path))

    async def scenario(h: Harness) -> None:
        service = h.deploy("app", "app:3000", error_pages=pages, response_timeout=1.0)
        service.change_mode(ModeEvent.STOP, message="Back at <5pm>")
        conn, client = h.client()
        conn.data_received(get())
        response = client.take()
        assert status_of(response) == 503
        assert response.endswith(b"<h1>Down</h1><p>Back at &lt;5pm&gt;</p>")
        assert b"Content-Type: text/html; charset=utf-8" in response
        service.change_mode(ModeEvent.RESUME)
        conn.data_received(get())
        await h.advance(1.1)
        assert client.take().endswith(b"<h1>custom 504</h1>")
        h.targets.refuse = True
        conn, client = h.client()
        conn.data_received(get())
        await settle()
        page = client.take()
        assert status_of(page) == 502 and b"Bad Gateway" in page  # no 502.html: the built-in page

    run(parser, scenario)


def test_set_cookie_paths_are_scoped_under_the_stripped_prefix(parser: str) -> None:
    async def scenario(h: Harness) -> None:
        h.deploy("api", "api:80", hosts=("app.test",), prefixes=("/api",), scope_cookie_paths=True)
        cookies = (
            b"Set-Cookie: a=1; Path=/\r\nSet-Cookie: b=2; Path=/admin; HttpOnly\r\n"
            b"Set-Cookie: c=3\r\nSet-Cookie: d=4; Domain=other.test; Path=/\r\n"
        )
        _, response = await ask(h, get("/api/x", host=b"app.test:8080"), ok(extra=cookies))
        assert b"Set-Cookie: a=1; Path=/api\r\n" in response
        assert b"Set-Cookie: b=2; Path=/api/admin; HttpOnly\r\n" in response
        assert b"Set-Cookie: c=3; Path=/api\r\n" in response
        assert b"Set-Cookie: d=4; Domain=other.test; Path=/\r\n" in response

    run(parser, scenario)


def test_client_ip_header_replaces_the_forwarded_for_and_the_logged_address(parser: str) -> None:
    async def scenario(h: Harness) -> None:
        h.deploy("app", "app:3000", service_options={"client_ip_header": "X-Real-IP"})
        conn, _ = h.client()
        conn.data_received(get(extra=b"X-Forwarded-For: 6.6.6.6\r\nX-Real-IP: 9.9.9.9\r\n"))
        await settle()
        upstream = h.targets.respond(ok())
        assert b"X-Forwarded-For: 9.9.9.9, 10.0.0.7\r\n" in upstream
        conn.data_received(get(extra=b"X-Forwarded-For: 6.6.6.6\r\n"))  # no such header: as before
        await settle()
        assert b"X-Forwarded-For: 6.6.6.6, 10.0.0.7\r\n" in h.targets.respond(ok())
        assert [r["remote_addr"] for r in h.log.requests()] == ["9.9.9.9", "6.6.6.6"]

    run(parser, scenario)


def test_access_log_names_the_target_of_the_proxys_own_502_and_504(parser: str) -> None:
    async def scenario(h: Harness) -> None:
        h.deploy("app", "app:3000", response_timeout=1.0)
        conn, client = h.client()
        conn.data_received(get())
        await h.advance(1.1)
        assert status_of(client.take()) == 504
        h.targets.refuse = True
        conn, client = h.client()
        conn.data_received(get())
        await settle()
        assert status_of(client.take()) == 502
        assert [(r["status"], r["target"]) for r in h.log.requests()] == [
            (504, "app:3000"),
            (502, "app:3000"),
        ]

    run(parser, scenario)


def test_metrics_count_requests_in_flight_unrouted_and_excluded(parser: str) -> None:
    async def scenario(h: Harness) -> None:
        assert h.metrics is not None
        service = h.deploy(
            "app", "app:3000", hosts=("app.test",), service_options={"exclude_metrics_paths": ("/up",)}
        )
        conn, client = h.client()
        conn.data_received(get("/a"))
        await settle()
        assert h.metrics.in_flight == {"app": 1}
        h.targets.respond(ok())
        conn.data_received(b"PROPFIND /a HTTP/1.1\r\nHost: app.test\r\n\r\n")
        await settle()
        h.targets.respond(b"HTTP/1.1 207 Multi\r\nContent-Length: 0\r\n\r\n")
        conn.data_received(get("/up"))
        await settle()
        h.targets.respond(ok())
        conn.data_received(get("/", host=b"nowhere.test"))
        await settle()
        assert b"HTTP/1.1 404 " in client.take()
        assert h.metrics.in_flight == {"app": 0}
        counts = {key: series.count for key, series in h.metrics.series.items()}
        assert counts == {("app", "GET", 200): 1, ("app", "OTHER", 207): 1, ("", "GET", 404): 1}
        h.targets.refuse = True
        service.active.targets[0].idle.clear()  # the next request connects anew
        conn.data_received(get("/b"))
        await settle()
        assert h.metrics.connect_errors == {"app": 1}

    run(parser, scenario, metrics=True)


def test_metrics_off_leaves_no_table(parser: str) -> None:
    async def scenario(h: Harness) -> None:
        h.deploy("app", "app:3000")
        conn, _ = h.client()
        conn.data_received(get())
        await settle()
        h.targets.respond(ok())
        assert h.listener.metrics is None
        assert [r.metered for r in h.recorder.records] == [False]

    run(parser, scenario)


def test_a_404_under_a_services_host_uses_that_services_page(parser: str, tmp_path: Path) -> None:
    (tmp_path / "404.html").write_text("<h1>no such page in app</h1>")
    pages = load_error_pages(str(tmp_path))

    async def scenario(h: Harness) -> None:
        h.deploy("app", "app:3000", hosts=("app.test",), prefixes=("/app",), error_pages=pages)
        conn, client = h.client()
        conn.data_received(get("/elsewhere", host=b"app.test:8080"))
        response = client.take()
        assert status_of(response) == 404 and response.endswith(b"<h1>no such page in app</h1>")
        conn, client = h.client()
        conn.data_received(get("/", host=b"other.test"))
        response = client.take()
        assert status_of(response) == 404 and b"no such page in app" not in response  # built-in
        assert [r["service"] for r in h.log.requests()] == ["", ""]

    run(parser, scenario)


def test_readers_are_health_checked_and_drained_with_the_writers() -> None:
    async def scenario() -> None:
        h = Harness()
        try:
            probed: list[str] = []

            async def probe(url: str, host_header: str) -> int:
                probed.append(url)
                return 500 if "reader" in url else 200  # the reader fails its checks

            targets = TargetSet(
                addresses=("writer:1",),
                readers=("reader:1",),
                health=HealthCheckConfig(),
                log=h.log,
                service="app",
                clock=h.clock,
                probe=probe,
            )
            targets.start_health_checks(slots=asyncio.Semaphore(4))
            await settle()
            assert sorted(probed) == ["http://reader:1/up", "http://writer:1/up"]
            assert [t.state for t in targets.targets] == [TargetState.HEALTHY, TargetState.ADDING]
            assert targets.healthy_readers == [] and targets.pick_reader() is targets.writers[0]
            await targets.drain(0)
            assert [t.state for t in targets.targets] == [TargetState.GONE, TargetState.GONE]
        finally:
            h.close()

    asyncio.run(scenario())


def test_error_pages_answer_413_and_an_expired_pause(parser: str, tmp_path: Path) -> None:
    (tmp_path / "413.html").write_text("<h1>too big for app</h1>")
    (tmp_path / "504.html").write_text("<h1>app took too long</h1>")
    pages = load_error_pages(str(tmp_path))

    async def scenario(h: Harness) -> None:
        service = h.deploy(
            "app", "app:3000", error_pages=pages, buffer_requests=True, max_request_body_size=4
        )
        conn, client = h.client()
        conn.data_received(b"POST / HTTP/1.1\r\nHost: app.test\r\nContent-Length: 10\r\n\r\n0123456789")
        await settle()
        response = client.take()
        assert status_of(response) == 413 and response.endswith(b"<h1>too big for app</h1>")
        h.pause(service, max_pause=1.0)
        conn, client = h.client()
        conn.data_received(get())
        await h.advance(1.1)
        response = client.take()
        assert status_of(response) == 504 and response.endswith(b"<h1>app took too long</h1>")

    run(parser, scenario)
