"""A fuzz of the HTTP/2 connection in-process: random frame sequences after a valid preface.

A client made of raw frames (``hyperframe``, HPACK by ``hpack``) sends HEADERS with random and
invalid field lists (split into CONTINUATIONs, padded, prioritised), DATA on random streams,
RST_STREAM, WINDOW_UPDATE (0 and overflowing), SETTINGS (invalid values), PRIORITY, PING, GOAWAY,
PUSH_PROMISE, unknown and oversized frames, raw bytes and floods, against ``H2Connection`` on a mock
transport with mock targets that answer (or stall) and a manual clock. After every step:

- nothing raises: neither ``data_received`` nor a callback the connection scheduled on the loop;
- what the connection wrote parses as HTTP/2 frames, and each stream's response is well-formed
  (one final head whose ``:status`` comes first, lower-case names, no connection-specific fields,
  DATA only after it, nothing after END_STREAM); after an error GOAWAY nothing more is written;
- what is held stays bounded by the protocol's limits: open streams by SETTINGS_MAX_CONCURRENT_STREAMS,
  request bytes held or not yet acknowledged by the stream window, response bytes queued for a
  stream by what its target delivered while it was being read;

and at the end, once time has passed every timeout, a stream is left only if the client does not
read it or its target stalls mid-body (nothing times these out), and once the targets are gone
too the connection is closed; once the client is gone every stream it started reported its
exchange exactly once and nothing is left in its stream table.

Derandomized, a short budget in CI; a longer run:
    H2_FUZZ_EXAMPLES=5000 python -m pytest -q -p no:randomly tests/proxy/test_h2_fuzz.py
"""

from __future__ import annotations

import asyncio
import os
import struct
from dataclasses import dataclass, field
from typing import Any

import hpack
import pytest
from hyperframe.frame import (
    ContinuationFrame,
    DataFrame,
    Frame,
    GoAwayFrame,
    HeadersFrame,
    PingFrame,
    PriorityFrame,
    PushPromiseFrame,
    RstStreamFrame,
    SettingsFrame,
    WindowUpdateFrame,
)
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from proxy.http import h2_session
from proxy.http.exchange import ExchangeState
from proxy.http.h2_connection import H2Connection, H2Stream
from proxy.http.h2_session import StreamData
from proxy.lifecycle import ModeEvent
from tests.proxy.harness import Harness, MockTransport, settle

EXAMPLES = int(os.environ.get("H2_FUZZ_EXAMPLES", "0"))
LONG = EXAMPLES > 0
pytestmark = pytest.mark.timeout(0 if LONG else 120)

STREAMING, BUFFERING_RESPONSE = ExchangeState.STREAMING, ExchangeState.BUFFERING_RESPONSE
PREFACE = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n"
MAX_CHUNK = 70_000  # the most a mock target delivers in one read (a real socket read: 256 KiB)
WINDOW = h2_session.INITIAL_WINDOW_SIZE
CONNECTION_SPECIFIC = {b"connection", b"keep-alive", b"proxy-connection", b"transfer-encoding", b"upgrade"}

# ---------------------------------------------------------------------- what the client does

# A stream is named as: ("new",) the next unused odd id; ("open", k) the k-th id opened so far
# (mod); ("raw", id) any id at all (0, even, far ahead, 2**31-1).
stream_refs = st.one_of(
    st.just(("new",)),
    st.tuples(st.just("open"), st.integers(0, 20)),
    st.tuples(st.just("open"), st.integers(0, 20)),
    st.tuples(st.just("raw"), st.sampled_from([0, 1, 2, 3, 4, 101, 2**31 - 1])),
)
NAMES = [
    b"content-length",
    b"cookie",
    b"host",
    b"te",
    b"connection",
    b"transfer-encoding",
    b"expect",
    b"x-forwarded-for",
    b"Upper",
    b"bad name",
    b"",
    b":status",
    b":protocol",
    b":path",
    b":method",
    b":authority",
    b":scheme",
    b"accept",
]
VALUES = st.one_of(
    st.sampled_from(
        [b"", b"0", b"5", b"10", b"-1", b"1,1", b"trailers", b"100-continue", b"a=b", b"app.test", b"x y"]
    ),
    st.binary(max_size=12),
    st.sampled_from([b"a\r\nb", b"a\x00", b" a", b"a\t", b"9" * 30]),
)
fields_extra = st.lists(
    st.tuples(st.one_of(st.sampled_from(NAMES), st.binary(max_size=6)), VALUES), max_size=4
)


