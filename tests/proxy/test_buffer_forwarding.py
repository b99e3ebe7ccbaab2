"""Buffered bodies are forwarded from their spill file at the reader's pace, in bounded slices.

In-process, on both parsers: the mock transports act as peers that read nothing until ``drain``,
so the proxy hears pause_writing past the high-water mark, as from a real socket.
"""

from __future__ import annotations

from proxy import defaults
from proxy.http.buffering import READ_CHUNK
from tests.proxy.harness import Harness, MockTransport, get, ok, run, settle, status_of

MEMORY = 64 * 1024
BODY = bytes(range(256)) * (4 * 1024 * 1024 // 256)  # 4 MiB: spilled, 16x the high-water mark


def check_bounded_writes(transport: MockTransport, first: int) -> bytes:
    """Drain the peer until nothing more comes; every write is one slice, and none comes while
    paused (at most one slice past the high-water mark per drain)."""
    received = b""
    for _ in range(10_000):
        pieces = list(transport.written)
        transport.written.clear()
        assert all(len(p) <= max(READ_CHUNK, MEMORY) for p in pieces[first:])
        first = 0
        chunk = b"".join(pieces)
        assert len(chunk) <= defaults.WRITE_HIGH_WATER + READ_CHUNK + 1024
        received += chunk
        if not transport.write_paused:
            return received
        transport.drain()
    raise AssertionError("the body never finished")


def test_a_spilled_response_goes_to_a_slow_reader_in_slices_that_stop_while_it_is_paused(
    parser: str,
) -> None:
    async def scenario(h: Harness) -> None:
        h.deploy("app", buffer_responses=True, max_memory_buffer_size=MEMORY)
        conn, client = h.client()
        client.backpressure = True
        conn.data_received(get())
        await settle()
        h.targets.respond(b"HTTP/1.1 200 OK\r\nContent-Length: %d\r\n\r\n" % len(BODY))
        _, upstream = h.targets.last()
        for i in range(0, len(BODY), 16 * 1024):
            upstream.data_received(BODY[i : i + 16 * 1024])
        assert client.write_paused  # the whole body is spilled; the client took only part of it
        assert 0 < sum(map(len, client.written)) < defaults.WRITE_HIGH_WATER + 2 * READ_CHUNK
        assert h.recorder.records == []  # not over while the body is still going out
        response = check_bounded_writes(client, first=1)
        head, body = response.split(b"\r\n\r\n", 1)
        assert status_of(response) == 200 and b"Content-Length: %d" % len(BODY) in head
        assert body == BODY
        assert [(r.status, r.resp_bytes) for r in h.recorder.records] == [(200, len(BODY))]
        assert not client.closed

    run(parser, scenario)


def test_a_spilled_upload_goes_to_a_slow_target_in_slices_that_stop_while_it_is_paused(
    parser: str,
) -> None:
    async def scenario(h: Harness) -> None:
        h.deploy("app", buffer_requests=True, max_memory_buffer_size=MEMORY)
        h.targets.backpressure = True
        conn, client = h.client()
        conn.data_received(b"POST /up HTTP/1.1\r\nHost: app.test\r\nContent-Length: %d\r\n\r\n" % len(BODY))
        for i in range(0, len(BODY), 16 * 1024):
            conn.data_received(BODY[i : i + 16 * 1024])
        await settle()
        transport, _ = h.targets.last()
        assert transport.write_paused
        assert 0 < sum(map(len, transport.written)) < defaults.WRITE_HIGH_WATER + 2 * READ_CHUNK
        request = check_bounded_writes(transport, first=1)
        head, body = request.split(b"\r\n\r\n", 1)
        assert head.startswith(b"POST /up HTTP/1.1\r\n") and b"Content-Length: %d" % len(BODY) in head
        assert body == BODY
        h.targets.respond(ok())
        assert status_of(client.take()) == 200 and not client.closed

    run(parser, scenario)
