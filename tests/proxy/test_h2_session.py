"""HTTP/2 framing in memory: a real h2 client talks to the session, no sockets."""

from __future__ import annotations

import h2.config
import h2.connection
import h2.errors
import h2.events
import h2.settings
import pytest
from hyperframe.frame import Frame, GoAwayFrame, HeadersFrame, RstStreamFrame

from proxy.http.h2_session import (
    CONTROL_FRAME_BURST,
    INITIAL_WINDOW_SIZE,
    RAPID_RESET_FLOOR,
    ConnectionEnded,
    H2Event,
    H2Session,
    StreamData,
    StreamEnd,
    StreamHead,
    StreamReset,
    StreamWritable,
    request_head,
    response_fields,
)


class Pair:
    """An h2 client and our session, with the bytes moved between them by hand."""

    def __init__(self, *, validate: bool = True) -> None:
        self.now = 0.0
        self.server = H2Session(clock=lambda: self.now)
        self.server.initiate()
        config = h2.config.H2Configuration(
            client_side=True,
            header_encoding=None,
            validate_outbound_headers=validate,
            normalize_outbound_headers=validate,
        )
        self.client = h2.connection.H2Connection(config)
        self.client.initiate_connection()
        self.client_events: list[h2.events.Event] = []
        self.exchange()

    def exchange(self) -> list[H2Event]:
        """Move bytes both ways until quiet; return the session's events."""
        events: list[H2Event] = []
        for _ in range(20):
            to_server = self.client.data_to_send()
            if to_server:
                events += self.server.receive_data(to_server)
            to_client = self.server.data_to_send()
            if to_client:
                self.client_events += self.client.receive_data(to_client)
            if not to_server and not to_client:
                break
        return events

    def request(
        self,
        headers: list[tuple[bytes, bytes]] | None = None,
        *,
        end: bool = True,
        stream_id: int | None = None,
    ) -> int:
        sid = stream_id or self.client.get_next_available_stream_id()
        base = [
            (b":method", b"GET"),
            (b":path", b"/x?y=1"),
            (b":scheme", b"https"),
            (b":authority", b"app.test"),
        ]
        self.client.send_headers(sid, base + (headers or []), end_stream=end)
        return sid


def test_a_request_becomes_an_http1_head_with_host_from_authority() -> None:
    pair = Pair()
    sid = pair.request([(b"user-agent", b"t"), (b"cookie", b"a=1"), (b"cookie", b"b=2")])
    events = pair.exchange()
    head = events[0]
    assert isinstance(head, StreamHead)
    assert (head.method, head.target, head.scheme, head.host) == (b"GET", b"/x?y=1", b"https", b"app.test")
    assert head.headers == [(b"host", b"app.test"), (b"user-agent", b"t"), (b"cookie", b"a=1; b=2")]
    assert head.end_stream and isinstance(events[1], StreamEnd) and events[1].stream_id == sid


def test_a_response_goes_out_with_connection_specific_fields_dropped() -> None:
    pair = Pair()
    sid = pair.request()
    pair.exchange()
    pair.server.send_head(
        sid, 200, [(b"Content-Type", b"text/plain"), (b"Connection", b"keep-alive")], end=False
    )
    assert pair.server.send_body(sid, b"hello", end=True)
    pair.exchange()
    response = next(e for e in pair.client_events if isinstance(e, h2.events.ResponseReceived))
    assert response.headers == [(b":status", b"200"), (b"content-type", b"text/plain")]
    data = b"".join(e.data for e in pair.client_events if isinstance(e, h2.events.DataReceived) and e.data)
    assert data == b"hello"
    assert any(isinstance(e, h2.events.StreamEnded) for e in pair.client_events)


def test_request_body_is_acknowledged_only_when_consumed() -> None:
    pair = Pair()
    sid = pair.request(end=False)
    pair.exchange()
    window_before = pair.client.local_flow_control_window(sid)
    pair.client.send_data(sid, b"x" * 1000)
    events = pair.exchange()
    data = [e for e in events if isinstance(e, StreamData)]
    assert data and data[0].data == b"x" * 1000
    assert pair.client.local_flow_control_window(sid) == window_before - 1000
    pair.server.consumed(sid, INITIAL_WINDOW_SIZE)  # well past the auto-update threshold
    pair.exchange()
    assert pair.client.local_flow_control_window(sid) > window_before - 1000


def test_a_slow_reader_stalls_only_its_stream_until_its_window_opens() -> None:
    pair = Pair()
    slow, fast = pair.request(), pair.request()
    pair.exchange()
    for sid in (slow, fast):
        pair.server.send_head(sid, 200, [], end=False)
    assert not pair.server.send_body(slow, b"s" * 100_000)  # beyond the client's 65,535 default window
    pair.exchange()
    slow_bytes = sum(
        len(e.data or b"")
        for e in pair.client_events
        if isinstance(e, h2.events.DataReceived) and e.stream_id == slow
    )
    assert slow_bytes == 65_535
    # the connection window is used up too; once the client acknowledges, both streams move on
    for e in list(pair.client_events):
        if isinstance(e, h2.events.DataReceived) and e.stream_id == slow:
            pair.client.acknowledge_received_data(e.flow_controlled_length or 0, slow)
    pair.client.increment_flow_control_window(200_000, stream_id=slow)
    events = pair.exchange()
    assert StreamWritable(slow) in events
    assert pair.server.send_body(fast, b"f" * 10, end=True)


