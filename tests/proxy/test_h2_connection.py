"""The HTTP/2 connection in-process: an h2 client against ``H2Connection`` on mock transports.

Flow control is what these check without sockets or sleeps: a stream whose client window is full
stops reading its own target and no other; a full TLS write buffer stops every target; request DATA
is acknowledged to the client only once the target took it.
"""

from __future__ import annotations

import asyncio
import gc

import h2.config
import h2.connection
import h2.events

from proxy.http.exchange import Exchange
from proxy.http.h2_connection import CANCEL, H2Connection, H2Stream
from proxy.http.upstream import UpstreamConnection
from proxy.lifecycle import ModeEvent
from tests.proxy.harness import Harness, MockTransport, ok, run, settle


class Client:
    """An h2 client speaking to one ``H2Connection`` over a mock transport."""

    def __init__(self, h: Harness) -> None:
        self.conn = H2Connection(h.listener)
        self.transport = MockTransport()
        self.transport.protocol = self.conn
        self.conn.connection_made(self.transport)  # type: ignore[arg-type]
        self.h2 = h2.connection.H2Connection(
            h2.config.H2Configuration(client_side=True, header_encoding=None)
        )
        self.h2.initiate_connection()
        self.h2.increment_flow_control_window(16 << 20)  # as browsers: only stream windows limit
        self.events: list[h2.events.Event] = []

    async def pump(self) -> list[h2.events.Event]:
        """Exchange bytes both ways until both sides are quiet; the client's new events."""
        new: list[h2.events.Event] = []
        for _ in range(20):
            await settle()
            out = self.h2.data_to_send()
            if out:
                self.conn.data_received(out)
                await settle()
            got = self.transport.take()
            if got:
                new += self.h2.receive_data(got)
            if not out and not got:
                break
        self.events += new
        return new

    def get(self, path: str) -> int:
        sid = int(self.h2.get_next_available_stream_id())
        fields = [
            (b":method", b"GET"),
            (b":scheme", b"https"),
            (b":authority", b"app.test"),
            (b":path", path.encode()),
        ]
        self.h2.send_headers(sid, fields, end_stream=True)
        return sid

    def received(self, sid: int) -> int:
        return sum(
            len(e.data or b"")
            for e in self.events
            if isinstance(e, h2.events.DataReceived) and e.stream_id == sid
        )

    def acknowledge(self, sid: int) -> None:
        done = sum(
            e.flow_controlled_length or 0
            for e in self.events
            if isinstance(e, h2.events.DataReceived) and e.stream_id == sid
        )
        self.h2.acknowledge_received_data(done, sid)
        self.events = [
            e for e in self.events if not (isinstance(e, h2.events.DataReceived) and e.stream_id == sid)
        ]


def post(client: Client, path: str, *, length: int | None) -> int:
    """Open a POST stream; ``length`` None: no content-length (the body goes to the target chunked)."""
    sid = int(client.h2.get_next_available_stream_id())
    fields = [
        (b":method", b"POST"),
        (b":scheme", b"https"),
        (b":authority", b"app.test"),
        (b":path", path.encode()),
    ]
    if length is not None:
        fields.append((b"content-length", b"%d" % length))
    client.h2.send_headers(sid, fields)
    return sid


def status(client: Client, sid: int) -> int | None:
    for e in client.events:
        if isinstance(e, h2.events.ResponseReceived) and e.stream_id == sid:
            return int(dict(e.headers or [])[b":status"])
    return None


BIG = 300_000  # more than the client's 65,535-byte stream window
PIECE = 100_000  # one read from a target: more than the client's window
Streamed = tuple[int, MockTransport, UpstreamConnection]  # a stream, its target's transport and connection


async def two_streams_past_their_windows(
    h: Harness, first: str, second: str
) -> tuple[Client, Streamed, Streamed]:
    """Two GET streams whose targets each sent a BIG response's head and first PIECE."""
    h.deploy("app", "app:3000", hosts=("app.test",))
    client = Client(h)
    await client.pump()
    streams = client.get(first), client.get(second)
    await client.pump()
    (a_up, a_conn), (b_up, b_conn) = h.targets.connections
    head = b"HTTP/1.1 200 OK\r\nContent-Length: %d\r\n\r\n" % BIG
    a_conn.data_received(head + b"s" * PIECE)
    b_conn.data_received(head + b"f" * PIECE)
    await client.pump()
    return client, (streams[0], a_up, a_conn), (streams[1], b_up, b_conn)