BENIGN = st.lists(
    st.sampled_from(
        [
            (b"accept", b"*/*"),
            (b"cookie", b"a=b"),
            (b"cookie", b"c=d"),
            (b"user-agent", b"fuzz"),
            (b"te", b"trailers"),
        ]
    ),
    max_size=3,
)


@st.composite
def header_lists(draw: st.DrawFn) -> list[tuple[bytes, bytes]]:
    """Mostly a valid request head (so streams open and get answered), else a broken one."""
    hostile = draw(st.integers(0, 9)) >= 7  # (hypothesis leans to small numbers)
    method = draw(
        st.sampled_from([b"GET", b"POST", b"HEAD", b"PUT", b"CONNECT", b"OPTIONS", b""])
        if hostile
        else st.sampled_from([b"GET", b"POST"])
    )
    base = [
        (b":method", method),
        (b":scheme", b"https"),
        (b":authority", draw(st.sampled_from([b"app.test", b"other.test", b""])) if hostile else b"app.test"),
        (b":path", draw(st.sampled_from([b"/", b"/a?b=c", b"*", b"", b"/up"])) if hostile else b"/"),
    ]
    if not hostile:
        return base + draw(BENIGN)
    base = [f for f in base if draw(st.integers(0, 9)) < 9]  # now and then a pseudo-field is missing
    extra = draw(fields_extra)
    if draw(st.integers(0, 4)) == 0:
        return draw(st.permutations(base + extra))
    return base + extra


@dataclass(frozen=True)
class Headers:
    stream: tuple[Any, ...]
    fields: list[tuple[bytes, bytes]] | bytes  # bytes: a raw (probably broken) HPACK block
    end_stream: bool
    pieces: int  # the block split into HEADERS + (pieces - 1) CONTINUATIONs
    end_headers: bool  # False: the last CONTINUATION never ends the block
    padding: int | None
    priority: tuple[int, int, bool] | None  # depends on, weight, exclusive


@dataclass(frozen=True)
class Data:
    stream: tuple[Any, ...]
    size: int
    end_stream: bool
    padding: int | None


@dataclass(frozen=True)
class Control:
    """Any other frame, ready-made but for its stream."""

    stream: tuple[Any, ...]
    frame: Frame


@dataclass(frozen=True)
class Raw:
    data: bytes


@dataclass(frozen=True)
class Flood:
    kind: str  # "ping", "settings", "rapid-reset", "continuation", "window-zero", "streams"
    count: int


@dataclass(frozen=True)
class Target:
    index: int
    kind: str  # "head", "chunked-head", "body", "chunk", "end", "full", "close", "garbage"
    size: int


@dataclass(frozen=True)
class Mode:
    """The service is paused (requests are held, their bodies wait), stopped or resumed."""

    event: ModeEvent


@dataclass(frozen=True)
class Advance:
    seconds: float


@dataclass(frozen=True)
class Drain:
    pass


Action = Headers | Data | Control | Raw | Flood | Target | Mode | Advance | Drain


def weighted(*choices: tuple[int, st.SearchStrategy[Any]]) -> st.SearchStrategy[Any]:
    """One of the strategies, each drawn ``weight`` times as often (``st.one_of`` flattens nested
    choices, so a strategy with many branches would otherwise crowd the others out)."""
    table = [strategy for weight, strategy in choices for _ in range(weight)]
    return st.sampled_from(table).flatmap(lambda strategy: strategy)


headers_actions = st.builds(
    Headers,
    stream=st.one_of(st.just(("new",)), st.just(("new",)), stream_refs),
    fields=weighted((7, header_lists()), (1, st.binary(max_size=24))),
    end_stream=st.booleans(),
    pieces=st.sampled_from([1, 1, 1, 2, 3]),
    end_headers=st.integers(0, 15).map(lambda n: n != 15),
    padding=st.one_of(st.none(), st.integers(0, 255)),
    priority=st.one_of(st.none(), st.tuples(st.integers(0, 9), st.integers(1, 256), st.booleans())),
)
data_actions = st.builds(
    Data,
    stream=stream_refs,
    size=st.one_of(st.integers(0, 2000), st.sampled_from([16384, 16385, 40_000, 70_000])),
    end_stream=st.booleans(),
    padding=st.one_of(st.none(), st.none(), st.integers(0, 255)),
)


