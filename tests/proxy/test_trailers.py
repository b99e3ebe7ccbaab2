"""Trailer fields through the proxy, as Go's ReverseProxy passes them: in-process, both parsers.

Response trailers follow the last chunk to an HTTP/1.1 client (or end an HTTP/2 stream as a last
HEADERS frame); request trailers follow the last chunk to the target. The ``Trailer`` field is
re-announced; a body that goes out with a Content-Length (HTTP/1.0 client, ``--buffer-*``) drops
them. Fields that must never be trailers are removed.
"""

from __future__ import annotations

import h2.config
import h2.errors
import h2.events

from proxy.lifecycle import ModeEvent
from tests.proxy.harness import Harness, get, ok, run, settle, status_of
from tests.proxy.test_h2_connection import Client, post, status

CHUNKED_RESPONSE_HEAD = b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\nTrailer: X-Checksum\r\n\r\n"
CHUNKED_POST = b"POST /up HTTP/1.1\r\nHost: app.test\r\nTransfer-Encoding: chunked\r\nTrailer: X-Sum\r\n\r\n"
# each of these must never be forwarded as a trailer field
FORBIDDEN = (
    b"Host: evil.test\r\nContent-Type: text/evil\r\nContent-Encoding: gzip\r\nAuthorization: x\r\n"
    b"Cache-Control: no-store\r\nIf-Match: *\r\nTE: trailers\r\nTrailer: X-More\r\nUpgrade: h2c\r\n"
    b"Keep-Alive: 5\r\nSet-Cookie: a=b\r\n"
)


# ------------------------------------------------------------------ responses, HTTP/1.1 client
def test_chunked_response_trailers_follow_the_last_chunk_to_an_http11_client(parser: str) -> None:
    async def scenario(h: Harness) -> None:
        h.deploy("app")
        conn, client = h.client()
        conn.data_received(get())
        await settle()
        h.targets.respond(
            CHUNKED_RESPONSE_HEAD + b"3\r\nabc\r\n0\r\nX-Checksum: 123\r\nServer-Timing: db;dur=5\r\n\r\n"
        )
        response = client.take()
        head, _, body = response.partition(b"\r\n\r\n")
        assert b"\r\nTrailer: X-Checksum" in head and b"Transfer-Encoding: chunked" in head
        assert body == b"3\r\nabc\r\n0\r\nX-Checksum: 123\r\nServer-Timing: db;dur=5\r\n\r\n"
        assert not client.closed
        conn.data_received(get("/next"))  # the connection goes on: the trailers ended the response
        await settle()
        h.targets.respond(ok(b"next"))
        assert client.take().endswith(b"\r\n\r\nnext")

    run(parser, scenario)


def test_response_trailers_are_dropped_for_an_http10_client(parser: str) -> None:
    async def scenario(h: Harness) -> None:
        h.deploy("app")
        conn, client = h.client()
        conn.data_received(b"GET / HTTP/1.0\r\nHost: app.test\r\n\r\n")
        await settle()
        h.targets.respond(CHUNKED_RESPONSE_HEAD + b"3\r\nabc\r\n0\r\nX-Checksum: 123\r\n\r\n")
        response = client.take()
        assert b"chunked" not in response and response.endswith(b"\r\n\r\nabc")
        assert b"X-Checksum: 123" not in response
        assert client.closed  # close-delimited

    run(parser, scenario)


def test_buffered_response_drops_trailers_and_their_announcement(parser: str) -> None:
    async def scenario(h: Harness) -> None:
        h.deploy("app", buffer_responses=True)
        conn, client = h.client()
        conn.data_received(get())
        await settle()
        h.targets.respond(CHUNKED_RESPONSE_HEAD + b"3\r\nabc\r\n0\r\nX-Checksum: 123\r\n\r\n")
        response = client.take()
        assert b"Content-Length: 3\r\n" in response and response.endswith(b"\r\n\r\nabc")
        assert b"Trailer" not in response and b"X-Checksum" not in response
        assert not client.closed

    run(parser, scenario)


def test_response_trailer_fields_that_must_not_be_trailers_are_removed(parser: str) -> None:
    async def scenario(h: Harness) -> None:
        h.deploy("app")
        conn, client = h.client()
        conn.data_received(get())
        await settle()
        h.targets.respond(
            b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\nTrailer: X-Checksum, Content-Type , If-Match\r\n"
            b"Trailer: Host\r\n\r\n1\r\na\r\n0\r\n" + FORBIDDEN + b"X-Checksum: 1\r\n\r\n"
        )
        response = client.take()
        head, _, body = response.partition(b"\r\n\r\n")
        assert b"\r\nTrailer: X-Checksum\r\n" in head + b"\r\n"  # re-announced without the others
        assert head.count(b"Trailer") == 1
        assert body == b"1\r\na\r\n0\r\nSet-Cookie: a=b\r\nX-Checksum: 1\r\n\r\n"

    run(parser, scenario)


