"""Router, target sets and health checks in-process: a ManualClock and a fake prober instead of
sleeping and HTTP. (The real daemon's deploys are in test_deploys.py.)"""

from __future__ import annotations

import asyncio
import random
from pathlib import Path

from proxy.health import HealthChecker
from proxy.lifecycle import TargetState
from proxy.options import HealthCheckConfig
from proxy.targets import TargetSet
from tests.proxy.control_plane import CapturedLog, ControlPlane, FakeProbe, deploy, run
from tests.proxy.manual_clock import ManualClock, settle

SECOND = 1_000_000_000


class InFlight:
    """A request in flight to a target, as the drain sees it."""

    def __init__(self, *, tunnel: bool = False) -> None:
        self.is_tunnel = tunnel
        self.cancelled = False

    def cancel_for_drain(self) -> None:
        self.cancelled = True


def test_health_gated_deploy_swaps_in_once_the_checks_pass(tmp_path: Path) -> None:
    async def scenario() -> None:
        plane = ControlPlane(tmp_path)
        plane.probe.status["web-1:3000"] = 503
        task = plane.start(deploy("app", "web-1:3000", hosts=["app.test"], deploy_timeout=30 * SECOND))
        await plane.settle()
        await plane.clock.advance(3)
        assert not task.done() and plane.backend_of("app.test") is None and plane.state_bytes() is None
        assert plane.probe.checks_of("web-1:3000") == 4  # at once, then one a second
        plane.probe.status["web-1:3000"] = 200
        await plane.clock.advance(1)
        assert (await task) == {"ok": True, "result": True}
        assert plane.backend_of("app.test") == ["web-1:3000"]
        assert b"web-1:3000" in (plane.state_bytes() or b"")
        await plane.clock.advance(10)  # a single target stops checking once healthy
        assert plane.probe.checks_of("web-1:3000") == 5
        await plane.close()

    run(scenario())


def test_failed_deploy_leaves_previous_targets_serving_and_state_intact(tmp_path: Path) -> None:
    async def scenario() -> None:
        plane = ControlPlane(tmp_path)
        await plane.ok(deploy("app", "web-1:3000", hosts=["app.test"]))
        state, listing = plane.state_bytes(), await plane.listing()
        plane.probe.status["web-2:3000"] = 0  # refused
        task = plane.start(deploy("app", "web-2:3000", hosts=["new.test"], deploy_timeout=600_000_000))
        await plane.settle()
        await plane.clock.advance(0.5)
        assert not task.done()
        await plane.clock.advance(0.2)
        assert await task == {
            "ok": False,
            "error": "target failed to become healthy within configured timeout (600ms)",
        }
        assert plane.state_bytes() == state and await plane.listing() == listing
        assert plane.backend_of("app.test") == ["web-1:3000"] and plane.backend_of("new.test") is None
        checks = plane.probe.checks_of("web-2:3000")
        await plane.clock.advance(5)  # the failed deploy's checks stopped
        assert plane.probe.checks_of("web-2:3000") == checks
        await plane.close()

    run(scenario())


def test_a_health_check_that_hangs_fails_at_its_timeout(tmp_path: Path) -> None:
    async def scenario() -> None:
        plane = ControlPlane(tmp_path)
        plane.probe.hang.add("web-1:3000")
        request = deploy("app", "web-1:3000", deploy_timeout=30 * SECOND)
        request["args"]["target_options"]["health_check_config"]["timeout"] = 2 * SECOND
        task = plane.start(request)
        await plane.settle()
        await plane.clock.advance(2)
        failures = plane.log.entries("Healthcheck failed")
        assert [e["error"] for e in failures] == ["request timed out"]
        plane.probe.hang.clear()
        await plane.clock.advance(1)
        assert (await task)["ok"] is True
        await plane.close()

    run(scenario())


def test_force_deploy_skips_the_health_wait(tmp_path: Path) -> None:
    async def scenario() -> None:
        plane = ControlPlane(tmp_path)
        plane.probe.status["web-1:3000"] = 500
        assert await plane.ok(deploy("app", "web-1:3000", force=True)) is True
        assert plane.backend_of() == ["web-1:3000"]
        await plane.close()

    run(scenario())


def test_redeploy_drains_old_targets_cutting_tunnels_at_once_and_the_rest_at_the_drain_timeout(
    tmp_path: Path,
) -> None:
    async def scenario() -> None:
        plane = ControlPlane(tmp_path)
        await plane.ok(deploy("app", "web-1:3000"))
        old = plane.router.routes.lookup("", "/")
        assert old is not None
        target = old[0].active.targets[0]
        request, tunnel = InFlight(), InFlight(tunnel=True)
        target.inflight.update((request, tunnel))
        task = plane.start(deploy("app", "web-2:3000", drain_timeout=5 * SECOND))
        await plane.settle()
        assert plane.backend_of() == ["web-2:3000"]  # swapped before the drain
        assert tunnel.cancelled and not request.cancelled
        assert target.state is TargetState.DRAINING and not task.done()
        await plane.clock.advance(4.9)
        assert not request.cancelled and not task.done()
        await plane.clock.advance(0.1)
        assert request.cancelled
        assert (await task)["ok"] is True
        assert target.state is TargetState.GONE
        await plane.close()

    run(scenario())


def test_a_drain_ends_as_soon_as_the_last_request_finishes(tmp_path: Path) -> None:
    async def scenario() -> None:
        plane = ControlPlane(tmp_path)
        await plane.ok(deploy("app", "web-1:3000"))
        found = plane.router.routes.lookup("", "/")
        assert found is not None
        target = found[0].active.targets[0]
        request = InFlight()
        target.inflight.add(request)
        task = plane.start(deploy("app", "web-2:3000", drain_timeout=30 * SECOND))
        await plane.settle()
        await plane.clock.advance(1)
        assert not task.done()
        target.request_done(request)
        await plane.settle()
        assert task.done() and not request.cancelled
        await plane.close()

    run(scenario())


