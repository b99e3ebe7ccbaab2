"""The lifecycle tables: target health and service mode transitions."""

from __future__ import annotations

import pytest

from proxy.lifecycle import (
    MODE_TRANSITIONS,
    TARGET_TRANSITIONS,
    IllegalTransition,
    ModeEvent,
    ServiceMode,
    TargetEvent,
    TargetState,
    next_mode,
    next_target_state,
)

S, E = TargetState, TargetEvent


@pytest.mark.parametrize(
    ("state", "event", "after"),
    [
        (S.ADDING, E.CHECK_PASSED, S.HEALTHY),
        (S.ADDING, E.CHECK_FAILED, S.ADDING),
        (S.HEALTHY, E.CHECK_FAILED, S.UNHEALTHY),
        (S.UNHEALTHY, E.CHECK_PASSED, S.HEALTHY),
        (S.HEALTHY, E.DRAIN, S.DRAINING),
        (S.UNHEALTHY, E.DRAIN, S.DRAINING),
        (S.DRAINING, E.CHECK_PASSED, S.DRAINING),
        (S.DRAINING, E.DRAINED, S.GONE),
    ],
)
def test_target_transition_table(state: TargetState, event: TargetEvent, after: TargetState) -> None:
    assert next_target_state(state, event) is after


def test_target_moves_not_in_the_table_are_illegal() -> None:
    for state in TargetState:
        for event in TargetEvent:
            if (state, event) not in TARGET_TRANSITIONS:
                with pytest.raises(IllegalTransition):
                    next_target_state(state, event)
    with pytest.raises(IllegalTransition):
        next_target_state(S.GONE, E.CHECK_PASSED)
    with pytest.raises(IllegalTransition):
        next_target_state(S.HEALTHY, E.DRAINED)


def test_service_mode_table() -> None:
    M, ME = ServiceMode, ModeEvent
    assert next_mode(M.RUNNING, ME.PAUSE) is M.PAUSED
    assert next_mode(M.PAUSED, ME.RESUME) is M.RUNNING
    assert next_mode(M.PAUSED, ME.STOP) is M.STOPPED
    assert next_mode(M.STOPPED, ME.RESUME) is M.RUNNING
    assert next_mode(M.STOPPED, ME.PAUSE) is M.PAUSED
    assert next_mode(M.RUNNING, ME.RESUME) is M.RUNNING  # resume is idempotent
    assert set(MODE_TRANSITIONS) == {(m, e) for m in M for e in ME}