async def read_on(client: Client, streamed: Streamed, sent: int) -> int:
    """The client takes what ``streamed`` sent (a WINDOW_UPDATE); once its target is read again, the
    next piece arrives. Returns the body bytes the target has sent so far."""
    stream, up, conn = streamed
    client.acknowledge(stream)
    await client.pump()
    if up.reading and sent < BIG:
        conn.data_received(b"f" * min(PIECE, BIG - sent))
        sent += min(PIECE, BIG - sent)
        await client.pump()
    return sent


def test_a_stream_with_a_full_window_stalls_only_its_own_target() -> None:
    async def scenario(h: Harness) -> None:
        client, (slow, slow_up, _), fast_streamed = await two_streams_past_their_windows(h, "/slow", "/fast")
        fast, fast_up, _ = fast_streamed
        assert not slow_up.reading and not fast_up.reading  # both windows full: neither target is read
        sent = PIECE
        for _ in range(20):  # only the fast stream's reader keeps up
            sent = await read_on(client, fast_streamed, sent)
        assert any(isinstance(e, h2.events.StreamEnded) and e.stream_id == fast for e in client.events)
        assert client.received(slow) <= 65_535
        assert not slow_up.reading  # the slow stream still holds its own target...
        assert len(h.log.requests()) == 1  # ...and only the fast exchange finished

    run("httptools", scenario)


def test_a_full_tls_write_buffer_pauses_every_stream_target() -> None:
    async def scenario(h: Harness) -> None:
        h.deploy("app", "app:3000", hosts=("app.test",))
        client = Client(h)
        await client.pump()
        client.get("/a")
        client.get("/b")
        await client.pump()
        ups = [t for t, _ in h.targets.connections]
        for index in (0, 1):
            h.targets.connections[index][1].data_received(b"HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\nab")
        client.conn.pause_writing()
        assert [t.reading for t in ups] == [False, False]
        client.conn.resume_writing()
        assert [t.reading for t in ups] == [True, True]

    run("httptools", scenario)


def test_request_data_is_acknowledged_only_once_the_target_takes_it() -> None:
    async def scenario(h: Harness) -> None:
        h.deploy("app", "app:3000", hosts=("app.test",))
        client = Client(h)
        await client.pump()
        sid = post(client, "/up", length=250_000)
        await client.pump()
        _, upstream = h.targets.last()
        upstream.pause_writing()  # the target's socket buffer is full
        for _ in range(16):
            client.h2.send_data(sid, b"x" * 15_000)
        await client.pump()
        stalled = client.h2.local_flow_control_window(sid)
        assert stalled == 262_144 - 16 * 15_000  # nothing was acknowledged: the window only shrank
        upstream.resume_writing()
        await client.pump()
        assert any(isinstance(e, h2.events.WindowUpdated) and e.stream_id == sid for e in client.events)
        assert client.h2.local_flow_control_window(sid) > stalled

    run("httptools", scenario)


def test_a_stalled_request_body_is_408_on_its_stream_and_progress_resets_the_timeout() -> None:
    async def scenario(h: Harness) -> None:
        h.deploy("app", "app:3000", hosts=("app.test",), response_timeout=1000.0)
        client = Client(h)
        await client.pump()
        timeout = h.listener.request_body_timeout
        stalled, flowing = post(client, "/stalled", length=10), post(client, "/flowing", length=10)
        client.h2.send_data(stalled, b"abc")
        client.h2.send_data(flowing, b"abc")
        await client.pump()
        await h.advance(timeout - 1)
        client.h2.send_data(flowing, b"d")  # progress on one stream: its timeout starts again
        await client.pump()
        await h.advance(2)
        await client.pump()
        assert status(client, stalled) == 408
        assert any(
            isinstance(e, h2.events.StreamReset) and e.stream_id == stalled and e.error_code == 0
            for e in client.events
        )  # NO_ERROR: stop sending the rest of the body
        assert status(client, flowing) is None and not client.transport.closed
        (stalled_up, _), (flowing_up, _) = h.targets.connections
        assert stalled_up.closed and not flowing_up.closed
        await h.advance(timeout - 3)  # 1 s short of its timeout since its last DATA
        await client.pump()
        assert status(client, flowing) is None
        await h.advance(2)
        await client.pump()
        assert status(client, flowing) == 408 and not client.transport.closed
        assert [r.status for r in h.recorder.records] == [408, 408]
        sid = client.get("/after")  # the connection goes on
        await client.pump()
        h.targets.respond(ok(b"hi"))
        await client.pump()
        assert status(client, sid) == 200

    run("httptools", scenario)


