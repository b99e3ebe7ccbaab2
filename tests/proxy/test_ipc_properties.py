"""Properties of the worker channel's decoder: whatever bytes arrive, the reader either yields typed
messages or raises ``MessageError`` (the one error its callers handle), and it never holds more than
one announced frame.

Inputs are random bytes and mutations of every valid message (bytes flipped, cut, inserted; JSON
fields replaced by random values, deep nesting, huge numbers, NaN). Derandomized; a longer run:
    IPC_FUZZ_EXAMPLES=20000 python -m pytest -q -p no:randomly tests/proxy/test_ipc_properties.py
"""

from __future__ import annotations

import json
import os
from typing import Any, get_args

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from proxy import ipc
from proxy.controller.fleet import WorkerFleet, WorkerSlot
from tests.proxy.test_ipc import MESSAGES

EXAMPLES = int(os.environ.get("IPC_FUZZ_EXAMPLES", "0"))
LONG = EXAMPLES > 0
pytestmark = pytest.mark.timeout(0 if LONG else 120)
SETTINGS = settings(
    max_examples=EXAMPLES or 250,
    derandomize=not LONG,
    deadline=None,
    database=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)
MESSAGE_TYPES = get_args(ipc.Message)
BODIES = [ipc.encode(m)[ipc.HEADER.size :] for m in MESSAGES]

Json = Any
scalars = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(min_value=-(2**70), max_value=2**70),
    st.floats(allow_nan=True, allow_infinity=True),
    st.text(max_size=8),
    st.sampled_from(["-----BEGIN X", "", "\x00", "snapshot", "healthy", "1"]),
)
json_values = st.recursive(
    scalars,
    lambda inner: st.one_of(
        st.lists(inner, max_size=4), st.dictionaries(st.text(max_size=6), inner, max_size=4)
    ),
    max_leaves=8,
)


def nested(depth: int) -> str:
    return "[" * depth + "]" * depth


# Raw JSON texts that stress the parser itself rather than the readers.
hostile_texts = st.one_of(
    st.integers(1, 3000).map(nested),
    st.integers(1, 3000).map(lambda d: '{"a":' * d + "1" + "}" * d),
    st.integers(4000, 6000).map(lambda n: "1" * n),  # past Python's int digit limit
    st.sampled_from(["NaN", "Infinity", "-Infinity", "1e999", '"\\ud800"', "\ufeff{}", ""]),
)


def decode_or_error(body: bytes) -> ipc.Message | None:
    """``ipc.decode``: a message of one of the declared types, or None for a MessageError."""
    try:
        message: ipc.Message = ipc.decode(body)
    except ipc.MessageError as exc:
        assert str(exc)  # the error says what is wrong
        return None
    assert type(message) in MESSAGE_TYPES, message
    return message


@SETTINGS
@given(body=st.binary(max_size=512))
def test_random_bytes_are_a_message_or_a_message_error(body: bytes) -> None:
    decode_or_error(body)


def mutate(draw: st.DrawFn, data: bytes, *, max_delete: int = 8) -> bytes:
    """``data`` with one to four byte-level changes: a byte flipped, bytes inserted or deleted, the
    rest cut off."""
    body = bytearray(data)
    for _ in range(draw(st.integers(1, 4))):
        at = draw(st.integers(0, len(body)))
        kind = draw(st.sampled_from(["flip", "insert", "delete", "cut"]))
        if kind == "flip" and at < len(body):
            body[at] = draw(st.integers(0, 255))
        elif kind == "insert":
            body[at:at] = draw(st.binary(min_size=1, max_size=8))
        elif kind == "delete":
            del body[at : at + draw(st.integers(1, max_delete))]
        else:
            del body[at:]
    return bytes(body)


@st.composite
def byte_mutations(draw: st.DrawFn) -> bytes:
    return mutate(draw, draw(st.sampled_from(BODIES)))


@SETTINGS
@given(body=byte_mutations())
def test_a_valid_frame_with_bytes_changed_is_a_message_or_a_message_error(body: bytes) -> None:
    decode_or_error(body)


