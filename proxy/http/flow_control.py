"""Flow control: whether a transport is being read, and why not (uvicorn's ``flow_control.py`` idea).

Reading stops for as long as any reason holds and resumes when the last one is lifted. Both sides
use it: the client connection pauses reading while the upstream cannot take more (or is still
connecting, or too much pipelined input is queued); an upstream connection pauses reading while
the client's write buffer is full.
"""

from __future__ import annotations

from typing import Protocol

# Reasons (a bit each)
UPSTREAM_FULL = 1  # the upstream's write buffer is above its high-water mark
PIPELINE_FULL = 2  # too many pipelined request bytes are queued
CONNECTING = 4  # body bytes waiting for the upstream connection are above the mark
CLIENT_FULL = 8  # the client's write buffer is above its high-water mark (upstream side)


class Readable(Protocol):
    def pause_reading(self) -> None: ...

    def resume_reading(self) -> None: ...


class FlowControl:
    """The reasons a transport is not read, as bits; the transport is told on the first and last."""

    __slots__ = ("paused", "transport")

    def __init__(self, transport: Readable | None = None) -> None:
        self.transport = transport
        self.paused = 0

    def pause(self, reason: int) -> None:
        was = self.paused
        self.paused = was | reason
        if not was and self.transport is not None:
            self.transport.pause_reading()

    def resume(self, reason: int) -> None:
        was = self.paused
        if not was & reason:
            return
        self.paused = now = was & ~reason
        if not now and self.transport is not None:
            self.transport.resume_reading()