def test_a_body_the_proxy_is_not_reading_is_not_timed_out() -> None:
    async def scenario(h: Harness) -> None:
        service = h.deploy("app", "app:3000", hosts=("app.test",), response_timeout=1000.0)
        h.pause(service, max_pause=h.listener.request_body_timeout * 4)
        client = Client(h)
        await client.pump()
        sid = post(client, "/held", length=10)
        client.h2.send_data(sid, b"abc")
        await client.pump()
        await h.advance(h.listener.request_body_timeout * 3)  # held by the pause: not the client's stall
        await client.pump()
        assert status(client, sid) is None and h.recorder.records == []
        service.change_mode(ModeEvent.RESUME)
        await client.pump()
        client.h2.send_data(sid, b"defghij", end_stream=True)
        await client.pump()
        request = h.targets.respond(ok(b"done"))
        assert request.endswith(b"abcdefghij")
        await client.pump()
        assert status(client, sid) == 200

    run("httptools", scenario)


def test_idle_connection_gets_goaway_then_closes() -> None:
    async def scenario(h: Harness) -> None:
        h.deploy("app", "app:3000", hosts=("app.test",))
        client = Client(h)
        await client.pump()
        sid = client.get("/")
        await client.pump()
        h.targets.respond(ok(b"hi"))
        await client.pump()
        assert any(isinstance(e, h2.events.StreamEnded) and e.stream_id == sid for e in client.events)
        await h.advance(h.listener.idle_timeout + 1)
        await client.pump()
        assert any(isinstance(e, h2.events.ConnectionTerminated) and e.error_code == 0 for e in client.events)
        assert client.transport.closed

    run("httptools", scenario)


def test_client_reset_cancels_the_exchange_as_499() -> None:
    async def scenario(h: Harness) -> None:
        h.deploy("app", "app:3000", hosts=("app.test",))
        client = Client(h)
        await client.pump()
        sid = client.get("/")
        await client.pump()
        upstream, _ = h.targets.last()
        client.h2.reset_stream(sid)
        await client.pump()
        assert upstream.closed
        [line] = h.log.requests()
        assert line["status"] == 499 and line["proto"] == "HTTP/2.0"
        await asyncio.sleep(0)

    run("httptools", scenario)


def test_a_held_request_without_body_goes_on_once_at_resume_even_when_buffered() -> None:
    async def scenario(h: Harness) -> None:
        service = h.deploy("app", "app:3000", hosts=("app.test",), buffer_requests=True)
        h.pause(service)
        client = Client(h)
        await client.pump()
        sid = client.get("/held")
        await client.pump()
        assert h.targets.connections == []  # held
        service.change_mode(ModeEvent.RESUME)  # releases the held requests
        await client.pump()
        request = h.targets.respond(ok(b"resumed"))
        assert request.startswith(b"GET /held HTTP/1.1\r\n") and request.count(b"GET") == 1
        await client.pump()
        assert any(isinstance(e, h2.events.StreamEnded) and e.stream_id == sid for e in client.events)

    run("httptools", scenario)


