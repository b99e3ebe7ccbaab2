"""--write-timeout: a connection or HTTP/2 stream whose response bytes stop draining is given up.

A client that sends a request and never reads the answer would otherwise hold its connection, the
exchange and the target's connection forever: backpressure stops reading the target, and nothing
else runs out. nginx bounds this with ``send_timeout``; this is ours.

Only writers whose writes are paused are watched: an HTTP/1 or HTTP/2 connection whose transport
buffer passed its high-water mark (``pause_writing``), an HTTP/2 stream with response bytes queued
behind a closed flow-control window. A writer joins ``WriteStalls`` when it pauses and leaves when
it resumes, so a request whose writes never pause costs nothing here: no clock read, no attribute
write per piece of body.

Progress means bytes drained, not a pause/resume flip: once a second the idle sweep asks each
watched writer how many bytes still wait (``unsent``) and compares with the previous sweep. Fewer
is progress and the deadline moves out by ``timeout`` (a slow but steady reader is never cut);
none left means the writer is no longer stalled (or is gone) and it is forgotten; the same or more
for ``timeout`` gives the writer up (``write_timed_out``).

A connection given up is reset (``reset_on_close``: RST, as nginx's
``reset_timedout_connection``), not just closed: after a plain close the kernel keeps the unread
bytes (megabytes of socket buffer) and retries them against the closed window for minutes, and the
client never learns.
"""

from __future__ import annotations

import asyncio
import socket
import struct
from collections.abc import Callable
from typing import Final, Protocol

_LINGER_RESET: Final = struct.pack("ii", 1, 0)  # SO_LINGER on, 0 s: close() sends RST, drops the buffer


class StallWatched(Protocol):
    """A connection or stream the sweep can watch (hashed by identity)."""

    def unsent(self) -> int:
        """Response bytes still waiting to go out (0: nothing waits, or the writer is gone)."""
        ...

    def write_timed_out(self) -> None:
        """No write progress for the timeout: give up (close the connection, reset the stream)."""
        ...


class _Stall:
    __slots__ = ("deadline", "unsent")

    def __init__(self, *, deadline: float, unsent: int) -> None:
        self.deadline = deadline  # clock time: given up when no progress was seen by then
        self.unsent = unsent  # bytes waiting at the previous look


class WriteStalls:
    """The paused writers of one listener, and when each is given up."""

    def __init__(self, *, timeout: float, clock: Callable[[], float]) -> None:
        self.timeout = timeout  # seconds without progress; 0 (or less) watches nothing
        self._clock = clock
        self._stalls: dict[StallWatched, _Stall] = {}

    def __len__(self) -> int:
        return len(self._stalls)

    def __contains__(self, writer: object) -> bool:
        return writer in self._stalls

    def paused(self, writer: StallWatched) -> None:
        """``writer`` has bytes it cannot write now: watch it (from now, if not watched already)."""
        if self.timeout > 0 and writer not in self._stalls:
            self._stalls[writer] = _Stall(deadline=self._clock() + self.timeout, unsent=writer.unsent())

    def resumed(self, writer: StallWatched) -> None:
        """``writer`` can write again (its buffer drained below the low-water mark, its window opened)."""
        if self._stalls:
            self._stalls.pop(writer, None)

    def sweep(self, now: float) -> None:
        """Move the deadline of each writer that drained bytes; give up those past it."""
        timeout = self.timeout
        stalls = self._stalls
        for writer, stall in list(stalls.items()):
            if stalls.get(writer) is not stall:
                continue  # forgotten (or given up) by an earlier writer's timeout in this sweep
            unsent = writer.unsent()
            if unsent <= 0:
                del stalls[writer]  # everything went out, or the connection is gone
            elif unsent < stall.unsent:
                stall.unsent = unsent
                stall.deadline = now + timeout
            elif stall.deadline <= now:
                del stalls[writer]
                writer.write_timed_out()
            else:
                stall.unsent = unsent  # (more was queued: progress is measured from here)


def reset_on_close(transport: asyncio.BaseTransport) -> None:
    """Closing or aborting ``transport`` will send a TCP reset: its buffered bytes are dropped at
    once, by the kernel too."""
    sock = transport.get_extra_info("socket")
    if sock is not None:
        try:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, _LINGER_RESET)
        except OSError:
            pass  # (already closed underneath: the abort that follows is all there is to do)
