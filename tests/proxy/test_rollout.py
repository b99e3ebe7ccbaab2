"""The canary split: kamal-proxy's FNV-1a hash against the percentage, allowlist first."""

from __future__ import annotations

from proxy.rollout import RolloutSplit, fnv1a32


def test_fnv1a32_matches_the_reference_vectors() -> None:
    assert fnv1a32(b"") == 0x811C9DC5
    assert fnv1a32(b"a") == 0xE40C292C
    assert fnv1a32(b"foobar") == 0xBF9CF968


def test_no_cookie_always_goes_to_the_active_targets() -> None:
    assert not RolloutSplit(percent=100).uses_rollout(None)
    assert not RolloutSplit(percent=100, allowlist=("",)).uses_rollout("")


def test_allowlisted_values_go_to_rollout_even_at_zero_percent() -> None:
    split = RolloutSplit(percent=0, allowlist=("alice", "bob"))
    assert split.uses_rollout("alice") and split.uses_rollout("bob")
    assert not split.uses_rollout("carol")


def test_sixty_percent_of_a_thousand_distinct_values_land_on_rollout() -> None:
    split = RolloutSplit(percent=60)
    chosen = [v for v in (f"{i:05d}" for i in range(1000)) if split.uses_rollout(v)]
    assert 575 <= len(chosen) <= 625
    # deterministic: the same values, every time, and a bigger split is a superset
    assert chosen == [v for v in (f"{i:05d}" for i in range(1000)) if split.uses_rollout(v)]
    wider = RolloutSplit(percent=80)
    assert all(wider.uses_rollout(v) for v in chosen)


def test_zero_and_hundred_percent_are_none_and_all() -> None:
    values = [f"user-{i}" for i in range(200)]
    assert not any(RolloutSplit(percent=0).uses_rollout(v) for v in values)
    assert all(RolloutSplit(percent=100).uses_rollout(v) for v in values)
