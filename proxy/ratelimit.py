"""Log a recurring problem at most once per interval, with how often it recurred meanwhile."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
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


def loop_error_handler(
    errors: RateLimited,
) -> Callable[[asyncio.AbstractEventLoop, dict[str, Any]], None]:
    """An event-loop exception handler that reports into the JSON log, rate-limited (asyncio reports
    failed accepts, among others, this way)."""

    def handle(loop: asyncio.AbstractEventLoop, context: dict[str, Any]) -> None:
        exc = context.get("exception")
        errors.error(
            loop.time(),
            "Event loop error",
            error=str(context.get("message", "")),
            exception=f"{type(exc).__name__}: {exc}" if exc is not None else None,
        )

    return handle