def _setting_frame(values: dict[int, int], ack: bool) -> Frame:
    frame = SettingsFrame(0, settings=values)
    if ack:
        frame.flags.add("ACK")
    return frame


def _ping(data: bytes, ack: bool) -> Frame:
    frame = PingFrame(0, opaque_data=data)
    if ack:
        frame.flags.add("ACK")
    return frame


controls = st.one_of(
    st.builds(
        lambda s, code: Control(s, RstStreamFrame(1, error_code=code)),
        stream_refs,
        st.sampled_from([0, 1, 8, 0xFFFFFFFF]),
    ),
    st.builds(
        lambda s, inc: Control(s, WindowUpdateFrame(1, window_increment=inc)),
        st.one_of(stream_refs, st.just(("raw", 0))),
        st.sampled_from([0, 1, 1000, 65535, 2**31 - 1]),
    ),
    st.builds(
        lambda values, ack: Control(("raw", 0), _setting_frame(values, ack)),
        st.dictionaries(
            st.one_of(st.integers(1, 6), st.integers(0, 0xFFFF)),
            st.one_of(st.sampled_from([0, 1, 16383, 16384, 65535, 2**24, 2**31, 2**32 - 1]), st.integers(0, 2**32 - 1)),
            max_size=3,
        ),
        st.integers(0, 7).map(lambda n: n == 0),
    ),
    st.builds(
        lambda s, dep, w, ex: Control(s, PriorityFrame(1, depends_on=dep, stream_weight=w - 1, exclusive=ex)),
        stream_refs,
        st.integers(0, 9),
        st.integers(1, 256),
        st.booleans(),
    ),
    st.builds(lambda d, ack: Control(("raw", 0), _ping(d, ack)), st.binary(min_size=8, max_size=8), st.booleans()),
    st.builds(
        lambda last, code: Control(("raw", 0), GoAwayFrame(0, last_stream_id=last, error_code=code)),
        st.sampled_from([0, 1, 2**31 - 1]),
        st.sampled_from([0, 1, 2, 11]),
    ),
    st.builds(
        lambda s: Control(s, PushPromiseFrame(1, promised_stream_id=2, data=b"\x82")), stream_refs
    ),
    st.builds(lambda s: Control(s, ContinuationFrame(1, data=b"\x82")), stream_refs),
)  # fmt: skip


def _unknown_frame(kind: int, flags: int, stream: int, payload: bytes) -> bytes:
    return struct.pack(">I", len(payload))[1:] + bytes([kind, flags]) + struct.pack(">I", stream) + payload


raws = st.one_of(
    st.binary(min_size=1, max_size=40).map(Raw),
    st.builds(
        lambda k, f, s, p: Raw(_unknown_frame(k, f, s, p)),
        st.integers(10, 255),
        st.integers(0, 255),
        st.sampled_from([0, 1, 3]),
        st.binary(max_size=30),
    ),
    # a frame header announcing more than SETTINGS_MAX_FRAME_SIZE, or a truncated one
    st.builds(lambda n: Raw(struct.pack(">I", n)[1:] + b"\x00\x00\x00\x00\x00\x01" + b"x" * min(n, 20_000)), st.sampled_from([16385, 20_000, 2**24 - 1])),
    st.builds(lambda t: Raw(struct.pack(">I", 4)[1:] + bytes([t, 0]) + struct.pack(">I", 0) + b"\x00\x00"), st.integers(0, 9)),
)  # fmt: skip
floods = st.builds(
    Flood,
    kind=st.sampled_from(["ping", "settings", "rapid-reset", "continuation", "window-zero", "streams"]),
    count=st.sampled_from([10, 80, 260]),
)
targets = st.builds(
    Target,
    index=st.integers(0, 20),
    kind=st.sampled_from(["head", "chunked-head", "body", "body", "chunk", "end", "full", "full", "close", "garbage", "interim"]),
    size=st.sampled_from([0, 5, 1000, 65_536, MAX_CHUNK]),
)  # fmt: skip


