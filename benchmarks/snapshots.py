"""What a routing change costs on a big proxy, in-process (not part of `make bench`):

  python -m benchmarks.snapshots                       # 10,000 services, 5 repetitions of each change
  python -m benchmarks.snapshots -n 2000 --profile deploy   # cProfile of one phase (sorted by cumtime)

The control process's Router and WorkerFleet run for real; the worker is a WorkerRoutes fed the
fleet's frames in the same process (decoded and applied as the worker process does, and answered:
Applied, Drained), so the two sides are timed apart:

- control: the command's own time (Router + state file + encoding the snapshot), worker time excluded;
- worker: decoding the frame + applying it (what blocks a worker's event loop).

Every service has two hosts, TLS, a canonical host, buffering and logged headers; two targets.
Changes measured: the restore of all of them (the first, whole snapshot), a deploy of one service,
a health flip of one target, a pause, a resume, a remove.
"""

from __future__ import annotations

import argparse
import asyncio
import cProfile
import json
import pstats
import statistics
import tempfile
import time
from collections.abc import Callable, Coroutine
from pathlib import Path
from typing import Any

from proxy import ipc
from proxy.commands import DeployCommand, PauseCommand, RemoveCommand, ResumeCommand
from proxy.controller.fleet import SlotState, WorkerFleet
from proxy.lifecycle import TargetEvent
from proxy.log import JsonLog
from proxy.options import DeploymentOptions, ServiceOptions, TargetOptions
from proxy.router import Router
from proxy.state import SavedService, StateFile
from proxy.worker.process import WorkerConfig
from proxy.worker.routes import WorkerRoutes


def saved_service(i: int) -> SavedService:
    return SavedService(
        name=f"s{i}",
        options=ServiceOptions(
            hosts=(f"s{i}.example.com", f"www.s{i}.example.com"),
            tls_enabled=True,
            canonical_host=f"s{i}.example.com",
            exclude_metrics_paths=("/up",),
        ).normalized(),
        target_options=TargetOptions(
            buffer_requests=True,
            buffer_responses=True,
            log_request_headers=("X-Request-Start",),
            log_response_headers=("X-Runtime",),
        ),
        active_targets=(f"10.0.{i // 250}.{i % 250}:3000", f"10.1.{i // 250}.{i % 250}:3000"),
        pause_timeout=30.0,
    )


class InProcessWorker:
    """The fleet's slot writer: each frame is decoded and applied here, as a worker process would."""

    def __init__(self, fleet: WorkerFleet, log: JsonLog) -> None:
        self.fleet = fleet
        self.routes = WorkerRoutes(log=log)
        self.reader = ipc.FrameReader()
        self.seconds = 0.0  # decode + apply, since the last reset
        self.frame_bytes = 0
        self.profile: cProfile.Profile | None = None

    def is_closing(self) -> bool:
        return False

    def write(self, frame: bytes) -> None:
        self.frame_bytes += len(frame)
        if self.profile is not None:
            self.profile.enable()
        start = time.perf_counter()
        messages = self.reader.feed(frame)
        replies: list[ipc.ToControl] = []
        for message in messages:
            if isinstance(message, ipc.Snapshot):
                self.routes.apply(message)
                replies.append(ipc.Applied(version=self.routes.version))
            elif isinstance(message, ipc.Drain | ipc.Settle):
                replies.append(ipc.Drained(request=message.request, inflight=0, cancelled=0))
        self.seconds += time.perf_counter() - start
        if self.profile is not None:
            self.profile.disable()
        slot = self.fleet.slots[0]
        loop = asyncio.get_running_loop()
        for reply in replies:  # as the reply would arrive: later, on the control process's loop
            loop.call_soon(self.fleet._received, slot, reply)


def no_config(index: int, fd: int, fds: tuple[int, ...], tls_fds: tuple[int, ...]) -> WorkerConfig:
    raise AssertionError("no worker process is started")


Phase = Callable[[int], Coroutine[Any, Any, None]]


