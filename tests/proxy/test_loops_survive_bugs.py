"""The long-lived loops between the control process and its workers outlive a bug in one item.

A worker's timeout sweep runs every timeout of that worker; the control process's reader of a
worker's messages is what notices the worker exit and replaces it. Before, an unexpected exception
ended either loop silently: timeouts stopped for the whole worker, or the worker was never read,
reaped or replaced again. Now the sweep logs and sweeps again on the next tick, the worker's reader
logs and ends the worker (a fresh one gets the whole state), and the control process's reader logs
and replaces the worker.
"""

from __future__ import annotations

import asyncio

import pytest

from proxy import ipc
from proxy.controller.fleet import WorkerFleet, WorkerSlot
from proxy.worker.process import Worker, WorkerConfig
from tests.proxy.harness import CapturedLog
from tests.proxy.test_ipc import worker_config


def no_process(index: int, fd: int, fds: tuple[int, ...], tls_fds: tuple[int, ...]) -> WorkerConfig:
    raise AssertionError("no worker process is started")


def fed(*messages: ipc.Message) -> asyncio.StreamReader:
    reader = asyncio.StreamReader()
    for message in messages:
        reader.feed_data(ipc.encode(message))
    reader.feed_eof()
    return reader


def broken() -> None:
    raise RuntimeError("a bug")


def test_a_sweep_that_raises_is_logged_and_the_next_one_still_runs() -> None:
    log = CapturedLog()
    worker = Worker(config=worker_config(), log=log)
    calls: list[str] = []

    async def scenario() -> None:
        worker._swept(broken)
        worker._swept(lambda: calls.append("swept"))

    asyncio.run(scenario())
    errors = [e for e in log.entries if e["msg"] == "Timeout sweep failed"]
    assert len(errors) == 1 and errors[0]["error"] == "RuntimeError: a bug" and errors[0]["worker"] == 1
    assert calls == ["swept"]


def test_a_worker_that_fails_applying_a_message_logs_it_and_ends_its_reader(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    log = CapturedLog()
    worker = Worker(config=worker_config(), log=log)
    handled: list[ipc.Message] = []

    def handle(message: ipc.Message) -> None:
        handled.append(message)
        raise RuntimeError("a bug")

    monkeypatch.setattr(worker, "_handle", handle)

    async def scenario() -> None:
        await worker._follow(fed(ipc.Sync(request=1), ipc.Sync(request=2)))

    asyncio.run(scenario())  # returns: the worker then exits, and the control process replaces it
    assert handled == [ipc.Sync(request=1)]
    errors = [e for e in log.entries if e["msg"] == "Unable to apply a message from the control process"]
    assert [e["error"] for e in errors] == ["RuntimeError: a bug"]


def test_a_worker_message_the_control_process_fails_on_replaces_the_worker(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    log = CapturedLog()
    fleet = WorkerFleet(count=1, log=log, worker_config=no_process)
    slot = fleet.slots[0]
    killed: list[int] = []
    exited: list[WorkerSlot] = []

    def received(slot: WorkerSlot, message: ipc.Message) -> None:
        raise RuntimeError("a bug")

    async def on_exit(slot: WorkerSlot) -> None:
        exited.append(slot)

    monkeypatch.setattr(fleet, "_received", received)
    monkeypatch.setattr(fleet, "_exited", on_exit)
    monkeypatch.setattr(slot, "kill", lambda: killed.append(slot.index))

    async def scenario() -> None:
        await fleet._follow(slot, fed(ipc.Applied(version=1)))

    asyncio.run(scenario())
    assert killed == [0] and exited == [slot]  # reaped and replaced, not left unread
    errors = [e for e in log.entries if e["msg"] == "Unable to handle a worker's message; replacing it"]
    assert [e["error"] for e in errors] == ["RuntimeError: a bug"]
