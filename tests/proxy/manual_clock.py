"""A clock that moves only when a test says so: timeouts are tested without sleeping."""

from __future__ import annotations

import asyncio
import heapq
import itertools


class ManualClock:
    """Implements ``proxy.clock.Clock``; ``advance`` moves time and wakes every sleeper now due."""

    def __init__(self, *, start: float = 1000.0, settle_rounds: int = 5) -> None:
        self.now = start
        # Loop iterations let run after each wake-up: code that hops through several tasks per
        # step (a health check racing its timeout) needs more than a plain callback does.
        self.settle_rounds = settle_rounds
        self._sleepers: list[tuple[float, int, asyncio.Future[None]]] = []
        self._order = itertools.count()

    def time(self) -> float:
        return self.now

    async def sleep(self, seconds: float) -> None:
        future: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        heapq.heappush(self._sleepers, (self.now + max(0.0, seconds), next(self._order), future))
        await future

    @property
    def sleepers(self) -> int:
        return sum(1 for _, _, f in self._sleepers if not f.done())

    async def advance(self, seconds: float) -> None:
        """Move time forward by ``seconds``, waking sleepers in deadline order and letting each run."""
        target = self.now + seconds
        while self._sleepers and self._sleepers[0][0] <= target:
            due, _, future = heapq.heappop(self._sleepers)
            self.now = max(self.now, due)
            if not future.done():
                future.set_result(None)
            await settle(self.settle_rounds)
        self.now = target
        await settle(self.settle_rounds)


async def settle(rounds: int = 5) -> None:
    """Let callbacks and woken tasks run (a few loop iterations, no wall-clock wait)."""
    for _ in range(rounds):
        await asyncio.sleep(0)
