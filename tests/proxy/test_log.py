"""JsonLog: lines dropped while the writer is behind are counted and reported."""

from __future__ import annotations

import json
import math
import os
import random
from pathlib import Path

import pytest

from proxy import log as log_module
from proxy.log import JsonLog, whole_lines


def read_lines(path: Path) -> list[dict[str, object]]:
    return [json.loads(line) for line in path.read_text().splitlines()]


def test_dropped_lines_are_reported_once_the_writer_takes_lines_again(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = tmp_path / "log"
    fd = os.open(path, os.O_WRONLY | os.O_CREAT)
    log = JsonLog(fd=fd)
    monkeypatch.setattr(log_module, "MAX_PENDING_BYTES", -1)  # the writer is "behind": every line is dropped
    log.info("lost one")
    log.info("lost two")
    assert log.dropped == 2
    monkeypatch.setattr(log_module, "MAX_PENDING_BYTES", 1 << 20)
    log.info("kept")
    log.close()
    os.close(fd)
    lines = read_lines(path)
    assert [line["msg"] for line in lines] == ["Log lines dropped", "kept"]
    assert lines[0]["level"] == "WARN"
    assert (lines[0]["dropped"], lines[0]["total"]) == (2, 2)


def test_dropped_lines_are_reported_at_shutdown(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = tmp_path / "log"
    fd = os.open(path, os.O_WRONLY | os.O_CREAT)
    log = JsonLog(fd=fd)
    monkeypatch.setattr(log_module, "MAX_PENDING_BYTES", -1)
    log.info("lost")
    log.close()
    os.close(fd)
    assert [(line["msg"], line["dropped"]) for line in read_lines(path)] == [("Log lines dropped", 1)]


def test_nothing_is_reported_when_nothing_was_dropped(tmp_path: Path) -> None:
    path = tmp_path / "log"
    fd = os.open(path, os.O_WRONLY | os.O_CREAT)
    log = JsonLog(fd=fd)
    log.info("one")
    log.close()
    os.close(fd)
    assert [line["msg"] for line in read_lines(path)] == ["one"]


def test_the_writer_hands_the_kernel_whole_lines_of_at_most_pipe_buf_bytes() -> None:
    rng = random.Random(7)
    for _ in range(500):
        lines = [
            b"x" * rng.choice([0, 1, 300, 4095, 4096, 4097, 9000]) + b"\n" for _ in range(rng.randint(1, 30))
        ]
        data = b"".join(lines)
        chunks = whole_lines(data, limit=4096)
        assert b"".join(chunks) == data
        for chunk in chunks:
            assert chunk.endswith(b"\n")
            assert len(chunk) <= 4096 or chunk.count(b"\n") == 1  # only a line longer than the limit is alone


@pytest.mark.parametrize(
    ("now", "stamp"),
    [
        (0.0, "1970-01-01T00:00:00.000000Z"),
        (1_764_547_200.0078125, "2025-12-01T00:00:00.007812Z"),  # (exact in binary)
        (1_764_547_200.5, "2025-12-01T00:00:00.500000Z"),
        (1_764_547_259.999999, "2025-12-01T00:00:59.999999Z"),
        (math.nextafter(1_764_547_260.0, 0.0), "2025-12-01T00:00:59.999999Z"),  # truncated: never a 7th digit
    ],
)
def test_timestamps_are_rfc3339_utc_with_six_digit_microseconds(now: float, stamp: str) -> None:
    clock = log_module._Clock()
    assert clock.stamp(now) == stamp
    assert clock.stamp(now) == stamp  # the cached seconds part
