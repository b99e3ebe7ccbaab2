"""Client-side timeouts in-process, on both parsers: the manual clock, mock transports.

--read-header-timeout bounds a whole request head from its first byte (a client trickling its head
one byte at a time is closed at that deadline); --idle-timeout applies between requests;
--request-body-timeout answers a body that stops making progress with 408 and closes.
"""

from __future__ import annotations

from proxy import defaults
from proxy.cli import run as run_cli
from proxy.cli.flags import apply_env_defaults
from tests.proxy.harness import Harness, get, ok, run, settle, status_of


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