benign_controls = st.one_of(
    st.builds(lambda s, inc: Control(s, WindowUpdateFrame(1, window_increment=inc)), st.tuples(st.just("open"), st.integers(0, 20)), st.sampled_from([1000, 65535, 300_000])),
    st.builds(lambda inc: Control(("raw", 0), WindowUpdateFrame(1, window_increment=inc)), st.sampled_from([1000, 65535, 300_000])),
    st.builds(lambda s: Control(s, RstStreamFrame(1, error_code=8)), st.tuples(st.just("open"), st.integers(0, 20))),
    st.builds(lambda d: Control(("raw", 0), _ping(d, False)), st.binary(min_size=8, max_size=8)),
    st.builds(lambda v: Control(("raw", 0), _setting_frame({SettingsFrame.INITIAL_WINDOW_SIZE: v}, False)), st.sampled_from([0, 100, 65535, 1 << 20])),
)  # fmt: skip
valid_data = st.builds(
    Data,
    stream=st.tuples(st.just("open"), st.integers(0, 20)),
    size=st.sampled_from([0, 10, 5000, 16384]),
    end_stream=st.booleans(),
    padding=st.none(),
)
actions: st.SearchStrategy[Action] = weighted(
    (25, headers_actions),
    (10, valid_data),
    (5, data_actions),
    (25, targets),
    (10, benign_controls),
    (6, controls),
    (4, raws),
    (3, floods),
    (6, st.builds(Advance, st.sampled_from([0.5, 5.0, 31.0, 61.0]))),
    (6, st.just(Drain())),
    (4, st.builds(Mode, st.sampled_from([ModeEvent.PAUSE, ModeEvent.RESUME, ModeEvent.STOP]))),
)
backpressure_actions: st.SearchStrategy[Action] = weighted(
    (25, headers_actions),
    (10, valid_data),
    (30, targets),
    (10, benign_controls),
    (3, controls),
    (3, floods),
    (3, st.builds(Mode, st.sampled_from([ModeEvent.PAUSE, ModeEvent.RESUME]))),
)


# ---------------------------------------------------------------------- the client's side


