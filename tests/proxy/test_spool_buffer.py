"""The request/response body buffer: memory, then disk, then the limit; read back in bounded slices."""

from __future__ import annotations

from proxy.http.buffering import READ_CHUNK, SpoolBuffer


def drain(buffer: SpoolBuffer) -> list[bytes]:
    pieces = []
    while piece := buffer.read():
        pieces.append(piece)
    return pieces


def test_spool_buffer_spills_to_disk_and_enforces_limit() -> None:
    buffer = SpoolBuffer(memory=10, limit=100)
    assert buffer.write(b"a" * 8) and not buffer.spilled
    assert buffer.write(b"b" * 50) and buffer.spilled
    assert not buffer.write(b"c" * 50)
    assert b"".join(drain(buffer)) == b"a" * 8 + b"b" * 50
    buffer.close()


def test_a_spilled_body_is_read_back_in_slices_of_at_most_read_chunk() -> None:
    buffer = SpoolBuffer(memory=1024, limit=0)
    body = bytes(range(256)) * (5 * READ_CHUNK // 256) + b"tail"
    for i in range(0, len(body), 1000):
        assert buffer.write(body[i : i + 1000])
    pieces = drain(buffer)
    assert b"".join(pieces) == body
    assert max(len(p) for p in pieces) <= READ_CHUNK and len(pieces) >= 5
    assert buffer.read() == b""
    buffer.close()
