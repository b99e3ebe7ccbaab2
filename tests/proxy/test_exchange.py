"""The data plane in-process (connection + exchange), on both parsers: mock transports, manual clock.

Each test feeds a client's bytes, plays the target on the upstream connections the proxy opens,
and checks what the client and the target got, what was logged, and what the connection did with
its transport. Timeouts move the manual clock; nothing sleeps.
"""

from __future__ import annotations

from proxy.http.exchange import ExchangeState
from proxy.lifecycle import ModeEvent
from tests.proxy.harness import Harness, get, ok, run, settle, status_of


def test_request_is_routed_rewritten_and_its_response_relayed(parser: str) -> None:
    async def scenario(h: Harness) -> None:
        h.deploy("app", "app:3000", hosts=("app.test",))
        conn, client = h.client()
        conn.data_received(
            get("/a?b=1", extra=b"Connection: keep-alive, X-Hop\r\nX-Hop: 1\r\nX-Forwarded-For: 1.2.3.4\r\n")
        )
        await settle()
        assert h.targets.dialled == [("app", 3000)]
        request = h.targets.respond(ok(b"hello"))
        assert request.startswith(b"GET /a?b=1 HTTP/1.1\r\nHost: app.test\r\n")
        assert b"X-Hop" not in request and b"keep-alive" not in request
        assert b"X-Forwarded-For: 1.2.3.4, 10.0.0.7\r\n" in request
        assert b"X-Forwarded-Proto: http\r\n" in request
        assert b"X-Kamal-Target: app:3000\r\n" in request
        assert b"X-Request-Id: " in request and b"X-Request-Start: t=" in request
        response = client.take()
        assert response.startswith(b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\n")
        assert response.endswith(b"\r\n\r\nhello")
        assert not client.closed
        [line] = h.log.requests()
        assert (line["status"], line["path"], line["query"], line["service"], line["target"]) == (
            200,
            "/a",
            "b=1",
            "app",
            "app:3000",
        )
        assert (line["host"], line["client_addr"], line["remote_addr"], line["resp_content_length"]) == (
            "app.test",
            "10.0.0.7",
            "1.2.3.4",
            5,
        )

    run(parser, scenario)


def test_path_prefix_is_stripped_and_unknown_host_gets_the_404_page(parser: str) -> None:
    async def scenario(h: Harness) -> None:
        h.deploy("api", "api:80", hosts=("app.test",), prefixes=("/api",))
        conn, client = h.client()
        conn.data_received(get("/api/users"))
        await settle()
        assert h.targets.respond(ok()).startswith(b"GET /users HTTP/1.1\r\n")
        assert status_of(client.take()) == 200
        conn.data_received(get("/", host=b"other.test"))
        page = client.take()
        assert status_of(page) == 404 and b"404" in page
        assert [r.status for r in h.recorder.records] == [200, 404]
        assert h.recorder.records[1].service is None

    run(parser, scenario)


def test_keep_alive_reuses_the_upstream_connection(parser: str) -> None:
    async def scenario(h: Harness) -> None:
        h.deploy("app")
        conn, client = h.client()
        for body in (b"one", b"two", b"three"):
            conn.data_received(get())
            await settle()
            h.targets.respond(ok(body))
            assert client.take().endswith(body)
        assert len(h.targets.connections) == 1

    run(parser, scenario)


def test_pipelined_requests_are_answered_in_order_one_at_a_time(parser: str) -> None:
    async def scenario(h: Harness) -> None:
        h.deploy("app")
        conn, client = h.client()
        conn.data_received(
            get("/1") + get("/2") + b"POST /3 HTTP/1.1\r\nHost: a\r\nContent-Length: 5\r\n\r\nhello"
        )
        await settle()
        first = h.targets.respond(ok(b"first"))
        assert first.startswith(b"GET /1 ") and b"GET /2" not in first  # the next waits for this response
        assert h.targets.respond(ok(b"second")).startswith(b"GET /2 ")
        third = h.targets.respond(ok(b"third"))
        assert third.startswith(b"POST /3 ") and third.endswith(b"\r\n\r\nhello")
        stream = client.take()
        assert stream.index(b"first") < stream.index(b"second") < stream.index(b"third")
        assert [r.path for r in h.recorder.records] == ["/1", "/2", "/3"]

    run(parser, scenario)


def test_chunked_response_is_rechunked_for_http11_clients(parser: str) -> None:
    async def scenario(h: Harness) -> None:
        h.deploy("app")
        conn, client = h.client()
        conn.data_received(get())
        await settle()
        h.targets.respond(
            b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n2\r\nde\r\n0\r\n\r\n"
        )
        response = client.take()
        assert b"Transfer-Encoding: chunked\r\n" in response
        assert response.endswith(b"\r\n\r\n3\r\nabc\r\n2\r\nde\r\n0\r\n\r\n")
        assert not client.closed

    run(parser, scenario)


def test_close_delimited_response_is_chunked_for_11_and_close_delimited_for_10(parser: str) -> None:
    async def scenario(h: Harness) -> None:
        h.deploy("app")
        for version, expect_chunked in ((b"1.1", True), (b"1.0", False)):
            conn, client = h.client()
            conn.data_received(b"GET / HTTP/" + version + b"\r\nHost: a\r\n\r\n")
            await settle()
            upstream, _ = h.targets.last()
            h.targets.respond(b"HTTP/1.1 200 OK\r\nConnection: close\r\n\r\nstream")
            upstream.lose()
            response = client.take()
            if expect_chunked:
                assert response.endswith(b"6\r\nstream\r\n0\r\n\r\n")
                assert not client.closed
            else:
                assert response.endswith(b"\r\n\r\nstream")
                assert b"Connection: close\r\n" in response and b"chunked" not in response
                assert client.closed

    run(parser, scenario)


def test_http10_keep_alive_is_answered_with_keep_alive(parser: str) -> None:
    async def scenario(h: Harness) -> None:
        h.deploy("app")
        conn, client = h.client()
        conn.data_received(b"GET / HTTP/1.0\r\nHost: a\r\nConnection: keep-alive\r\n\r\n")
        await settle()
        h.targets.respond(ok())
        assert b"Connection: keep-alive\r\n" in client.take()
        assert not client.closed

    run(parser, scenario)


def test_expect_100_continue_is_relayed_from_the_target(parser: str) -> None:
    async def scenario(h: Harness) -> None:
        h.deploy("app")
        conn, client = h.client()
        conn.data_received(
            b"POST /u HTTP/1.1\r\nHost: a\r\nExpect: 100-continue\r\nContent-Length: 5\r\n\r\n"
        )
        await settle()
        upstream, _ = h.targets.last()
        assert b"Expect: 100-continue" in h.targets.respond(b"HTTP/1.1 100 Continue\r\n\r\n")
        assert client.take() == b"HTTP/1.1 100 Continue\r\n\r\n"
        conn.data_received(b"hello")
        assert upstream.take() == b"hello"
        h.targets.respond(ok())
        assert status_of(client.take()) == 200

    run(parser, scenario)


def test_buffered_request_gets_100_continue_and_goes_whole_with_its_length(parser: str) -> None:
    async def scenario(h: Harness) -> None:
        h.deploy("app", buffer_requests=True)
        conn, client = h.client()
        conn.data_received(
            b"POST /u HTTP/1.1\r\nHost: a\r\nExpect: 100-continue\r\nTransfer-Encoding: chunked\r\n\r\n"
        )
        assert client.take() == b"HTTP/1.1 100 Continue\r\n\r\n"
        conn.data_received(b"3\r\nabc\r\n")
        await settle()
        assert h.targets.connections == []  # nothing goes out before the whole body is in
        conn.data_received(b"2\r\nde\r\n0\r\n\r\n")
        await settle()
        request = h.targets.respond(ok())
        assert b"Content-Length: 5\r\n\r\nabcde" in request and b"chunked" not in request
        assert status_of(client.take()) == 200

    run(parser, scenario)


def test_request_body_over_max_request_body_is_413_and_the_connection_closes(parser: str) -> None:
    async def scenario(h: Harness) -> None:
        h.deploy("app", buffer_requests=True, max_request_body_size=4)
        conn, client = h.client()
        conn.data_received(b"POST /u HTTP/1.1\r\nHost: a\r\nContent-Length: 10\r\n\r\n0123456789")
        response = client.take()
        assert status_of(response) == 413 and b"Connection: close\r\n" in response
        assert client.closed
        assert h.targets.connections == []

    run(parser, scenario)


def test_response_over_max_response_body_is_500(parser: str) -> None:
    async def scenario(h: Harness) -> None:
        h.deploy("app", buffer_responses=True, max_response_body_size=4)
        conn, client = h.client()
        conn.data_received(get())
        await settle()
        h.targets.respond(ok(b"0123456789"))
        assert status_of(client.take()) == 500
        assert h.targets.last()[0].closed

    run(parser, scenario)


def test_buffered_response_goes_out_whole_with_its_length(parser: str) -> None:
    async def scenario(h: Harness) -> None:
        h.deploy("app", buffer_responses=True)
        conn, client = h.client()
        conn.data_received(get())
        await settle()
        transport, upstream = h.targets.last()
        transport.take()
        upstream.data_received(b"HTTP/1.1 201 Created\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n")
        assert client.take() == b""  # held until the whole body is here
        upstream.data_received(b"0\r\n\r\n")
        response = client.take()
        assert response.startswith(b"HTTP/1.1 201 Created\r\n")
        assert b"Content-Length: 3\r\n" in response and response.endswith(b"\r\n\r\nabc")

    run(parser, scenario)


def test_websocket_upgrade_becomes_a_tunnel_both_ways(parser: str) -> None:
    async def scenario(h: Harness) -> None:
        h.deploy("app")
        conn, client = h.client()
        conn.data_received(get("/ws", extra=b"Connection: Upgrade\r\nUpgrade: websocket\r\n"))
        await settle()
        upstream, _ = h.targets.last()
        request = h.targets.respond(
            b"HTTP/1.1 101 Switching Protocols\r\nConnection: Upgrade\r\nUpgrade: websocket\r\n\r\n"
        )
        assert b"Connection: Upgrade\r\nUpgrade: websocket\r\n" in request
        assert client.take().startswith(b"HTTP/1.1 101 Switching Protocols\r\nConnection: Upgrade\r\n")
        conn.data_received(b"\x81\x02hi")
        assert upstream.take() == b"\x81\x02hi"
        h.targets.respond(b"\x81\x02yo")
        assert client.take() == b"\x81\x02yo"
        upstream.lose()
        assert client.closed
        await settle()
        client.lose()
        assert h.recorder.records[0].status == 101

    run(parser, scenario)


def test_paused_request_waits_and_goes_on_at_resume(parser: str) -> None:
    async def scenario(h: Harness) -> None:
        service = h.deploy("app")
        h.pause(service)
        conn, client = h.client()
        conn.data_received(b"POST /held HTTP/1.1\r\nHost: a\r\nContent-Length: 4\r\n\r\nbody")
        await h.advance(10)
        assert h.targets.connections == [] and client.take() == b""
        service.change_mode(ModeEvent.RESUME)
        await settle()
        assert h.targets.respond(ok()).endswith(b"\r\n\r\nbody")
        assert status_of(client.take()) == 200

    run(parser, scenario)


def test_pause_past_max_pause_is_504_and_the_connection_serves_on(parser: str) -> None:
    async def scenario(h: Harness) -> None:
        service = h.deploy("app")
        h.pause(service, max_pause=5)
        conn, client = h.client()
        conn.data_received(get("/held"))
        await h.advance(4.9)
        assert client.take() == b""
        await h.advance(0.2)
        assert status_of(client.take()) == 504
        assert "Rejecting request due to expired pause" in h.log.messages()
        service.change_mode(ModeEvent.RESUME)
        conn.data_received(get("/next"))
        await settle()
        h.targets.respond(ok())
        assert status_of(client.take()) == 200

    run(parser, scenario)


def test_stop_answers_503_with_the_message_also_to_held_requests(parser: str) -> None:
    async def scenario(h: Harness) -> None:
        service = h.deploy("app")
        h.pause(service)
        conn, client = h.client()
        conn.data_received(get())
        service.change_mode(ModeEvent.STOP, message="Back at <5pm>")
        held = client.take()
        assert status_of(held) == 503 and b"Back at &lt;5pm&gt;" in held
        conn.data_received(get())
        assert status_of(client.take()) == 503

    run(parser, scenario)


def test_health_check_path_answers_200_while_paused(parser: str) -> None:
    async def scenario(h: Harness) -> None:
        service = h.deploy("app")
        h.pause(service)
        conn, client = h.client()
        conn.data_received(get("/up"))
        response = client.take()
        assert status_of(response) == 200
        assert b"Content-Length: 0\r\n" in response and response.endswith(b"\r\n\r\n")
        assert h.targets.connections == []

    run(parser, scenario)


def test_slow_target_is_504_after_target_timeout(parser: str) -> None:
    async def scenario(h: Harness) -> None:
        h.deploy("app", response_timeout=2.0)
        conn, client = h.client()
        conn.data_received(get())
        await settle()
        upstream, _ = h.targets.last()
        await h.advance(1.9)
        assert client.take() == b""
        await h.advance(0.2)
        page = client.take()
        assert status_of(page) == 504 and b"Gateway Timeout" in page
        assert upstream.closed

    run(parser, scenario)


def test_connect_that_hangs_is_504_after_the_connect_timeout(parser: str) -> None:
    async def scenario(h: Harness) -> None:
        service = h.deploy("app", "app:3000")
        target = service.active.targets[0]
        target.connect_host = "10.1.1.1"  # the address a previous connection resolved to
        h.targets.hang = True
        conn, client = h.client()
        conn.data_received(get())
        await h.advance(h.listener.connect_timeout - 0.5)
        assert client.take() == b""
        await h.advance(1)
        assert status_of(client.take()) == 504
        assert target.connect_host == "app"  # the next connect looks the name up again

    run(parser, scenario)


def test_once_connected_the_target_timeout_runs_from_the_request_not_the_connect_deadline(
    parser: str,
) -> None:
    async def scenario(h: Harness) -> None:
        h.deploy("app", response_timeout=30.0)
        conn, client = h.client()
        conn.data_received(get())
        await settle()
        assert h.targets.connections  # connected at once
        await h.advance(h.listener.connect_timeout + 1)
        assert client.take() == b""  # the connect deadline no longer applies
        await h.advance(30 - h.listener.connect_timeout)
        assert status_of(client.take()) == 504

    run(parser, scenario)


def test_refused_connect_is_502_and_logged(parser: str) -> None:
    async def scenario(h: Harness) -> None:
        h.deploy("app", "app:3000")
        h.targets.refuse = True
        conn, client = h.client()
        conn.data_received(get())
        await settle()
        page = client.take()
        assert status_of(page) == 502 and b"Bad Gateway" in page
        [error] = [e for e in h.log.entries if e["msg"] == "Error while proxying"]
        assert error["target"] == "app:3000"

    run(parser, scenario)


def test_target_closing_before_its_response_is_502(parser: str) -> None:
    async def scenario(h: Harness) -> None:
        h.deploy("app")
        conn, client = h.client()
        conn.data_received(get())
        await settle()
        h.targets.last()[0].lose()
        assert status_of(client.take()) == 502

    run(parser, scenario)


def test_dead_pooled_connection_is_retried_once_for_a_safe_request(parser: str) -> None:
    async def scenario(h: Harness) -> None:
        h.deploy("app")
        conn, client = h.client()
        conn.data_received(get())
        await settle()
        h.targets.respond(ok())
        client.take()
        conn.data_received(get())  # goes out on the pooled connection ...
        pooled, _ = h.targets.last()
        assert pooled.take().startswith(b"GET / ")
        pooled.lose()  # ... which the target had closed
        await settle()
        assert len(h.targets.connections) == 2
        h.targets.respond(ok(b"retried"))
        assert client.take().endswith(b"retried")

    run(parser, scenario)


def test_client_going_away_mid_request_is_logged_499_and_closes_the_upstream(parser: str) -> None:
    async def scenario(h: Harness) -> None:
        h.deploy("app")
        conn, client = h.client()
        conn.data_received(get())
        await settle()
        upstream, _ = h.targets.last()
        client.lose()
        assert upstream.closed
        assert [r.status for r in h.recorder.records] == [499]
        assert h.listener.awaiting == set() and h.listener.connections == set()

    run(parser, scenario)


def test_read_header_timeout_closes_a_slow_client(parser: str) -> None:
    async def scenario(h: Harness) -> None:
        h.deploy("app")
        conn, client = h.client()
        conn.data_received(b"GET / HTTP/1.1\r\nHo")
        await h.advance(h.listener.read_header_timeout - 1)
        assert not client.closed
        await h.advance(2)
        assert client.closed and client.take() == b""

    run(parser, scenario)


def test_idle_keep_alive_connection_is_closed_after_idle_timeout(parser: str) -> None:
    async def scenario(h: Harness) -> None:
        h.deploy("app")
        conn, client = h.client()
        conn.data_received(get())
        await settle()
        h.targets.respond(ok())
        await h.advance(h.listener.idle_timeout - 1)
        assert not client.closed
        await h.advance(2)
        assert client.closed

    run(parser, scenario)


def test_busy_connection_is_not_closed_by_the_idle_sweep(parser: str) -> None:
    async def scenario(h: Harness) -> None:
        h.deploy("app", response_timeout=1000.0)
        conn, client = h.client()
        conn.data_received(get())
        await h.advance(h.listener.idle_timeout + h.listener.read_header_timeout)
        assert not client.closed
        h.targets.respond(ok())
        assert status_of(client.take()) == 200

    run(parser, scenario)


def test_malformed_request_is_400_and_closes_while_other_connections_go_on(parser: str) -> None:
    async def scenario(h: Harness) -> None:
        h.deploy("app")
        good, good_client = h.client(peer=("10.0.0.8", 1000))
        conn, client = h.client()
        conn.data_received(b"GET / HTTP/1.1\r\nHost: a\r\nBad Header Line\r\n\r\n")
        response = client.take()
        assert status_of(response) == 400 and b"<h1>400 Bad Request</h1>" in response
        assert b"Connection: close\r\n" in response and client.closed
        assert "Malformed request" in h.log.messages()
        good.data_received(get())
        await settle()
        h.targets.respond(ok())
        assert status_of(good_client.take()) == 200

    run(parser, scenario)


def test_oversized_head_is_431(parser: str) -> None:
    async def scenario(h: Harness) -> None:
        h.deploy("app")
        conn, client = h.client()
        conn.data_received(get(extra=b"X-Big: " + b"a" * (70 * 1024) + b"\r\n"))
        assert status_of(client.take()) == 431
        assert client.closed and h.targets.connections == []

    run(parser, scenario)


def test_malformed_body_after_the_response_started_cuts_the_connection(parser: str) -> None:
    async def scenario(h: Harness) -> None:
        h.deploy("app")
        conn, client = h.client()
        conn.data_received(b"POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n")
        await settle()
        transport, upstream = h.targets.last()
        transport.take()
        upstream.data_received(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n1\r\nx\r\n")
        assert status_of(client.take()) == 200
        conn.data_received(b"zz\r\n")  # not a chunk size
        assert client.aborted
        client.lose()
        assert [r.status for r in h.recorder.records] == [499]

    run(parser, scenario)


def test_no_healthy_target_is_503(parser: str) -> None:
    async def scenario(h: Harness) -> None:
        service = h.deploy("app")
        service.active.healthy = []
        conn, client = h.client()
        conn.data_received(get())
        assert status_of(client.take()) == 503

    run(parser, scenario)


def test_full_upstream_pauses_reading_the_client_and_a_full_client_pauses_the_upstream(parser: str) -> None:
    async def scenario(h: Harness) -> None:
        h.deploy("app")
        conn, client = h.client()
        conn.data_received(b"POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 100\r\n\r\nabc")
        await settle()
        upstream_transport, upstream = h.targets.last()
        upstream.pause_writing()
        assert client.reading_changes == ["pause"]
        upstream.resume_writing()
        assert client.reading_changes == ["pause", "resume"]
        conn.pause_writing()
        assert upstream_transport.reading_changes == ["pause"]
        conn.resume_writing()
        assert upstream_transport.reading_changes == ["pause", "resume"]

    run(parser, scenario)


def test_body_arriving_while_the_upstream_connects_is_held_then_sent_and_bounded(parser: str) -> None:
    async def scenario(h: Harness) -> None:
        h.deploy("app")
        conn, client = h.client()
        big = 300 * 1024
        conn.data_received(b"POST / HTTP/1.1\r\nHost: a\r\nContent-Length: %d\r\n\r\n" % big + b"x" * big)
        assert h.targets.connections == [] and not client.reading  # over the mark while connecting
        await settle()
        upstream, _ = h.targets.last()
        sent = upstream.take()
        assert sent.startswith(b"POST / HTTP/1.1\r\n") and sent.endswith(b"x" * big)
        assert client.reading

    run(parser, scenario)


def test_too_much_pipelined_input_pauses_reading_until_the_queue_drains(parser: str) -> None:
    async def scenario(h: Harness) -> None:
        h.deploy("app")
        conn, client = h.client()
        conn.data_received(get("/1"))
        await settle()
        big = 300 * 1024
        conn.data_received(b"POST /2 HTTP/1.1\r\nHost: a\r\nContent-Length: %d\r\n\r\n" % big + b"x" * big)
        assert not client.reading
        h.targets.respond(ok())
        assert client.reading

    run(parser, scenario)


def test_drain_cancels_requests_still_waiting_with_504(parser: str) -> None:
    async def scenario(h: Harness) -> None:
        service = h.deploy("app")
        conn, client = h.client()
        conn.data_received(get())
        await settle()
        [target] = service.active.targets
        await target.settle(0)
        assert status_of(client.take()) == 504
        assert "Request cancelled due to draining" in h.log.messages()
        assert target.inflight == set()

    run(parser, scenario)


def test_exchange_ends_done_and_leaves_nothing_behind(parser: str) -> None:
    async def scenario(h: Harness) -> None:
        service = h.deploy("app")
        conn, client = h.client()
        conn.data_received(get())
        await settle()
        exchange = conn.exchange
        assert exchange is not None and exchange.state is ExchangeState.WAITING
        h.targets.respond(ok())
        assert exchange.state.name == "DONE" and conn.exchange is None  # (by name: mypy narrowed the state)
        assert status_of(client.take()) == 200
        assert service.active.targets[0].inflight == set() and h.listener.awaiting == set()
        assert len(service.active.targets[0].idle) == 1

    run(parser, scenario)
