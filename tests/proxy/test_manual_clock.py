"""The test clock itself: sleepers wake in deadline order, only when time is advanced past them."""

from __future__ import annotations

import asyncio

from proxy.clock import LOOP_CLOCK
from tests.proxy.manual_clock import ManualClock


def test_sleepers_wake_in_deadline_order_only_when_advanced() -> None:
    async def scenario() -> list[str]:
        clock = ManualClock()
        woke: list[str] = []

        async def sleeper(name: str, seconds: float) -> None:
            await clock.sleep(seconds)
            woke.append(f"{name}@{clock.time() - 1000.0:g}")

        tasks = [asyncio.create_task(sleeper("b", 2)), asyncio.create_task(sleeper("a", 1))]
        await clock.advance(0)
        assert woke == [] and clock.sleepers == 2
        await clock.advance(1.5)
        assert woke == ["a@1"]
        await clock.advance(10)
        await asyncio.gather(*tasks)
        return woke

    assert asyncio.run(scenario()) == ["a@1", "b@2"]


def test_loop_clock_reads_the_running_loop() -> None:
    async def scenario() -> bool:
        before = asyncio.get_running_loop().time()
        now = LOOP_CLOCK.time()
        await LOOP_CLOCK.sleep(0)
        return before <= now <= asyncio.get_running_loop().time()

    assert asyncio.run(scenario())
