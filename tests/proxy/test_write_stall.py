"""``WriteStalls`` alone: what counts as write progress, with the manual clock and a stand-in writer.

The connections and streams that use it are tested in test_client_timeouts.py (HTTP/1),
test_h2_connection.py (HTTP/2) and, through the real daemon, test_slow_clients.py.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable

from proxy.http.write_stall import WriteStalls
from tests.proxy.manual_clock import ManualClock

TIMEOUT = 10.0


class Writer:
    """Reports what a test sets: bytes waiting, bytes the peer took."""

    def __init__(self, *, unsent: int) -> None:
        self.waiting = unsent
        self.taken = 0
        self.timed_out = 0

    def unsent(self) -> int:
        return self.waiting

    def delivered(self) -> int:
        return self.taken

    def write_timed_out(self) -> None:
        self.timed_out += 1


async def sweep_for(
    stalls: WriteStalls, clock: ManualClock, seconds: int, step: Callable[[], None] | None = None
) -> None:
    """Sweep once a second for ``seconds``, calling ``step()`` before each sweep when given."""
    for _ in range(seconds):
        if step is not None:
            step()
        await clock.advance(1)
        stalls.sweep(clock.time())


def test_bytes_the_peer_takes_are_progress_even_when_the_buffer_does_not_shrink() -> None:
    """As under TLS: the transport's own buffer stays put while the socket's drains."""

    async def scenario() -> None:
        clock = ManualClock()
        stalls = WriteStalls(timeout=TIMEOUT, clock=clock.time)
        steady, stuck = Writer(unsent=300_000), Writer(unsent=300_000)
        stalls.paused(steady)
        stalls.paused(stuck)

        def read_some() -> None:
            steady.taken += 1000

        await sweep_for(stalls, clock, int(TIMEOUT) * 3, read_some)
        assert steady.timed_out == 0 and steady in stalls
        assert stuck.timed_out == 1 and stuck not in stalls  # given up once, then forgotten

    asyncio.run(scenario())


def test_a_writer_with_nothing_left_waiting_is_forgotten_and_zero_watches_nothing() -> None:
    async def scenario() -> None:
        clock = ManualClock()
        stalls = WriteStalls(timeout=TIMEOUT, clock=clock.time)
        writer = Writer(unsent=300_000)
        stalls.paused(writer)
        writer.waiting = 0  # (it drained, or its connection went away, without a resume)
        await sweep_for(stalls, clock, 1)
        assert len(stalls) == 0
        disabled = WriteStalls(timeout=0.0, clock=clock.time)
        disabled.paused(Writer(unsent=300_000))
        assert len(disabled) == 0

    asyncio.run(scenario())