@pytest.mark.parametrize(
    "bad",
    [
        [(b"Upper", b"x")],
        [(b"connection", b"close")],
        [(b"x", b"a\r\nb")],
        [(b"te", b"gzip")],
    ],
)
def test_smuggling_shapes_are_rejected_not_forwarded(bad: list[tuple[bytes, bytes]]) -> None:
    pair = Pair(validate=False)
    pair.request(bad)
    events = pair.exchange()
    assert not any(isinstance(e, StreamHead) for e in events)
    assert any(isinstance(e, ConnectionEnded) for e in events) or any(
        isinstance(e, h2.events.StreamReset) for e in pair.client_events
    )


def test_content_length_that_disagrees_with_the_data_fails_the_stream() -> None:
    pair = Pair()
    sid = pair.request([(b"content-length", b"10")], end=False)
    pair.exchange()
    pair.client.send_data(sid, b"x" * 3, end_stream=True)
    events = pair.exchange()
    assert not any(isinstance(e, StreamEnd) for e in events)
    assert any(isinstance(e, ConnectionEnded | StreamReset) for e in events) or any(
        isinstance(e, h2.events.StreamReset) for e in pair.client_events
    )


def test_client_reset_is_reported_for_the_exchange_to_cancel() -> None:
    pair = Pair()
    sid = pair.request(end=False)
    pair.exchange()
    pair.client.reset_stream(sid, h2.errors.ErrorCodes.CANCEL)
    events = pair.exchange()
    assert StreamReset(sid, int(h2.errors.ErrorCodes.CANCEL)) in events


def test_rapid_reset_ends_the_connection() -> None:
    pair = Pair()
    ended: list[H2Event] = []
    for _ in range(RAPID_RESET_FLOOR + 5):
        sid = pair.request(end=False)
        pair.client.reset_stream(sid, h2.errors.ErrorCodes.CANCEL)
        ended += [e for e in pair.exchange() if isinstance(e, ConnectionEnded)]
        if ended:
            break
    assert ended and "rapid reset" in ended[0].reason  # type: ignore[union-attr]
    goaway = [e for e in pair.client_events if isinstance(e, h2.events.ConnectionTerminated)]
    assert goaway and goaway[0].error_code == h2.errors.ErrorCodes.ENHANCE_YOUR_CALM