def test_response_whose_trailer_fields_are_all_removed_ends_with_a_plain_last_chunk(parser: str) -> None:
    async def scenario(h: Harness) -> None:
        h.deploy("app")
        conn, client = h.client()
        conn.data_received(get())
        await settle()
        h.targets.respond(
            b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n1\r\na\r\n0\r\nHost: x\r\n\r\n"
        )
        assert client.take().endswith(b"\r\n\r\n1\r\na\r\n0\r\n\r\n")

    run(parser, scenario)


# ------------------------------------------------------------------ requests, HTTP/1.1 client
def test_chunked_request_trailers_follow_the_last_chunk_to_the_target(parser: str) -> None:
    async def scenario(h: Harness) -> None:
        h.deploy("app")
        conn, client = h.client()
        conn.data_received(CHUNKED_POST + b"2\r\nab\r\n")
        await settle()
        conn.data_received(b"0\r\nX-Sum: 42\r\n" + FORBIDDEN + b"\r\n")
        request = h.targets.respond(ok())
        head, _, body = request.partition(b"\r\n\r\n")
        assert b"\r\nTrailer: X-Sum\r\n" in head and head.endswith(b"\r\nTransfer-Encoding: chunked")
        assert body == b"2\r\nab\r\n0\r\nX-Sum: 42\r\nSet-Cookie: a=b\r\n\r\n"
        assert status_of(client.take()) == 200
        conn.data_received(get("/next"))  # the upstream connection is reused: the request ended cleanly
        await settle()
        assert h.targets.respond(ok()).startswith(b"GET /next ")
        assert len(h.targets.connections) == 1

    run(parser, scenario)


def test_buffered_request_drops_trailers_and_their_announcement(parser: str) -> None:
    async def scenario(h: Harness) -> None:
        h.deploy("app", buffer_requests=True)
        conn, client = h.client()
        conn.data_received(CHUNKED_POST + b"2\r\nab\r\n0\r\nX-Sum: 42\r\n\r\n")
        await settle()
        request = h.targets.respond(ok())
        assert b"Content-Length: 2\r\n\r\nab" in request and request.endswith(b"\r\n\r\nab")
        assert b"Trailer" not in request and b"X-Sum" not in request
        assert status_of(client.take()) == 200

    run(parser, scenario)


# ------------------------------------------------------------------ HTTP/2 clients
def test_response_trailers_reach_an_http2_client_as_a_last_headers_frame_with_end_stream() -> None:
    async def scenario(h: Harness) -> None:
        h.deploy("app", "app:3000", hosts=("app.test",))
        client = Client(h)
        await client.pump()
        sid = client.get("/")
        await client.pump()
        h.targets.respond(
            CHUNKED_RESPONSE_HEAD + b"3\r\nabc\r\n0\r\nX-Checksum: 123\r\n" + FORBIDDEN + b"\r\n"
        )
        await client.pump()
        [response] = [e for e in client.events if isinstance(e, h2.events.ResponseReceived)]
        assert (b"trailer", b"X-Checksum") in (response.headers or [])
        [trailers] = [e for e in client.events if isinstance(e, h2.events.TrailersReceived)]
        assert trailers.stream_id == sid and trailers.stream_ended is not None
        assert list(trailers.headers or []) == [(b"x-checksum", b"123"), (b"set-cookie", b"a=b")]
        assert client.received(sid) == 3
        assert h.log.requests()[0]["status"] == 200

    run("httptools", scenario)


def test_response_trailers_wait_behind_the_data_the_client_window_holds_back() -> None:
    async def scenario(h: Harness) -> None:
        h.deploy("app", "app:3000", hosts=("app.test",))
        client = Client(h)
        await client.pump()
        sid = client.get("/")
        await client.pump()
        big = 100_000  # more than the client's 65,535-byte stream window
        h.targets.respond(
            CHUNKED_RESPONSE_HEAD + b"%x\r\n%b\r\n0\r\nX-Checksum: 9\r\n\r\n" % (big, b"z" * big)
        )
        await client.pump()
        assert not any(isinstance(e, h2.events.TrailersReceived) for e in client.events)
        for _ in range(5):
            client.acknowledge(sid)
            await client.pump()
        kinds = [type(e) for e in client.events if getattr(e, "stream_id", None) == sid]
        assert kinds[-2:] == [h2.events.TrailersReceived, h2.events.StreamEnded]
        received = sum(  # (acknowledge() forgets the DATA events it acknowledged)
            e.flow_controlled_length or 0
            for e in client.events
            if isinstance(e, h2.events.DataReceived) and e.stream_id == sid
        )
        assert received <= big

    run("httptools", scenario)


