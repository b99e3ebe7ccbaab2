"""Client-side timeouts in-process, on both parsers: the manual clock, mock transports.

--read-header-timeout bounds a whole request head from its first byte (a client trickling its head
one byte at a time is closed at that deadline); --idle-timeout applies between requests;
--request-body-timeout answers a body that stops making progress with 408 and closes;
--write-timeout cuts a connection whose paused writes drain nothing for that long.
"""

from __future__ import annotations

from proxy import defaults
from proxy.cli import run as run_cli
from proxy.cli.flags import apply_env_defaults
from proxy.http.connection import ClientConnection
from tests.proxy.harness import Harness, MockTransport, get, ok, run, settle, status_of


def test_head_sent_one_byte_per_second_is_closed_at_the_read_header_deadline(parser: str) -> None:
    async def scenario(h: Harness) -> None:
        h.deploy("app")
        conn, client = h.client()
        head = get()
        limit = int(h.listener.read_header_timeout)
        for i in range(limit - 1):  # never a whole head: one byte a second
            conn.data_received(head[i : i + 1])
            await h.advance(1)
        assert not client.closed
        conn.data_received(head[limit - 1 : limit])
        await h.advance(1.5)
        assert client.closed and client.take() == b""
        assert h.targets.dialled == []

    run(parser, scenario)


def test_a_new_head_after_an_idle_gap_gets_its_own_read_header_deadline(parser: str) -> None:
    async def scenario(h: Harness) -> None:
        h.deploy("app")
        conn, client = h.client()
        conn.data_received(get())
        await settle()
        h.targets.respond(ok())
        assert status_of(client.take()) == 200
        await h.advance(h.listener.idle_timeout - 1)  # idle, within --idle-timeout
        conn.data_received(b"GET / HT")  # a new head starts: now --read-header-timeout runs
        await h.advance(h.listener.read_header_timeout - 1)
        conn.data_received(b"TP/1.1\r\nHo")  # more bytes of the same head do not extend it
        assert not client.closed
        await h.advance(2)
        assert client.closed

    run(parser, scenario)


def test_a_stalled_request_body_is_408_and_progress_resets_the_timeout(parser: str) -> None:
    async def scenario(h: Harness) -> None:
        h.deploy("app", response_timeout=1000.0)
        conn, client = h.client()
        timeout = h.listener.request_body_timeout
        conn.data_received(b"POST /up HTTP/1.1\r\nHost: app.test\r\nContent-Length: 10\r\n\r\nabc")
        await settle()
        await h.advance(timeout - 1)
        conn.data_received(b"d")  # progress: the timeout starts again
        await h.advance(timeout - 1)
        assert not client.closed and client.take() == b""
        await h.advance(2)
        response = client.take()
        assert status_of(response) == 408 and b"408" in response.split(b"\r\n\r\n", 1)[1]
        assert b"Connection: close\r\n" in response and client.closed
        upstream, _ = h.targets.last()
        assert upstream.closed
        assert [r.status for r in h.recorder.records] == [408]

    run(parser, scenario)


def test_a_stalled_buffered_request_body_is_408_before_reaching_the_target(parser: str) -> None:
    async def scenario(h: Harness) -> None:
        h.deploy("app", buffer_requests=True)
        conn, client = h.client()
        conn.data_received(
            b"POST /up HTTP/1.1\r\nHost: app.test\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n"
        )
        await h.advance(h.listener.request_body_timeout + 1)
        assert status_of(client.take()) == 408 and client.closed
        assert h.targets.dialled == []

    run(parser, scenario)


def test_a_complete_body_and_a_quiet_websocket_are_not_timed_out_as_bodies(parser: str) -> None:
    async def scenario(h: Harness) -> None:
        h.deploy("app", response_timeout=1000.0)
        conn, client = h.client()
        conn.data_received(b"POST / HTTP/1.1\r\nHost: app.test\r\nContent-Length: 2\r\n\r\nhi")
        await h.advance(h.listener.request_body_timeout + 1)
        h.targets.respond(ok())
        assert status_of(client.take()) == 200
        ws, ws_client = h.client(peer=("10.0.0.8", 1000))
        ws.data_received(get("/ws", extra=b"Connection: Upgrade\r\nUpgrade: websocket\r\n"))
        await settle()
        h.targets.respond(
            b"HTTP/1.1 101 Switching Protocols\r\nConnection: Upgrade\r\nUpgrade: websocket\r\n\r\n"
        )
        await h.advance(h.listener.request_body_timeout * 3)
        assert not ws_client.closed and status_of(ws_client.take()) == 101

    run(parser, scenario)


def test_request_body_timeout_comes_from_the_environment_the_prefixed_name_winning() -> None:
    def default(environ: dict[str, str]) -> object:
        flags = apply_env_defaults(run_cli.FLAGS, environ)
        return next(f.default for f in flags if f.name == "request-body-timeout")

    assert default({}) == defaults.REQUEST_BODY_TIMEOUT == 60.0
    assert default({"REQUEST_BODY_TIMEOUT": "1m30s"}) == 90.0
    assert default({"KAMAL_PROXY_REQUEST_BODY_TIMEOUT": "5s", "REQUEST_BODY_TIMEOUT": "9s"}) == 5.0
    assert default({"REQUEST_BODY_TIMEOUT": "soon"}) == 60.0  # unparsable: the default, as kamal-proxy