def test_ping_flood_ends_the_connection_but_a_paced_ping_does_not() -> None:
    pair = Pair()
    for i in range(CONTROL_FRAME_BURST // 2):
        pair.client.ping(b"%08d" % i)
        pair.now += 1.0
        assert not any(isinstance(e, ConnectionEnded) for e in pair.exchange())
    flood = []
    for i in range(CONTROL_FRAME_BURST * 2):
        pair.client.ping(b"%08d" % i)
    flood = [e for e in pair.exchange() if isinstance(e, ConnectionEnded)]
    assert flood and flood[0].error_code == h2.errors.ErrorCodes.ENHANCE_YOUR_CALM


def raw_headers(pair: Pair, stream_id: int) -> bytes:
    """A HEADERS frame the h2 client would refuse to send (it honours our stream limit)."""
    base = [(b":method", b"GET"), (b":path", b"/"), (b":scheme", b"https"), (b":authority", b"app.test")]
    frame = HeadersFrame(stream_id, data=pair.client.encoder.encode(base), flags=["END_HEADERS"])
    return frame.serialize()


def test_a_client_that_opens_more_streams_than_advertised_loses_the_connection() -> None:
    pair = Pair()
    events = pair.server.receive_data(b"".join(raw_headers(pair, 1 + 2 * i) for i in range(101)))
    assert events == [ConnectionEnded(events[0].reason, int(h2.errors.ErrorCodes.PROTOCOL_ERROR))]  # type: ignore[union-attr]
    assert "Max outbound streams" in events[0].reason or "streams" in events[0].reason  # type: ignore[union-attr]
    assert pair.server.receive_data(raw_headers(pair, 301)) == []  # ended: nothing more is processed


def test_goaway_lets_streams_in_flight_finish_and_refuses_new_ones() -> None:
    pair = Pair()
    sid = pair.request()
    pair.exchange()
    pair.server.goaway()
    pair.server.send_head(sid, 204, [], end=True)
    frames = frames_of(pair.server.data_to_send())
    assert (
        isinstance(frames[0], GoAwayFrame) and frames[0].last_stream_id == sid and frames[0].error_code == 0
    )
    assert isinstance(frames[1], HeadersFrame) and frames[1].stream_id == sid
    late = pair.server.receive_data(raw_headers(pair, sid + 2))
    assert not any(isinstance(e, StreamHead) for e in late)
    refused = frames_of(pair.server.data_to_send())
    assert any(
        isinstance(f, RstStreamFrame) and f.error_code == h2.errors.ErrorCodes.REFUSED_STREAM for f in refused
    )


def frames_of(data: bytes) -> list[Frame]:
    frames = []
    while data:
        frame, length = Frame.parse_frame_header(memoryview(data[:9]))
        frame.parse_body(memoryview(data[9 : 9 + length]))
        frames.append(frame)
        data = data[9 + length :]
    return frames


REQUEST = [
    (b":method", b"GET"),
    (b":scheme", b"https"),
    (b":authority", b"app.example.com"),
    (b":path", b"/p?q=1"),
]


def test_request_head_translates_to_http1_terms() -> None:
    head = request_head(
        1, [*REQUEST, (b"cookie", b"a=1"), (b"accept", b"*/*"), (b"cookie", b"b=2")], end_stream=True
    )
    assert head is not None
    assert (head.method, head.target, head.host) == (b"GET", b"/p?q=1", b"app.example.com")
    assert head.headers == [(b"host", b"app.example.com"), (b"accept", b"*/*"), (b"cookie", b"a=1; b=2")]


@pytest.mark.parametrize(
    "extra",
    [
        [(b"X-Upper", b"1")],
        [(b"x-bad", b"a\r\nb: c")],
        [(b"x-bad", b"a\x00")],
        [(b"x-bad", b"a ")],
        [(b"bad name", b"1")],
        [(b"connection", b"close")],
        [(b"transfer-encoding", b"chunked")],
        [(b"upgrade", b"websocket")],
        [(b"te", b"gzip")],
        [(b"content-length", b"-1")],
        [(b"content-length", b"3"), (b"content-length", b"4")],
        [(b"x-ok", b"1"), (b":method", b"GET")],
        [(b":protocol", b"websocket")],
        [(b":path", b"/again")],
        [(b"host", b"other.example.com")],
    ],
)
def test_request_head_refuses_malformed_requests(extra: list[tuple[bytes, bytes]]) -> None:
    assert request_head(1, [*REQUEST, *extra], end_stream=True) is None


def test_request_head_needs_method_scheme_path_and_a_host() -> None:
    for missing in (b":method", b":scheme", b":path", b":authority"):
        fields = [f for f in REQUEST if f[0] != missing]
        assert request_head(1, fields, end_stream=True) is None
    connect = [(b":method", b"CONNECT"), (b":authority", b"app.example.com:443")]
    assert request_head(1, connect, end_stream=False) is None
    te = request_head(1, [*REQUEST, (b"te", b"trailers")], end_stream=True)
    assert te is not None and (b"te", b"trailers") in te.headers


def test_request_head_carries_the_body_length_and_expect_continue() -> None:
    fields = [*REQUEST, (b"content-length", b"12"), (b"expect", b"100-Continue")]
    head = request_head(1, fields, end_stream=False)
    assert head is not None and head.content_length == b"12" and head.expect_continue
    plain = request_head(1, REQUEST, end_stream=True)
    assert plain is not None and plain.content_length == b"" and not plain.expect_continue


def test_response_lines_become_lowercase_fields_without_connection_specific_ones() -> None:
    lines = [
        b"Content-Type: text/plain",
        b"Connection: keep-alive",
        b"Keep-Alive: timeout=5",
        b"Transfer-Encoding: chunked",
        b"Upgrade: h2c",
        b"TE: trailers",
        b"X-Request-ID:  abc ",
        b"Set-Cookie: a=1",
    ]
    assert response_fields(404, lines) == [
        (b":status", b"404"),
        (b"content-type", b"text/plain"),
        (b"x-request-id", b"abc"),
        (b"set-cookie", b"a=1"),
    ]


def test_response_heads_decode_the_same_and_leave_the_clients_hpack_table_empty() -> None:
    pair = Pair()
    lines = [b"Server: nginx", b"Date: Mon, 30 Nov 2026 12:00:00 GMT", b"Content-Type: text/plain"]
    for _ in range(3):  # the second and third come from the encoded-field memo
        sid = pair.request()
        pair.exchange()
        pair.server.send_head_lines(sid, 200, lines, end=True)
        pair.exchange()
        response = [e for e in pair.client_events if isinstance(e, h2.events.ResponseReceived)][-1]
        assert response.stream_id == sid
        assert response.headers == [
            (b":status", b"200"),
            (b"server", b"nginx"),
            (b"date", b"Mon, 30 Nov 2026 12:00:00 GMT"),
            (b"content-type", b"text/plain"),
        ]
    assert not pair.client.decoder.header_table.dynamic_entries  # nothing indexed: stateless encoding


def test_a_smaller_hpack_table_from_the_client_is_acknowledged_in_the_next_head() -> None:
    pair = Pair()
    pair.client.update_settings({h2.settings.SettingCodes.HEADER_TABLE_SIZE: 0})
    sid = pair.request()
    pair.exchange()
    pair.server.send_head_lines(sid, 200, [b"Server: nginx"], end=True)
    pair.exchange()  # the client's decoder insists on the size update (RFC 7541 §4.2), else errors
    response = [e for e in pair.client_events if isinstance(e, h2.events.ResponseReceived)]
    assert response and response[0].headers == [(b":status", b"200"), (b"server", b"nginx")]