def test_http2_request_trailers_follow_the_last_chunk_to_the_target() -> None:
    async def scenario(h: Harness) -> None:
        h.deploy("app", "app:3000", hosts=("app.test",))
        client = Client(h)
        await client.pump()
        sid = post(client, "/up", length=None)
        client.h2.send_data(sid, b"abc")
        client.h2.send_headers(sid, [(b"x-sum", b"6"), (b"host", b"evil.test")], end_stream=True)
        await client.pump()
        request = h.targets.respond(ok())
        head, _, body = request.partition(b"\r\n\r\n")
        assert b"\r\nTransfer-Encoding: chunked" in head and b"evil" not in head
        assert body == b"3\r\nabc\r\n0\r\nx-sum: 6\r\n\r\n"
        await client.pump()
        assert status(client, sid) == 200

    run("httptools", scenario)


def test_http2_request_trailers_are_dropped_when_the_body_has_a_content_length() -> None:
    async def scenario(h: Harness) -> None:
        h.deploy("app", "app:3000", hosts=("app.test",))
        client = Client(h)
        await client.pump()
        sid = post(client, "/up", length=3)
        client.h2.send_data(sid, b"abc")
        client.h2.send_headers(sid, [(b"x-sum", b"6")], end_stream=True)
        await client.pump()
        request = h.targets.respond(ok())
        assert request.endswith(b"\r\n\r\nabc") and b"\r\ncontent-length: 3\r\n" in request.lower()
        assert b"x-sum" not in request
        await client.pump()
        assert status(client, sid) == 200

    run("httptools", scenario)


def test_trailers_of_a_held_http2_request_go_on_at_resume() -> None:
    async def scenario(h: Harness) -> None:
        service = h.deploy("app", "app:3000", hosts=("app.test",))
        h.pause(service)
        client = Client(h)
        await client.pump()
        sid = post(client, "/held", length=None)
        client.h2.send_data(sid, b"ab")
        client.h2.send_headers(sid, [(b"x-sum", b"3")], end_stream=True)
        await client.pump()
        assert h.targets.connections == []
        service.change_mode(ModeEvent.RESUME)
        await client.pump()
        request = h.targets.respond(ok())
        assert request.endswith(b"\r\n\r\n2\r\nab\r\n0\r\nx-sum: 3\r\n\r\n")
        await client.pump()
        assert status(client, sid) == 200

    run("httptools", scenario)


def test_malformed_http2_request_trailers_reset_the_stream() -> None:
    async def scenario(h: Harness) -> None:
        h.deploy("app", "app:3000", hosts=("app.test",))
        client = Client(h)
        client.h2.config = h2.config.H2Configuration(
            client_side=True,
            header_encoding=None,
            validate_outbound_headers=False,
            normalize_outbound_headers=False,
        )
        await client.pump()
        bad = ([(b":path", b"/x")], [(b"X-Upper", b"1")], [(b"x-cr", b"a\rb")], [(b"x-nul", b"a\x00b")])
        sids = []
        for trailers in bad:
            sid = post(client, "/up", length=None)
            client.h2.send_data(sid, b"abc")
            client.h2.send_headers(sid, trailers, end_stream=True)
            sids.append(sid)
        await client.pump()
        resets = {e.stream_id: e.error_code for e in client.events if isinstance(e, h2.events.StreamReset)}
        assert resets == dict.fromkeys(sids, h2.errors.ErrorCodes.PROTOCOL_ERROR)
        for transport, _ in h.targets.connections:
            assert transport.closed  # the cancelled requests' upstreams
            assert b"a\rb" not in b"".join(transport.written) and b"\x00" not in b"".join(transport.written)
        assert [line["status"] for line in h.log.requests()] == [499] * len(bad)
        ok_sid = client.get("/after")  # the connection and its other streams go on
        await client.pump()
        h.targets.respond(ok(b"fine"))
        await client.pump()
        assert status(client, ok_sid) == 200

    run("httptools", scenario)
