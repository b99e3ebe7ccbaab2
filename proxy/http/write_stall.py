"""--write-timeout: a connection or HTTP/2 stream whose response bytes stop draining is given up.

A client that sends a request and never reads the answer would otherwise hold its connection, the
exchange and the target's connection forever: backpressure stops reading the target, and nothing
else runs out. nginx bounds this with ``send_timeout``; this is ours.

Only writers whose writes are paused are watched: an HTTP/1 or HTTP/2 connection whose transport
buffer passed its high-water mark (``pause_writing``), an HTTP/2 stream with response bytes queued
behind a closed flow-control window. A writer joins ``WriteStalls`` when it pauses and leaves when
it resumes, so a request whose writes never pause costs nothing here: no clock read, no attribute
write per piece of body.

Progress means bytes drained, not a pause/resume flip: once a second the idle sweep looks at each
watched writer and compares with the previous sweep. Progress is fewer bytes waiting (``unsent``:
the transport's buffer, a stream's queue) or more bytes taken by the peer (``delivered``: the
bytes the client's TCP acknowledged, from the kernel). The second one matters under TLS: uvloop's
TLS transport hands its encrypted bytes to the socket's transport in bursts, so its own buffer
does not shrink while a slow client reads the socket's. Progress moves the deadline out by
``timeout`` (a slow but steady reader is never cut); nothing left waiting means the writer is no
longer stalled (or is gone) and it is forgotten; no progress for ``timeout`` gives the writer up
(``write_timed_out``).

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
# struct tcp_info (linux/tcp.h): tcpi_bytes_acked, a u64 at this offset (Linux 4.1 and later)
_TCP_INFO: Final = getattr(socket, "TCP_INFO", 0)
_BYTES_ACKED_AT: Final = 120
_BYTES_ACKED: Final = struct.Struct("=Q")
UNKNOWN: Final = -1  # (``delivered`` not looked at yet)


class StallWatched(Protocol):
    """A connection or stream the sweep can watch (hashed by identity)."""

    def unsent(self) -> int:
        """Response bytes still waiting to go out (0: nothing waits, or the writer is gone)."""
        ...

    def delivered(self) -> int:
        """Bytes the peer has taken so far, a counter that only grows (0 where not measured)."""
        ...

    def write_timed_out(self) -> None:
        """No write progress for the timeout: give up (close the connection, reset the stream)."""
        ...


class _Stall:
    __slots__ = ("deadline", "delivered", "unsent")

    def __init__(self, *, deadline: float, unsent: int) -> None:
        self.deadline = deadline  # clock time: given up when no progress was seen by then
        self.unsent = unsent  # bytes waiting at the previous look
        self.delivered = UNKNOWN  # the peer's count at the previous sweep (read there, not on pause)


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
        """Move the deadline of each writer that made progress; give up those past it."""
        timeout = self.timeout
        stalls = self._stalls
        for writer, stall in list(stalls.items()):
            if stalls.get(writer) is not stall:
                continue  # forgotten (or given up) by an earlier writer's timeout in this sweep
            unsent = writer.unsent()
            if unsent <= 0:
                del stalls[writer]  # everything went out, or the connection is gone
                continue
            delivered = writer.delivered()
            progress = unsent < stall.unsent or (stall.delivered != UNKNOWN and delivered > stall.delivered)
            stall.unsent = unsent  # (more queued meanwhile: progress is measured from here)
            stall.delivered = delivered
            if progress:
                stall.deadline = now + timeout
            elif stall.deadline <= now:
                del stalls[writer]
                writer.write_timed_out()


def unsent_in(transport: asyncio.WriteTransport | None) -> int:
    """Bytes in ``transport``'s write buffer (0 once the connection is gone): a connection's
    ``unsent``."""
    return transport.get_write_buffer_size() if transport is not None else 0


def bytes_acked(transport: asyncio.BaseTransport | None) -> int:
    """The bytes the peer's TCP acknowledged on ``transport``'s socket (from ``TCP_INFO``), or 0
    where that is not known (the connection gone, no socket, not Linux, an old kernel): a
    connection's ``delivered``."""
    sock = transport.get_extra_info("socket") if transport is not None else None
    if sock is None or not _TCP_INFO:
        return 0
    try:
        info = sock.getsockopt(socket.IPPROTO_TCP, _TCP_INFO, _BYTES_ACKED_AT + _BYTES_ACKED.size)
    except OSError:
        return 0
    if len(info) < _BYTES_ACKED_AT + _BYTES_ACKED.size:
        return 0
    return int(_BYTES_ACKED.unpack_from(info, _BYTES_ACKED_AT)[0])


def reset_on_close(transport: asyncio.BaseTransport) -> None:
    """Closing or aborting ``transport`` will send a TCP reset: its buffered bytes are dropped at
    once, by the kernel too."""
    sock = transport.get_extra_info("socket")
    if sock is not None:
        try:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, _LINGER_RESET)
        except OSError:
            pass  # (already closed underneath: the abort that follows is all there is to do)