# ---------------------------------------------------------------------- --write-timeout

BIG = 400_000  # one read from the target: past the client transport's 256 KiB high-water mark


async def stalled_download(h: Harness) -> tuple[ClientConnection, MockTransport, MockTransport]:
    """A client that reads nothing (its transport paused) halfway through a 2 x BIG download;
    returns the connection, its transport and the target connection's transport."""
    h.deploy("app")
    conn, client = h.client()
    client.backpressure = True  # the client reads nothing: past the high-water mark, pause_writing
    conn.data_received(get("/big"))
    await settle()
    upstream, target = h.targets.last()
    target.data_received(b"HTTP/1.1 200 OK\r\nContent-Length: %d\r\n\r\n" % (2 * BIG) + b"x" * BIG)
    assert client.write_paused and not upstream.reading  # backpressure: the target is not read
    return conn, client, upstream


def test_a_client_that_stops_reading_is_cut_at_the_write_timeout_and_its_target_connection_closed(
    parser: str,
) -> None:
    async def scenario(h: Harness) -> None:
        conn, client, upstream = await stalled_download(h)
        timeout = h.listener.write_stalls.timeout
        await h.advance(timeout - 1)
        assert not client.closed and conn in h.listener.write_stalls
        await h.advance(2)
        assert client.aborted  # what is buffered would never go out: no graceful close
        assert "Response write timed out" in h.log.messages()
        client.lose()  # (as the transport reports after abort)
        assert upstream.closed  # its response was not read to the end: not back to the pool
        [target] = h.services[0][2].active.targets
        assert target.idle == [] and target.inflight == set()
        assert [r.status for r in h.recorder.records] == [499]
        assert len(h.listener.write_stalls) == 0 and h.listener.connections == set()

    run(parser, scenario)


def test_a_slow_but_steady_reader_is_not_cut_by_the_write_timeout(parser: str) -> None:
    async def scenario(h: Harness) -> None:
        conn, client, upstream = await stalled_download(h)
        timeout = h.listener.write_stalls.timeout
        for _ in range(int(timeout) * 3):  # paused all along, but a few bytes drain every second
            client.drain(1000)
            await h.advance(1)
        assert client.write_paused and not client.closed
        client.drain()  # it catches up: the target is read again and the rest goes out
        assert upstream.reading and conn not in h.listener.write_stalls
        h.targets.respond(b"x" * BIG)
        client.drain()
        assert not client.closed and [r.status for r in h.recorder.records] == [200]
        assert sum(len(piece) for piece in client.written) > 2 * BIG

    run(parser, scenario)


def test_a_connection_whose_writes_never_pause_is_never_write_timed_out(parser: str) -> None:
    async def scenario(h: Harness) -> None:
        h.deploy("app")
        conn, client = h.client()
        conn.data_received(get("/events"))
        await settle()
        h.targets.respond(
            b"HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\nTransfer-Encoding: chunked\r\n\r\n"
        )
        timeout = h.listener.write_stalls.timeout
        for _ in range(3):  # a quiet response (SSE): nothing waits to be written
            await h.advance(timeout + 1)
            assert not client.closed and len(h.listener.write_stalls) == 0
        h.targets.respond(b"5\r\nhello\r\n0\r\n\r\n")
        assert client.take().endswith(b"5\r\nhello\r\n0\r\n\r\n") and not client.closed

    run(parser, scenario)


def test_a_complete_response_the_client_never_reads_is_cut_at_the_write_timeout(parser: str) -> None:
    """The whole response is in the transport's buffer and the exchange is over (its target
    connection pooled); a graceful close would wait for that buffer forever, the timeout aborts."""

    async def scenario(h: Harness) -> None:
        h.deploy("app")
        conn, client = h.client()
        client.backpressure = True
        conn.data_received(get("/big", extra=b"Connection: close\r\n"))
        await settle()
        h.targets.respond(ok(b"x" * BIG))
        assert client.closed and not client.aborted  # closed after the response: still buffered
        assert [r.status for r in h.recorder.records] == [200] and client.write_paused
        await h.advance(h.listener.write_stalls.timeout + 1)
        assert client.aborted

    run(parser, scenario)


def test_a_write_timeout_of_zero_never_cuts_a_stalled_client(parser: str) -> None:
    async def scenario(h: Harness) -> None:
        _conn, client, upstream = await stalled_download(h)
        await h.advance(defaults.WRITE_TIMEOUT * 3)
        assert not client.closed and not upstream.closed and len(h.listener.write_stalls) == 0

    run(parser, scenario, write_timeout=0.0)


def test_write_timeout_comes_from_the_environment_the_prefixed_name_winning() -> None:
    def default(environ: dict[str, str]) -> object:
        flags = apply_env_defaults(run_cli.FLAGS, environ)
        return next(f.default for f in flags if f.name == "write-timeout")

    assert default({}) == defaults.WRITE_TIMEOUT == 60.0
    assert default({"WRITE_TIMEOUT": "2m"}) == 120.0
    assert default({"KAMAL_PROXY_WRITE_TIMEOUT": "5s", "WRITE_TIMEOUT": "9s"}) == 5.0
    assert default({"WRITE_TIMEOUT": "0"}) == 0.0  # disabled
    assert default({"WRITE_TIMEOUT": "soon"}) == 60.0  # unparsable: the default, as kamal-proxy
