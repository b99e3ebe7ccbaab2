"""Log a recurring problem at most once per interval, with how often it recurred meanwhile."""

from __future__ import annotations

from typing import Any

from proxy import defaults
from proxy.log import JsonLog


class RateLimited:
    """Log a recurring problem at most once per ``interval`` seconds, with how often it recurred."""

    def __init__(self, *, log: JsonLog, interval: float = defaults.ERROR_LOG_INTERVAL) -> None:
        self._log = log
        self._interval = interval
        self._last: dict[str, float] = {}
        self._suppressed: dict[str, int] = {}

    def error(self, now: float, msg: str, **attrs: Any) -> bool:
        last = self._last.get(msg)
        if last is not None and now - last < self._interval:
            self._suppressed[msg] = self._suppressed.get(msg, 0) + 1
            return False
        self._last[msg] = now
        repeats = self._suppressed.pop(msg, 0)
        if repeats:
            attrs["repeated"] = repeats
        self._log.error(msg, **attrs)
        return True
