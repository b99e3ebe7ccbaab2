"""A response body the target cuts short never reaches the client as complete (in-process, both parsers).

Only a clean close (FIN) ends a close-delimited body; a reset, or a Content-Length or chunked body
that stops early either way, aborts the client connection with no terminating chunk.
"""

from __future__ import annotations

import pytest

from tests.proxy.harness import Harness, MockTransport, get, run, settle, status_of

CLOSE_DELIMITED = b"HTTP/1.1 200 OK\r\nConnection: close\r\n\r\npart one "
CUT_LENGTH = b"HTTP/1.1 200 OK\r\nContent-Length: 100\r\n\r\npart one "
CUT_CHUNKED = b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n9\r\npart one \r\n"


async def stream_then_lose(h: Harness, response: bytes, exc: Exception | None) -> MockTransport:
    h.deploy("app")
    conn, client = h.client()
    conn.data_received(get())
    await settle()
    upstream_transport, _ = h.targets.last()
    h.targets.respond(response)
    upstream_transport.lose(exc)
    await settle()
    return client


def test_close_delimited_body_ended_by_a_clean_close_is_complete(parser: str) -> None:
    async def scenario(h: Harness) -> None:
        client = await stream_then_lose(h, CLOSE_DELIMITED, None)
        response = client.take()
        assert status_of(response) == 200 and response.endswith(b"9\r\npart one \r\n0\r\n\r\n")
        assert not client.aborted
        assert [r.status for r in h.recorder.records] == [200]

    run(parser, scenario)


def test_close_delimited_body_ended_by_a_reset_aborts_the_client_without_the_last_chunk(
    parser: str,
) -> None:
    async def scenario(h: Harness) -> None:
        client = await stream_then_lose(h, CLOSE_DELIMITED, ConnectionResetError(104, "reset"))
        response = client.take()
        assert status_of(response) == 200 and b"part one " in response
        assert not response.endswith(b"0\r\n\r\n")
        assert client.aborted

    run(parser, scenario)


@pytest.mark.parametrize("response", [CUT_LENGTH, CUT_CHUNKED], ids=["content-length", "chunked"])
@pytest.mark.parametrize("reset", [False, True], ids=["fin", "reset"])
def test_a_length_or_chunked_body_cut_short_is_never_completed(
    parser: str, response: bytes, reset: bool
) -> None:
    async def scenario(h: Harness) -> None:
        client = await stream_then_lose(h, response, ConnectionResetError() if reset else None)
        sent = client.take()
        assert status_of(sent) == 200 and b"part one " in sent
        assert not sent.endswith(b"0\r\n\r\n")
        assert client.aborted

    run(parser, scenario)


@pytest.mark.parametrize(
    ("response", "reset"),
    [(CUT_LENGTH, False), (CUT_LENGTH, True), (CLOSE_DELIMITED, True)],
    ids=["content-length-fin", "content-length-reset", "close-delimited-reset"],
)
def test_a_buffered_response_cut_short_is_502(parser: str, response: bytes, reset: bool) -> None:
    async def scenario(h: Harness) -> None:
        h.deploy("app", buffer_responses=True)
        conn, client = h.client()
        conn.data_received(get())
        await settle()
        upstream_transport, _ = h.targets.last()
        h.targets.respond(response)
        upstream_transport.lose(ConnectionResetError() if reset else None)
        await settle()
        assert status_of(client.take()) == 502

    run(parser, scenario)