def paths(value: Json, prefix: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
    """Every place in a JSON document: object keys and list indexes, recursively."""
    found = [prefix] if prefix else []
    if isinstance(value, dict):
        for key, item in value.items():
            found += paths(item, (*prefix, key))
    elif isinstance(value, list):
        for index, item in enumerate(value):
            found += paths(item, (*prefix, index))
    return found


def replace(document: Json, path: tuple[Any, ...], value: Json, *, delete: bool) -> Json:
    node = document
    for step in path[:-1]:
        node = node[step]
    if delete:
        del node[path[-1]]
    else:
        node[path[-1]] = value
    return document


@st.composite
def field_mutations(draw: st.DrawFn) -> bytes:
    """A valid message with one to three of its fields (at any depth) replaced, removed or added;
    the replacement may be a random JSON value or raw hostile JSON text."""
    document = json.loads(draw(st.sampled_from(BODIES)))
    raw: dict[str, str] = {}
    for n in range(draw(st.integers(1, 3))):
        places = paths(document)
        action = draw(st.sampled_from(["replace", "raw", "delete", "add"]))
        if action == "add" or not places:
            target = document
            if places:
                parent = draw(st.sampled_from([(), *places]))
                for step in parent:
                    target = target[step]
            if isinstance(target, dict):
                target[draw(st.text(max_size=6))] = draw(json_values)
            elif isinstance(target, list):
                target.append(draw(json_values))
            continue
        path = draw(st.sampled_from(places))
        if action == "raw":
            marker = f"@@raw{n}@@"
            raw[marker] = draw(hostile_texts)
            replace(document, path, marker, delete=False)
        else:
            replace(document, path, draw(json_values), delete=action == "delete")
    text = json.dumps(document, allow_nan=True, ensure_ascii=False)
    for marker, value in raw.items():
        text = text.replace(json.dumps(marker), value)
    return text.encode("utf-8", "surrogatepass")


@SETTINGS
@given(body=field_mutations())
def test_a_valid_message_with_fields_replaced_is_a_message_or_a_message_error(body: bytes) -> None:
    decode_or_error(body)


@SETTINGS
@given(
    pieces=st.lists(
        st.one_of(
            st.sampled_from(range(len(MESSAGES))).map(lambda i: ipc.encode(MESSAGES[i])),
            byte_mutations().map(lambda b: ipc.HEADER.pack(len(b)) + b),
            st.binary(max_size=64),
        ),
        min_size=1,
        max_size=6,
    ),
    cut=st.integers(1, 97),
)
def test_a_stream_of_frames_and_garbage_yields_messages_or_one_message_error(
    pieces: list[bytes], cut: int
) -> None:
    """Fed in pieces, a stream gives messages until the first bad frame, which is a MessageError; the
    reader holds no more than one frame's header and the frame limit while it waits."""
    stream = b"".join(pieces)
    reader = ipc.FrameReader()
    limit = 4096
    saved, ipc.MAX_FRAME = ipc.MAX_FRAME, limit  # a small limit the random lengths can cross
    try:
        for at in range(0, len(stream), cut):
            try:
                for message in reader.feed(stream[at : at + cut]):
                    assert type(message) in MESSAGE_TYPES
            except ipc.MessageError:
                return  # a bad frame ends the channel (both ends close it)
            assert len(reader._buffer) < ipc.HEADER.size + limit + cut
    finally:
        ipc.MAX_FRAME = saved


def test_a_frame_nested_too_deeply_is_a_message_error() -> None:
    with pytest.raises(ipc.MessageError, match="nested too deeply"):
        ipc.decode(nested(100_000).encode())
    with pytest.raises(ipc.MessageError, match="nested too deeply"):
        ipc.decode(b'{"type":"metrics","request":1,"table":' + nested(100_000).encode() + b"}")


@st.composite
def metrics_tables(draw: st.DrawFn) -> bytes:
    """A worker's metrics table (as decoded) with a field anywhere replaced by a random or hostile value."""
    document = json.loads(ipc.encode(METRICS)[ipc.HEADER.size :])
    for n in range(draw(st.integers(1, 3))):
        path = draw(st.sampled_from(paths(document["table"])))
        value = draw(st.one_of(json_values, st.sampled_from(["Infinity", "-Infinity", "NaN", "1e999"])))
        replace(
            document["table"], path, value if not isinstance(value, str) else f"@@{n}{value}@@", delete=False
        )
    text = json.dumps(document)
    for constant in ("Infinity", "-Infinity", "NaN", "1e999"):
        for n in range(3):
            text = text.replace(json.dumps(f"@@{n}{constant}@@"), constant)
    return text.encode()


METRICS = ipc.MetricsTable(
    request=0,
    table={
        "series": [["app", "GET", 200, 3, 0.25, [1, 2] + [0] * 9]],
        "in_flight": {"app": 1},
        "connect_errors": {"app": 2},
        "held": {"app": 4},
        "idle": {"app": 5},
    },
)


@SETTINGS
@given(body=metrics_tables())
def test_a_worker_metrics_table_is_taken_whole_or_counted_as_none(body: bytes) -> None:
    message = decode_or_error(body)
    if not isinstance(message, ipc.MetricsTable):
        return
    slot = WorkerSlot(index=0)
    WorkerFleet._take_table(slot, message)
    if slot.metrics is not None:
        assert all(type(v) is int for v in (*slot.held.values(), *slot.idle.values()))


def test_a_metrics_table_with_an_infinite_gauge_counts_as_none() -> None:
    message = ipc.decode(
        b'{"type":"metrics","request":0,"table":{"series":[],"in_flight":{},"held":{"a":Infinity}}}'
    )
    assert isinstance(message, ipc.MetricsTable)
    slot = WorkerSlot(index=0)
    WorkerFleet._take_table(slot, message)  # OverflowError ended the reader of that worker's messages
    assert slot.metrics is None and slot.held == {}