def test_a_finished_stream_and_its_exchange_are_freed_without_the_cyclic_gc() -> None:
    async def scenario(h: Harness) -> None:
        h.deploy("app", "app:3000", hosts=("app.test",))
        client = Client(h)
        await client.pump()
        gc.collect()
        gc.disable()
        gc.set_debug(gc.DEBUG_SAVEALL)  # what the collector finds is kept in gc.garbage, not freed
        try:
            for path in ("/a", "/b", "/c"):
                sid = client.get(path)
                await client.pump()
                h.targets.respond(ok(b"hi"))
                await client.pump()
                assert any(isinstance(e, h2.events.StreamEnded) and e.stream_id == sid for e in client.events)
            assert len(h.recorder.records) == 3
            h.recorder.records.clear()  # (the test's observer keeps the finished exchanges)
            gc.collect()
            cyclic = [o for o in gc.garbage if isinstance(o, Exchange | H2Stream)]
        finally:
            gc.set_debug(0)
            gc.garbage.clear()
            gc.enable()
        assert cyclic == []  # reference counting freed them: no collector pass per few hundred requests

    run("httptools", scenario)


def test_a_request_reset_in_the_same_read_that_is_answered_at_once_leaves_the_connection_serving() -> None:
    """HEADERS and its RST_STREAM in one read: the exchange answers (404, no route) before the
    stream hears of the reset, which h2 already processed; the answer is dropped, not raised."""

    async def scenario(h: Harness) -> None:
        h.deploy("app", "app:3000", hosts=("app.test",))
        client = Client(h)
        await client.pump()
        fields = [
            (b":method", b"GET"),
            (b":scheme", b"https"),
            (b":authority", b"nowhere.test"),
            (b":path", b"/"),
        ]
        for _ in range(3):  # h2 forgets a closed stream after a while: later ones are "too low" ids
            sid = int(client.h2.get_next_available_stream_id())
            client.h2.send_headers(sid, fields, end_stream=True)
            client.h2.reset_stream(sid)
        await client.pump()
        assert not client.transport.closed
        sid = client.get("/after")
        await client.pump()
        h.targets.respond(ok(b"hi"))
        await client.pump()
        assert status(client, sid) == 200

    run("httptools", scenario)


def test_an_answered_stream_the_client_neither_reads_nor_finishes_is_reset_at_the_body_timeout() -> None:
    """The response is complete but waits for the client's window, and the request body stalls: at
    --request-body-timeout the stream is reset (CANCEL) and forgotten, so the idle timeout ends
    the connection; before, the stream stayed open forever with nothing left to time it out."""

    async def scenario(h: Harness) -> None:
        h.deploy("app", "app:3000", hosts=("app.test",))
        client = Client(h)
        await client.pump()
        sid = post(client, "/upload", length=10)
        client.h2.send_data(sid, b"abc")
        await client.pump()
        h.targets.respond(ok(b"x" * 70_000))  # more than the client's 65,535-byte stream window
        await client.pump()
        assert client.received(sid) == 65_535 and sid in client.conn.streams
        await h.advance(h.listener.request_body_timeout + 1)
        await client.pump()
        assert any(
            isinstance(e, h2.events.StreamReset) and e.stream_id == sid and e.error_code == CANCEL
            for e in client.events
        )
        assert client.conn.streams == {} and not client.conn.session.queued(sid)
        await h.advance(h.listener.idle_timeout + 1)
        await client.pump()
        assert client.transport.closed

    run("httptools", scenario)


def test_a_stream_timing_out_after_its_connection_ended_does_not_break_the_sweep() -> None:
    """The client's GOAWAY ends the connection while a stream waits for its target; until the
    transport reports the loss, the sweep may time that stream out (504). Its answer is dropped:
    before, h2 raised (no frame may follow the end), out of the sweep, which every other exchange
    of the worker relies on for its timeouts."""

    async def scenario(h: Harness) -> None:
        h.deploy("app", "app:3000", hosts=("app.test",), response_timeout=5.0)
        client = Client(h)
        await client.pump()
        client.get("/slow")
        await client.pump()
        client.h2.close_connection()
        await client.pump()
        assert client.transport.closed and client.conn.streams  # (the loss not yet reported)
        other, other_transport = h.client()
        other.data_received(b"GET /other HTTP/1.1\r\nHost: app.test\r\n\r\n")
        await settle()
        await h.advance(6)  # both exchanges are past --target-timeout
        assert other_transport.take().startswith(b"HTTP/1.1 504 ")  # the sweep went on to it
        client.transport.lose()
        await settle()
        assert client.conn.streams == {} and len(h.recorder.records) == 2

    run("httptools", scenario)