def changes(router: Router, fleet: WorkerFleet, reps: int) -> dict[str, tuple[Phase, int]]:
    """Each change measured, and how many times."""
    force = DeploymentOptions(force=True, drain_timeout=1.0)

    async def restore(rep: int) -> None:
        router.restore()
        await fleet.applied(fleet.version)

    async def deploy(rep: int) -> None:
        saved = saved_service(rep)
        await router.deploy(
            DeployCommand(
                service=saved.name,
                targets=(f"10.9.0.{rep}:3000", f"10.9.1.{rep}:3000"),
                service_options=saved.options,
                target_options=saved.target_options,
                deployment_options=force,
            )
        )

    async def health(rep: int) -> None:
        target = router.services()[f"s{100 + rep}"].active.targets[0]
        target.apply(TargetEvent.CHECK_FAILED)
        version = fleet.version
        while fleet.version == version:  # the Router publishes health on the next loop iteration
            await asyncio.sleep(0)
        await fleet.applied(fleet.version)

    async def pause(rep: int) -> None:
        await router.pause(PauseCommand(service=f"s{200 + rep}", drain_timeout=1.0, pause_timeout=30.0))

    async def resume(rep: int) -> None:
        await router.resume(ResumeCommand(service=f"s{200 + rep}"))

    async def remove(rep: int) -> None:
        await router.remove(RemoveCommand(service=f"s{300 + rep}"))

    return {
        "restore": (restore, 1),
        "deploy": (deploy, reps),
        "health": (health, reps),
        "pause": (pause, reps),
        "resume": (resume, reps),
        "remove": (remove, reps),
    }


async def measure(n: int, reps: int, profile: str | None) -> dict[str, dict[str, float]]:
    log = JsonLog(fd=-1)
    directory = Path(tempfile.mkdtemp(prefix="snapshots-"))
    state = StateFile(path=directory / "state.json")
    state.save([saved_service(i) for i in range(n)])
    fleet = WorkerFleet(count=1, log=log, worker_config=no_config)
    worker = InProcessWorker(fleet, log)
    slot = fleet.slots[0]
    slot.writer = worker  # type: ignore[assignment]
    slot.state = SlotState.READY
    router = Router(log=log, state=state, dataplane=fleet)
    phases = changes(router, fleet, reps)
    results: dict[str, dict[str, float]] = {}
    for name, (phase, count) in phases.items():
        control: list[float] = []
        blocked: list[float] = []
        sizes: list[float] = []
        control_profile = cProfile.Profile() if name == profile else None
        worker.profile = cProfile.Profile() if name == profile else None
        for rep in range(count):
            worker.seconds = 0.0
            worker.frame_bytes = 0
            start = time.perf_counter()
            if control_profile is not None:
                control_profile.enable()
            await phase(rep)
            if control_profile is not None:
                control_profile.disable()
            control.append(time.perf_counter() - start - worker.seconds)
            blocked.append(worker.seconds)
            sizes.append(worker.frame_bytes)
        results[name] = {
            "control_ms": statistics.median(control) * 1000,
            "worker_ms": statistics.median(blocked) * 1000,
            "frame_kB": statistics.median(sizes) / 1000,
        }
        if control_profile is not None and worker.profile is not None:
            for title, prof in (
                ("control process (includes the worker)", control_profile),
                ("worker", worker.profile),
            ):
                print(f"--- cProfile {name}: {title}")
                pstats.Stats(prof).sort_stats("cumulative").print_stats(25)
    await router.close()
    return results


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("-n", type=int, default=10_000, help="services")
    ap.add_argument("--reps", type=int, default=5, help="repetitions of each change (medians reported)")
    ap.add_argument("--profile", choices=("restore", "deploy", "health", "pause", "resume", "remove"))
    ap.add_argument("--json", action="store_true")
    args = ap.parse_args()
    results = asyncio.run(measure(args.n, args.reps, args.profile))
    if args.json:
        print(json.dumps(results, indent=2))
        return
    print(f"{args.n} services, medians of {args.reps} (restore: 1)")
    print(f"{'change':<10} {'control ms':>11} {'worker ms':>10} {'frame kB':>9}")
    for name, row in results.items():
        print(f"{name:<10} {row['control_ms']:>11.1f} {row['worker_ms']:>10.1f} {row['frame_kB']:>9.1f}")


if __name__ == "__main__":
    main()
