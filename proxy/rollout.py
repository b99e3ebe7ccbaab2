"""The canary split (spec §3.8): which requests go to a service's rollout targets.

A request whose ``kamal-rollout`` cookie value is on the allowlist, or whose FNV-1a-32 hash falls at or
below ``percent``% of the 32-bit range, goes to the rollout targets; no cookie goes to the active ones.
The arithmetic is kamal-proxy's (``float64(0xFFFFFFFF) * percent / 100``, compared as float64), so a
user lands on the same side behind either proxy.
"""

from __future__ import annotations

from dataclasses import dataclass

MAX_ALLOWLIST = 1000
PERCENT_LIMIT = 1 << 31  # kamal-proxy does not range-check the percentage (a Go int); bounded here
_FNV_OFFSET = 0x811C9DC5
_FNV_PRIME = 0x01000193


def fnv1a32(data: bytes) -> int:
    h = _FNV_OFFSET
    for byte in data:
        h = ((h ^ byte) * _FNV_PRIME) & 0xFFFFFFFF
    return h


@dataclass(frozen=True, slots=True)
class RolloutSplit:
    """A service's split: ``percent`` of cookie values, plus an allowlist of values, go to rollout."""

    percent: int
    allowlist: tuple[str, ...] = ()

    @property
    def split_point(self) -> float:
        return float(0xFFFFFFFF) * (self.percent / 100.0)

    def uses_rollout(self, cookie_value: str | None) -> bool:
        if not cookie_value:
            return False
        if cookie_value in self.allowlist:
            return True
        return fnv1a32(cookie_value.encode()) <= self.split_point