def test_a_stream_whose_window_stays_closed_is_reset_at_the_write_timeout_while_its_sibling_completes() -> (
    None
):
    async def scenario(h: Harness) -> None:
        streams = await two_streams_past_their_windows(h, "/stalled", "/sibling")
        client, (stalled, stalled_up, _), sibling_streamed = streams
        sibling, sibling_up, _ = sibling_streamed
        sent = PIECE
        timeout = h.listener.write_stalls.timeout
        for _ in range(int(timeout) - 1):  # the sibling's reader keeps up, a second at a time
            sent = await read_on(client, sibling_streamed, sent)
            await h.advance(1)
        assert any(isinstance(e, h2.events.StreamEnded) and e.stream_id == sibling for e in client.events)
        assert not any(isinstance(e, h2.events.StreamReset) for e in client.events)
        assert client.received(stalled) == 65_535 and not stalled_up.reading  # its window never opened
        await h.advance(2)
        await client.pump()
        assert any(
            isinstance(e, h2.events.StreamReset) and e.stream_id == stalled and e.error_code == CANCEL
            for e in client.events
        )
        assert stalled_up.closed and not sibling_up.closed  # only the finished one may go back to the pool
        assert sorted(line["status"] for line in h.log.requests()) == [200, 499]
        assert "Response write timed out" in h.log.messages()
        assert client.conn.streams == {} and not client.transport.closed  # the connection goes on
        assert len(h.listener.write_stalls) == 0

    run("httptools", scenario)


def test_an_http2_connection_whose_transport_stays_paused_is_closed_at_the_write_timeout() -> None:
    async def scenario(h: Harness) -> None:
        h.deploy("app", "app:3000", hosts=("app.test",))
        client = Client(h)
        await client.pump()
        client.get("/")
        await client.pump()
        upstream, target = h.targets.last()
        target.data_received(b"HTTP/1.1 200 OK\r\nContent-Length: 100000\r\n\r\n" + b"x" * 1000)
        await client.pump()
        client.transport.buffered = 300_000  # the client reads nothing: the TLS transport fills up
        client.conn.pause_writing()
        assert not upstream.reading
        timeout = h.listener.write_stalls.timeout
        await h.advance(timeout - 1)
        assert not client.transport.closed
        await h.advance(2)
        assert client.transport.aborted  # no GOAWAY: it would only queue behind the unread bytes
        client.transport.lose()
        assert upstream.closed
        assert [line["status"] for line in h.log.requests()] == [499]
        assert len(h.listener.write_stalls) == 0

    run("httptools", scenario)


def test_a_complete_response_stuck_behind_a_closed_window_is_reset_while_a_sibling_streams_on() -> None:
    """Its exchange is over (logged 200, the target connection pooled) and the stream forgotten, but
    its last bytes wait for a window the client never opens: the write timeout resets it too."""

    async def scenario(h: Harness) -> None:
        h.deploy("app", "app:3000", hosts=("app.test",))
        client = Client(h)
        await client.pump()
        stuck, sibling = client.get("/stuck"), client.get("/events")
        await client.pump()
        (stuck_up, stuck_conn), (_sibling_up, sibling_conn) = h.targets.connections
        stuck_conn.data_received(ok(b"x" * 70_000))  # more than the client's 65,535-byte stream window
        sibling_conn.data_received(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n")
        await client.pump()
        assert [line["status"] for line in h.log.requests()] == [200] and not stuck_up.closed
        assert list(client.conn.streams) == [sibling] and client.conn.session.queued(stuck)
        await h.advance(h.listener.write_stalls.timeout + 1)
        await client.pump()
        assert any(
            isinstance(e, h2.events.StreamReset) and e.stream_id == stuck and e.error_code == CANCEL
            for e in client.events
        )
        assert not client.conn.session.queued(stuck) and len(h.listener.write_stalls) == 0
        sibling_conn.data_received(b"0\r\n\r\n")
        await client.pump()
        assert any(isinstance(e, h2.events.StreamEnded) and e.stream_id == sibling for e in client.events)
        assert not client.transport.closed

    run("httptools", scenario)