def test_unhealthy_targets_leave_rotation_and_come_back(tmp_path: Path) -> None:
    async def scenario() -> None:
        clock = ManualClock(settle_rounds=50)
        probe = FakeProbe(clock)
        targets = TargetSet(
            addresses=("app-a:1", "app-b:1"), health=HealthCheckConfig(), log=CapturedLog(), service="app", clock=clock, probe=probe
        )  # fmt: skip
        targets.start_health_checks(slots=asyncio.Semaphore(10))
        await settle()
        assert [t.state for t in targets.targets] == [TargetState.HEALTHY, TargetState.HEALTHY]
        assert {targets.pick().address for _ in range(4)} == {"app-a:1", "app-b:1"}  # type: ignore[union-attr]
        probe.status["app-b:1"] = 500
        await clock.advance(1)
        assert targets.targets[1].state is TargetState.UNHEALTHY
        assert {targets.pick().address for _ in range(4)} == {"app-a:1"}  # type: ignore[union-attr]
        probe.status["app-a:1"] = 0
        await clock.advance(1)
        assert targets.pick() is None
        probe.status.clear()
        await clock.advance(1)
        assert [t.state for t in targets.targets] == [TargetState.HEALTHY, TargetState.HEALTHY]
        targets.stop_health_checks()

    run(scenario())


def test_restored_targets_start_checking_spread_over_the_first_interval(tmp_path: Path) -> None:
    async def scenario() -> None:
        clock = ManualClock(start=0.0, settle_rounds=50)
        probe = FakeProbe(clock)
        slots = asyncio.Semaphore(100)
        rng = random.Random(7)
        checkers = [
            HealthChecker(
                log=CapturedLog(),
                url=f"http://t{i}:80/up",
                host_header=f"t{i}",
                config=HealthCheckConfig(interval=2.0),
                report=lambda passed: None,
                stop_when_healthy=False,
                slots=slots,
                stagger=True,
                clock=clock,
                probe=probe,
                rng=rng,
            )
            for i in range(20)
        ]
        for checker in checkers:
            checker.start()
        await settle()
        assert probe.calls == []  # nobody checks at the same instant as a restart
        await clock.advance(2.0)
        first = sorted(t for t, _ in probe.calls)
        assert len(first) == 20 and 0 < first[0] and first[-1] <= 2.0
        assert len({round(t, 6) for t in first}) > 10
        for checker in checkers:
            checker.stop()

    run(scenario())


def test_pause_and_stop_return_once_requests_in_flight_settle(tmp_path: Path) -> None:
    async def scenario() -> None:
        plane = ControlPlane(tmp_path)
        await plane.ok(deploy("app", "web-1:3000"))
        found = plane.router.routes.lookup("", "/")
        assert found is not None
        service = found[0]
        request = InFlight()
        service.active.targets[0].inflight.add(request)
        task = plane.start({"command": "stop", "args": {"service": "app", "drain_timeout": 3 * SECOND}})
        await plane.settle()
        assert service.mode.label == "stopped" and b'"state":2' in (plane.state_bytes() or b"")
        assert not task.done()
        await plane.clock.advance(3)
        assert request.cancelled and (await task)["ok"] is True
        await plane.ok({"command": "resume", "args": {"service": "app"}})
        assert service.mode.label == "running"
        await plane.close()

    run(scenario())


def test_conflicting_hosts_are_rejected_and_changing_hosts_releases_the_old_ones(tmp_path: Path) -> None:
    async def scenario() -> None:
        plane = ControlPlane(tmp_path)
        await plane.ok(deploy("one", "app-a:1", hosts=["app.test"]))
        state = plane.state_bytes()
        reply = await plane.send(deploy("two", "app-b:1", hosts=["app.test"]))
        assert reply == {"ok": False, "error": "host settings conflict with another service"}
        assert plane.state_bytes() == state
        await plane.ok(deploy("two", "app-b:1", hosts=["*.test"]))  # exact vs wildcard: fine
        await plane.ok(deploy("one", "app-a:1", hosts=["new.test"]))
        await plane.ok(deploy("three", "app-c:1", hosts=["app.test"]))
        assert plane.backend_of("app.test") == ["app-c:1"] and plane.backend_of("x.test") == ["app-b:1"]
        await plane.close()

    run(scenario())


def test_a_long_deploy_does_not_block_other_commands(tmp_path: Path) -> None:
    async def scenario() -> None:
        plane = ControlPlane(tmp_path)
        plane.probe.status["app-a:1"] = 500
        task = plane.start(deploy("slow", "app-a:1", deploy_timeout=30 * SECOND))
        await plane.settle()
        await plane.ok(deploy("fast", "app-b:1", hosts=["fast.test"]))
        assert set((await plane.listing())["services"]) == {"fast"}
        assert not task.done()
        plane.probe.status.clear()
        await plane.clock.advance(1)
        assert (await task)["ok"] is True
        await plane.close()

    run(scenario())


def test_remove_deletes_routes_and_state(tmp_path: Path) -> None:
    async def scenario() -> None:
        plane = ControlPlane(tmp_path)
        await plane.ok(deploy("app", "app-a:1"))
        await plane.ok({"command": "remove", "args": {"service": "app"}})
        assert plane.backend_of() is None and plane.state_bytes() == b"[]\n"
        reply = await plane.send({"command": "remove", "args": {"service": "app"}})
        assert reply == {"ok": False, "error": "service not found"}
        await plane.close()

    run(scenario())
