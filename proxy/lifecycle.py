"""Lifecycles as tables: target health and service mode are enums plus a transition table.

Anything not in a table is an illegal move and raises, so a bug cannot silently invent a state.
"""

from __future__ import annotations

from enum import Enum


class IllegalTransition(RuntimeError):
    pass


class TargetState(Enum):
    ADDING = "adding"  # deployed, not yet passed a health check
    HEALTHY = "healthy"
    UNHEALTHY = "unhealthy"
    DRAINING = "draining"  # replaced: in-flight requests may finish, no new ones
    GONE = "gone"  # drained; closed


class TargetEvent(Enum):
    CHECK_PASSED = "check_passed"
    CHECK_FAILED = "check_failed"
    DRAIN = "drain"
    DRAINED = "drained"


_S, _E = TargetState, TargetEvent

TARGET_TRANSITIONS: dict[tuple[TargetState, TargetEvent], TargetState] = {
    (_S.ADDING, _E.CHECK_PASSED): _S.HEALTHY,
    (_S.ADDING, _E.CHECK_FAILED): _S.ADDING,
    (_S.HEALTHY, _E.CHECK_PASSED): _S.HEALTHY,
    (_S.HEALTHY, _E.CHECK_FAILED): _S.UNHEALTHY,
    (_S.UNHEALTHY, _E.CHECK_PASSED): _S.HEALTHY,
    (_S.UNHEALTHY, _E.CHECK_FAILED): _S.UNHEALTHY,
    (_S.ADDING, _E.DRAIN): _S.DRAINING,
    (_S.HEALTHY, _E.DRAIN): _S.DRAINING,
    (_S.UNHEALTHY, _E.DRAIN): _S.DRAINING,
    (_S.DRAINING, _E.DRAIN): _S.DRAINING,
    # A check that was already running when the drain began may still report.
    (_S.DRAINING, _E.CHECK_PASSED): _S.DRAINING,
    (_S.DRAINING, _E.CHECK_FAILED): _S.DRAINING,
    (_S.DRAINING, _E.DRAINED): _S.GONE,
}


def next_target_state(state: TargetState, event: TargetEvent) -> TargetState:
    try:
        return TARGET_TRANSITIONS[(state, event)]
    except KeyError:
        raise IllegalTransition(f"target cannot go from {state.value} on {event.value}") from None


class ServiceMode(Enum):
    RUNNING = 0
    PAUSED = 1
    STOPPED = 2

    @property
    def label(self) -> str:
        return self.name.lower()


class ModeEvent(Enum):
    PAUSE = "pause"
    STOP = "stop"
    RESUME = "resume"


_M, _ME = ServiceMode, ModeEvent

MODE_TRANSITIONS: dict[tuple[ServiceMode, ModeEvent], ServiceMode] = {
    (_M.RUNNING, _ME.PAUSE): _M.PAUSED,
    (_M.PAUSED, _ME.PAUSE): _M.PAUSED,
    (_M.STOPPED, _ME.PAUSE): _M.PAUSED,  # kamal-proxy pauses whatever the state
    (_M.RUNNING, _ME.STOP): _M.STOPPED,
    (_M.PAUSED, _ME.STOP): _M.STOPPED,
    (_M.STOPPED, _ME.STOP): _M.STOPPED,
    (_M.RUNNING, _ME.RESUME): _M.RUNNING,
    (_M.PAUSED, _ME.RESUME): _M.RUNNING,
    (_M.STOPPED, _ME.RESUME): _M.RUNNING,
}


def next_mode(mode: ServiceMode, event: ModeEvent) -> ServiceMode:
    try:
        return MODE_TRANSITIONS[(mode, event)]
    except KeyError:
        raise IllegalTransition(f"service cannot go from {mode.label} on {event.value}") from None
