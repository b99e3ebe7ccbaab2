"""The clock the proxy reads and sleeps on: the event loop's in production, a manual one in tests.

Everything that measures or waits for time (timeouts, deadlines, health-check intervals, drains)
takes a ``Clock`` so tests can move time forward by hand instead of sleeping.
"""

from __future__ import annotations

import asyncio
from typing import Protocol


class Clock(Protocol):
    def time(self) -> float:
        """Monotonic seconds (the event loop's clock)."""
        ...

    async def sleep(self, seconds: float) -> None:
        """Wait for ``seconds`` of this clock's time."""
        ...


class LoopClock:
    """The running event loop's monotonic clock."""

    __slots__ = ()

    def time(self) -> float:
        return asyncio.get_running_loop().time()

    async def sleep(self, seconds: float) -> None:
        await asyncio.sleep(seconds)


LOOP_CLOCK = LoopClock()


class BoundLoopClock:
    """One event loop's clock with ``time`` bound once (the loop's own method): for the hot path,
    which reads the time a few times per request."""

    __slots__ = ("time",)

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self.time = loop.time

    async def sleep(self, seconds: float) -> None:
        await asyncio.sleep(seconds)