class RawClient:
    """Turns actions into bytes: picks stream ids, keeps the HPACK encoder's state."""

    def __init__(self) -> None:
        self.encoder = hpack.Encoder()
        self.next_id = 1
        self.opened: list[int] = []
        self.max_frame_size = 16384  # the largest SETTINGS_MAX_FRAME_SIZE this client announced
        self.methods: dict[int, bytes] = {}  # each stream's :method (a HEAD response has no body)

    def stream(self, ref: tuple[Any, ...]) -> int:
        if ref[0] == "new":
            sid = self.next_id
            self.next_id += 2
            self.opened.append(sid)
            return sid
        if ref[0] == "open":
            return self.opened[ref[1] % len(self.opened)] if self.opened else 1
        return int(ref[1])

    def headers(self, action: Headers) -> bytes:
        sid = self.stream(action.stream)
        if not isinstance(action.fields, bytes):
            self.methods[sid] = dict(action.fields).get(b":method", b"")
        block = action.fields if isinstance(action.fields, bytes) else self.encoder.encode(action.fields)
        size = -(-len(block) // action.pieces) if block else 0
        pieces = [block[i : i + size] for i in range(0, len(block), size)] if size else [b""]
        first = HeadersFrame(1, data=pieces[0])
        if action.end_stream:
            first.flags.add("END_STREAM")
        if action.padding is not None:
            first.flags.add("PADDED")
            first.pad_length = action.padding
        if action.priority is not None:
            first.flags.add("PRIORITY")
            first.depends_on, first.stream_weight, first.exclusive = action.priority
            first.stream_weight -= 1
        frames: list[Frame] = [first] + [ContinuationFrame(1, data=p) for p in pieces[1:]]
        if action.end_headers:
            frames[-1].flags.add("END_HEADERS")
        return b"".join(_serialize(f, sid) for f in frames)

    def data(self, action: Data) -> bytes:
        frame = DataFrame(1, data=b"d" * action.size)
        if action.end_stream:
            frame.flags.add("END_STREAM")
        if action.padding is not None:
            frame.flags.add("PADDED")
            frame.pad_length = action.padding
        return _serialize(frame, self.stream(action.stream))

    def control(self, action: Control) -> bytes:
        frame = action.frame
        if isinstance(frame, SettingsFrame):
            size = frame.settings.get(SettingsFrame.MAX_FRAME_SIZE)
            if size is not None and 16384 <= size < 2**24:
                self.max_frame_size = max(self.max_frame_size, size)
        return _serialize(frame, self.stream(action.stream))

    def flood(self, action: Flood) -> bytes:
        out = []
        for n in range(action.count):
            if action.kind == "ping":
                out.append(_serialize(PingFrame(0, opaque_data=struct.pack(">Q", n))))
            elif action.kind == "settings":
                out.append(
                    _serialize(SettingsFrame(0, settings={SettingsFrame.INITIAL_WINDOW_SIZE: 65535 + n}))
                )
            elif action.kind in ("rapid-reset", "streams"):  # (streams: open ones, past the limit)
                sid = self.stream(("new",))
                get = [
                    (b":method", b"GET"),
                    (b":scheme", b"https"),
                    (b":authority", b"app.test"),
                    (b":path", b"/"),
                ]
                head = HeadersFrame(sid, data=self.encoder.encode(get))
                head.flags.add("END_HEADERS")
                if action.kind == "streams":
                    out.append(_serialize(head))
                    continue
                head.flags.add("END_STREAM")
                out += [_serialize(head), _serialize(RstStreamFrame(sid, error_code=8))]
            elif action.kind == "continuation":
                sid = self.opened[-1] if self.opened else 1
                if n == 0:
                    out.append(_serialize(HeadersFrame(self.stream(("new",)), data=b"")))
                else:
                    out.append(_serialize(ContinuationFrame(1, data=b"\x00\x01a\x01b"), sid))
            else:
                out.append(_serialize(WindowUpdateFrame(0, window_increment=1)))
        return b"".join(out)  # fmt: skip


def _serialize(frame: Frame, stream_id: int | None = None) -> bytes:
    """The frame's bytes, on ``stream_id`` if given: hyperframe refuses to make some frames on some
    streams (HEADERS on 0, SETTINGS on 1), which is what a hostile client sends."""
    data = bytes(frame.serialize())
    if stream_id is None:
        return data
    return data[:5] + struct.pack(">I", stream_id & 0x7FFFFFFF) + data[9:]


# ---------------------------------------------------------------------- the server's output


@dataclass
class StreamSeen:
    final: bool = False  # a final (non-1xx) head was sent
    ended: bool = False  # END_STREAM was sent
    reset: bool = False
    length: int | None = None  # the final head's content-length
    body: int = 0  # DATA bytes sent


@dataclass
class OutputChecker:
    """Parses everything the connection writes and checks each stream's response is well-formed."""

    client: RawClient
    buffer: bytes = b""
    decoder: hpack.Decoder = field(default_factory=hpack.Decoder)
    streams: dict[int, StreamSeen] = field(default_factory=dict)
    block: bytes = b""  # a header block waiting for its CONTINUATIONs
    block_stream: int = 0
    block_end_stream: bool = False
    goaway_error: bool = False
    frames: int = 0

    def __post_init__(self) -> None:
        self.decoder.max_header_list_size = 1 << 24
        self.decoder.max_allowed_table_size = 1 << 32

    def feed(self, data: bytes) -> None:
        if data:
            assert not self.goaway_error, "bytes written after a GOAWAY with an error"
        self.buffer += data
        while len(self.buffer) >= 9:
            frame, length = Frame.parse_frame_header(memoryview(self.buffer[:9]))
            if len(self.buffer) < 9 + length:
                break
            assert length <= self.client.max_frame_size, (type(frame).__name__, length)
            frame.parse_body(memoryview(self.buffer[9 : 9 + length]))
            self.buffer = self.buffer[9 + length :]
            self.frames += 1
            self.frame(frame)

    def frame(self, frame: Frame) -> None:
        sid = frame.stream_id
        if self.block:
            assert isinstance(frame, ContinuationFrame) and sid == self.block_stream, (
                "header block interrupted"
            )
        assert not isinstance(frame, PushPromiseFrame)
        if isinstance(frame, GoAwayFrame):
            self.goaway_error = self.goaway_error or frame.error_code != 0
            return
        if sid == 0:
            assert isinstance(frame, SettingsFrame | PingFrame | WindowUpdateFrame), frame
            return
        assert sid % 2 == 1, f"a frame on a stream the client cannot have opened: {frame}"
        seen = self.streams.setdefault(sid, StreamSeen())
        if isinstance(frame, RstStreamFrame):
            seen.reset = True
            return
        if isinstance(frame, WindowUpdateFrame):
            return
        assert not seen.ended and not seen.reset, f"{type(frame).__name__} after the stream ended: {sid}"
        if isinstance(frame, HeadersFrame | ContinuationFrame):
            if isinstance(frame, HeadersFrame):
                self.block_stream, self.block_end_stream = sid, "END_STREAM" in frame.flags
            self.block += frame.data
            if "END_HEADERS" in frame.flags:
                block, self.block = self.block, b""
                self.head(seen, [(bytes(n), bytes(v)) for n, v in self.decoder.decode(block, raw=True)])
                if self.block_end_stream:
                    assert seen.final, "END_STREAM on an interim head"
                    seen.ended = True
            return
        assert isinstance(frame, DataFrame), frame
        assert seen.final, f"DATA before the response head on stream {sid}"
        seen.body += len(frame.data)
        if "END_STREAM" in frame.flags:
            seen.ended = True
            if seen.length is not None and self.client.methods.get(sid) != b"HEAD":
                assert seen.body == seen.length, (
                    f"stream {sid}: {seen.body} bytes, content-length {seen.length}"
                )

    def head(self, seen: StreamSeen, fields: list[tuple[bytes, bytes]]) -> None:
        assert fields and fields[0][0] == b":status", fields
        status = fields[0][1]
        assert len(status) == 3 and status.isdigit() and 100 <= int(status) <= 599, status
        assert not seen.final, "two final heads on one stream"
        for name, _ in fields[1:]:
            assert not name.startswith(b":"), fields
            assert name == name.lower() and name not in CONNECTION_SPECIFIC, name
        if int(status) >= 200:
            seen.final = True
            lengths = [v for n, v in fields if n == b"content-length"]
            assert len(lengths) <= 1 and all(v.isdigit() for v in lengths), fields
            seen.length = int(lengths[0]) if lengths else None


# ---------------------------------------------------------------------- the run


class StreamTable(dict[int, H2Stream]):
    """The connection's stream table, remembering every stream ever put in it."""

    def __init__(self) -> None:
        super().__init__()
        self.started: list[H2Stream] = []

    def __setitem__(self, key: int, value: H2Stream) -> None:
        self.started.append(value)
        super().__setitem__(key, value)


def upstream_piece(target: Target) -> bytes:
    body = b"u" * target.size
    if target.kind == "head":
        return b"HTTP/1.1 200 OK\r\nContent-Length: %d\r\nConnection: close\r\nX-A: b\r\n\r\n" % (
            2 * target.size
        )
    if target.kind == "chunked-head":
        return b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\nKeep-Alive: x\r\n\r\n"
    if target.kind == "chunk":
        return b"%x\r\n%b\r\n" % (target.size, body) if target.size else b"0\r\n\r\n"
    if target.kind == "end":
        return b"0\r\n\r\n"
    if target.kind == "full":
        return b"HTTP/1.1 %d OK\r\nContent-Length: %d\r\n\r\n%b" % (
            target.size % 400 + 200,
            target.size,
            body,
        )
    if target.kind == "garbage":
        return b"\x00HTTP/9 nope\r\n\r\n"
    if target.kind == "interim":
        return b"HTTP/1.1 103 Early Hints\r\nLink: </a.css>\r\n\r\nHTTP/1.1 100 Continue\r\n\r\n"
    return body


class Bounds:
    """What the connection may hold, from the protocol's limits."""

    @staticmethod
    def check(conn: H2Connection, transport: MockTransport) -> None:
        assert len(conn.streams) <= h2_session.MAX_CONCURRENT_STREAMS, len(conn.streams)
        session = conn.session
        held_total = 0
        for stream in conn.streams.values():
            held = sum(len(e.data) for e in stream.held or () if isinstance(e, StreamData))
            held_total += held
            assert held <= WINDOW and stream.owed <= WINDOW, (held, stream.owed)
        assert held_total <= h2_session.CONNECTION_WINDOW_SIZE
        for queue in session._pending.values():
            assert sum(len(view) for view, _ in queue) <= 2 * MAX_CHUNK
        # what a client that reads nothing makes the proxy buffer: the high-water mark, then what
        # the streams already had on their way (each one chunk and its tail) and control frames
        bound = 256 * 1024 + h2_session.MAX_CONCURRENT_STREAMS * 2 * (MAX_CHUNK + 1024) + 64 * 1024
        assert transport.buffered <= bound, transport.buffered


async def drive(h: Harness, script: list[Action], *, backpressure: bool) -> None:
    loop = asyncio.get_running_loop()
    failures: list[dict[str, Any]] = []
    loop.set_exception_handler(lambda _loop, context: failures.append(context))
    h.deploy("app", "app:3000", hosts=("app.test",), response_timeout=10.0)
    conn = H2Connection(h.listener)
    table = conn.streams = StreamTable()
    transport = MockTransport()
    transport.backpressure = backpressure
    transport.protocol = conn
    conn.connection_made(transport)  # type: ignore[arg-type]
    client = RawClient()
    output = OutputChecker(client)
    conn.data_received(PREFACE + _serialize(SettingsFrame(0)))
    await settle()
    output.feed(transport.take())
    for action in script:
        await step(h, conn, transport, client, action)
        await settle()
        assert not failures, failures
        output.feed(transport.take())
        Bounds.check(conn, transport)
        if transport.closed:
            break
    # the client reads everything, then time passes every timeout: what is left open is a stream
    # the client does not read (no timeout covers that; see the report) or one whose target stalls
    # mid-body (--target-timeout covers the response head only, as kamal-proxy's)
    await pass_every_timeout(h, transport, output)
    assert not failures, failures
    for stream in conn.streams.values():
        exchange = stream.exchange
        stalled_target = exchange is not None and exchange.state in (STREAMING, BUFFERING_RESPONSE)
        stalled_client = bool(stream.blocked) or conn.session.queued(stream.stream_id)
        assert stalled_target or stalled_client, (stream.stream_id, exchange and exchange.state)
    # then the targets go away: nothing is left to wait for, the connection ends
    for upstream, _ in h.targets.connections:
        upstream.lose()
    await pass_every_timeout(h, transport, output)
    assert not failures, failures
    assert transport.closed, f"still open with streams {sorted(conn.streams)}"
    transport.lose()
    await settle()
    assert not failures, failures
    assert conn.streams == {} and conn not in h.listener.connections
    started = table.started
    assert all(s.finished and s.exchange is None for s in started)
    assert len(h.recorder.records) == len(started)  # each exchange reported itself once


async def pass_every_timeout(h: Harness, transport: MockTransport, output: OutputChecker) -> None:
    for _ in range(4):
        transport.drain()
        await h.advance(h.listener.idle_timeout + h.listener.request_body_timeout + 31)
        await settle()
        output.feed(transport.take())


async def step(
    h: Harness, conn: H2Connection, transport: MockTransport, client: RawClient, action: Action
) -> None:
    ref = getattr(action, "stream", None)
    if ref is not None and ref[0] == "open" and not client.opened:
        return  # (meant for a stream that is open: none is yet)
    if isinstance(action, Headers):
        conn.data_received(client.headers(action))
    elif isinstance(action, Data):
        conn.data_received(client.data(action))
    elif isinstance(action, Control):
        conn.data_received(client.control(action))
    elif isinstance(action, Raw):
        conn.data_received(action.data)
    elif isinstance(action, Flood):
        conn.data_received(client.flood(action))
    elif isinstance(action, Target):
        if not h.targets.connections:
            return
        upstream, protocol = h.targets.connections[-1 - action.index % len(h.targets.connections)]
        if upstream.closed or upstream.protocol is None:
            return
        if action.kind == "close":
            upstream.lose()
        elif upstream.reading:  # a real socket delivers nothing while the proxy does not read
            protocol.data_received(upstream_piece(action))
    elif isinstance(action, Mode):
        service = h.services[0][2]
        service.change_mode(action.event, pause_timeout=30.0)
    elif isinstance(action, Advance):
        await h.advance(action.seconds)
    else:
        transport.drain()  # fmt: skip


def fuzz_settings(examples: int) -> settings:
    return settings(
        max_examples=EXAMPLES or examples,
        derandomize=not LONG,
        deadline=None,
        database=None,
        suppress_health_check=[
            HealthCheck.too_slow,
            HealthCheck.data_too_large,
            HealthCheck.large_base_example,
        ],
    )


def run_script(script: list[Action], *, backpressure: bool = False) -> None:
    async def main() -> None:
        h = Harness()
        try:
            await drive(h, script, backpressure=backpressure)
        finally:
            h.close()

    asyncio.run(main())


@fuzz_settings(120)
@given(script=st.lists(actions, min_size=4, max_size=30))
def test_random_frames_never_break_the_connection_or_its_bounds(script: list[Action]) -> None:
    run_script(script)


@fuzz_settings(60)
@given(script=st.lists(backpressure_actions, min_size=4, max_size=30))
def test_a_client_that_reads_nothing_keeps_the_proxy_buffering_bounded(script: list[Action]) -> None:
    run_script(script, backpressure=True)
