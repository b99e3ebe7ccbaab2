"""JSON-lines logging on stdout in the shape of Go's slog JSON handler, without blocking the loop.

Lines are collected in a list on the event loop and handed, in batches, to one writer thread that
owns the file descriptor. A slow or blocked stdout therefore never stalls request handling; past
MAX_PENDING_BYTES of unwritten lines, new lines are dropped and counted, and the count is reported
(a WARN "Log lines dropped" with ``dropped`` since the last report and ``total``) as soon as the
writer has caught up enough to take a line again, and at shutdown.

Every worker process writes to the same stdout. The writer hands the kernel whole lines only, in
writes of at most PIPE_BUF bytes, so lines from different workers never interleave: on a pipe such a
write is atomic, on a file opened for appending every write is. A single line longer than PIPE_BUF
goes out in one write of its own: atomic on an appended file, and on a pipe unless the pipe is full
at that moment (Linux then lets another writer in when it resumes).
"""

from __future__ import annotations

import asyncio
import json
import os
import queue
import select
import threading
import time
from collections.abc import Callable
from typing import Any, Final

from mypy_extensions import mypyc_attr

MAX_PENDING_BYTES = 64 * 1024 * 1024
FLUSH_BATCH = 4096  # lines; a smaller batch goes out after FLUSH_DELAY
# Each hand-over to the writer thread costs a GIL round trip, and joining a batch stalls the loop for
# as long as the batch is big: 100 hand-overs a second at most. (At 27k requests/s one worker, a batch
# every 0.1 s held the loop ~1 ms each time: p99 at 50 clients 4.7 ms; every 0.01 s, 2.9 ms.)
FLUSH_DELAY = 0.01

# Workers share stdout: a write() of at most PIPE_BUF bytes to a pipe is never mixed with another
# process's, so lines go out in chunks of whole lines no larger than this (a longer line alone).
ATOMIC_WRITE = select.PIPE_BUF

# A JSON string literal (quotes included), from the json module's C encoder.
quote: Callable[[str], str] = json.encoder.encode_basestring


def whole_lines(data: bytes, limit: int = ATOMIC_WRITE) -> list[bytes]:
    """``data`` (newline-terminated lines) cut into chunks of whole lines of at most ``limit`` bytes;
    a line longer than ``limit`` is a chunk of its own."""
    if len(data) <= limit:
        return [data]
    chunks = []
    start, end = 0, len(data)
    while start < end:
        if end - start <= limit:
            chunks.append(data[start:])
            break
        cut = data.rfind(b"\n", start, start + limit)
        if cut < 0:  # one line longer than the limit
            cut = data.find(b"\n", start + limit)
            if cut < 0:
                cut = end - 1
        chunks.append(data[start : cut + 1])
        start = cut + 1
    return chunks


_ZEROS: Final = ("000000", "00000", "0000", "000", "00", "0", "")  # by len(digits)


class _Clock:
    """RFC 3339 timestamps, formatting the seconds part once per second."""

    __slots__ = ("_prefix", "_second")

    def __init__(self) -> None:
        self._second = -1
        self._prefix = ""

    def stamp(self, now: float) -> str:
        second = int(now)
        if second != self._second:
            self._second = second
            self._prefix = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(second))
        micros = str(int((now - second) * 1_000_000))
        # (no format spec: mypyc compiles ":06d" to a str.format call, 2k instructions a line)
        return f"{self._prefix}.{_ZEROS[len(micros)]}{micros}Z"


@mypyc_attr(allow_interpreted_subclasses=True)  # tests keep the lines in memory
class JsonLog:
    """The daemon's one log sink. ``emit`` is cheap and never blocks."""

    def __init__(self, *, fd: int = 1, debug: bool = False) -> None:
        self.debug_enabled = debug
        self._loop: asyncio.AbstractEventLoop | None = None
        self._flush_scheduled = False
        self.dropped = 0  # lines dropped because the writer was too far behind, since start
        self._dropped_reported = 0
        self._fd = fd
        self._lines: list[str] = []
        self._pending_bytes = 0
        self._lock = threading.Lock()
        self._queue: queue.SimpleQueue[bytes | None] = queue.SimpleQueue()
        self._clock = _Clock()
        self.timestamp: Callable[[float], str] = self._clock.stamp  # RFC 3339, from time.time()
        self._writer_thread = threading.Thread(target=self._writer, name="log-writer", daemon=True)
        self._writer_thread.start()

    # --- producers (event loop) -------------------------------------------------------------
    def line(self, text: str) -> None:
        """Queue one pre-rendered JSON object (without the newline)."""
        if self._pending_bytes > MAX_PENDING_BYTES:
            self.dropped += 1
            return
        if self.dropped != self._dropped_reported:
            self._report_dropped()
        lines = self._lines
        lines.append(text)
        if len(lines) >= FLUSH_BATCH or self._loop is None:
            self.flush()
        elif not self._flush_scheduled and self._loop is not None:
            self._flush_scheduled = True
            self._loop.call_later(FLUSH_DELAY, self._scheduled_flush)

    def _report_dropped(self) -> None:
        since = self.dropped - self._dropped_reported
        self._dropped_reported = self.dropped
        stamp = self._clock.stamp(time.time())
        self._lines.append(
            f'{{"time":"{stamp}","level":"WARN","msg":"Log lines dropped",'
            f'"dropped":{since},"total":{self.dropped},"reason":"log writer too slow"}}'
        )

    def attach(self, loop: asyncio.AbstractEventLoop) -> None:
        """From now on, lines are flushed within FLUSH_DELAY by a timer on this loop."""
        self._loop = loop

    def _scheduled_flush(self) -> None:
        self._flush_scheduled = False
        self.flush()

    def emit(self, level: str, msg: str, **attrs: Any) -> None:
        now = time.time()
        head = f'{{"time":"{self._clock.stamp(now)}","level":"{level}","msg":{quote(msg)}'
        if attrs:
            body = json.dumps(attrs, separators=(",", ":"), ensure_ascii=False, default=str)
            self.line(head + "," + body[1:])
        else:
            self.line(head + "}")

    def info(self, msg: str, **attrs: Any) -> None:
        self.emit("INFO", msg, **attrs)

    def warn(self, msg: str, **attrs: Any) -> None:
        self.emit("WARN", msg, **attrs)

    def error(self, msg: str, **attrs: Any) -> None:
        self.emit("ERROR", msg, **attrs)

    def debug(self, msg: str, **attrs: Any) -> None:
        if self.debug_enabled:
            self.emit("DEBUG", msg, **attrs)

    def flush(self) -> None:
        if not self._lines:
            return
        data = ("\n".join(self._lines) + "\n").encode()
        self._lines = []
        with self._lock:
            self._pending_bytes += len(data)
        self._queue.put(data)

    def close(self) -> None:
        """Flush everything and wait for the writer to finish."""
        if self.dropped != self._dropped_reported:
            self._report_dropped()
        self.flush()
        self._queue.put(None)
        self._writer_thread.join(timeout=5)

    # --- writer thread ----------------------------------------------------------------------
    def _writer(self) -> None:
        while True:
            data = self._queue.get()
            if data is None:
                return
            size = len(data)
            try:
                for chunk in whole_lines(data):
                    view = memoryview(chunk)
                    while view:
                        written = os.write(self._fd, view)
                        view = view[written:]
            except OSError:
                pass  # stdout went away: logging must never take the proxy down
            with self._lock:
                self._pending_bytes -= size
