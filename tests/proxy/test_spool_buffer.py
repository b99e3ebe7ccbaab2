"""The request/response body buffer: memory, then disk, then the limit."""

from __future__ import annotations

from proxy.http.buffering import SpoolBuffer


def test_spool_buffer_spills_to_disk_and_enforces_limit() -> None:
    buffer = SpoolBuffer(memory=10, limit=100)
    assert buffer.write(b"a" * 8) and not buffer.spilled
    assert buffer.write(b"b" * 50) and buffer.spilled
    assert not buffer.write(b"c" * 50)
    assert b"".join(buffer.chunks()) == b"a" * 8 + b"b" * 50
    buffer.close()
