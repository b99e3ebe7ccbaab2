"""JsonLog: lines dropped while the writer is behind are counted and reported."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from proxy import log as log_module
from proxy.log import JsonLog


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
