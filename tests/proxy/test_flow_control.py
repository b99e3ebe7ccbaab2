"""Flow control: reading stops on the first reason and resumes when the last one is lifted."""

from __future__ import annotations

from proxy.http.flow_control import CONNECTING, PIPELINE_FULL, UPSTREAM_FULL, FlowControl


class Reads:
    def __init__(self) -> None:
        self.calls: list[str] = []

    def pause_reading(self) -> None:
        self.calls.append("pause")

    def resume_reading(self) -> None:
        self.calls.append("resume")


def test_transport_is_paused_once_and_resumed_after_the_last_reason() -> None:
    t = Reads()
    flow = FlowControl(t)
    flow.pause(UPSTREAM_FULL)
    flow.pause(PIPELINE_FULL)
    flow.resume(UPSTREAM_FULL)
    assert t.calls == ["pause"]
    flow.resume(PIPELINE_FULL)
    assert t.calls == ["pause", "resume"]


def test_resuming_a_reason_not_held_does_nothing() -> None:
    t = Reads()
    flow = FlowControl(t)
    flow.pause(CONNECTING)
    flow.resume(UPSTREAM_FULL)
    assert t.calls == ["pause"]
    assert flow.paused == CONNECTING


def test_several_reasons_lift_at_once() -> None:
    t = Reads()
    flow = FlowControl(t)
    flow.pause(UPSTREAM_FULL)
    flow.pause(CONNECTING)
    flow.resume(UPSTREAM_FULL | CONNECTING)
    assert t.calls == ["pause", "resume"]
    assert flow.paused == 0


def test_reasons_are_kept_without_a_transport() -> None:
    flow = FlowControl()
    flow.pause(PIPELINE_FULL)
    assert flow.paused == PIPELINE_FULL
    flow.resume(PIPELINE_FULL)
    assert flow.paused == 0
