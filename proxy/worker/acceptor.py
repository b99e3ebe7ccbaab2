"""Accepting connections: every pending one, each time the listening socket is readable.

uvloop's own server (``loop.create_server``) was measured to leave connections in the kernel's
accept queue for seconds while its loop is busy: with 500 keep-alive clients connecting at once
(wrk -c500), the last of them were accepted up to 6 s after they connected, and their first requests
made the p99 (3.4 s, max 4.9 s, while the median was 60 ms and every accepted connection was served
within 0.2 s). Accepting here, up to ACCEPT_BATCH per readiness of the socket, took the p99 to
0.19 to 0.21 s on the same machine (README, "Performance": "The c=500 tail").

Out of descriptors (EMFILE/ENFILE), the socket is not watched for ACCEPT_PAUSE seconds, so a full
process does not spin on a socket that stays readable; the worker's sweep logs the condition.
"""

from __future__ import annotations

import asyncio
import errno
import socket
from collections.abc import Callable

ACCEPT_BATCH = 1024  # connections accepted per readiness event, at most
ACCEPT_PAUSE = 0.1  # seconds without accepting after running out of descriptors
OUT_OF_DESCRIPTORS = frozenset({errno.EMFILE, errno.ENFILE, errno.ENOBUFS, errno.ENOMEM})


class Acceptor:
    def __init__(
        self,
        *,
        loop: asyncio.AbstractEventLoop,
        sock: socket.socket,
        protocol_factory: Callable[[], asyncio.Protocol],
    ) -> None:
        self._loop = loop
        self._sock = sock
        self._factory = protocol_factory
        self._fd = sock.fileno()
        self._pending: set[asyncio.Task[object]] = set()
        self._closed = False
        sock.setblocking(False)
        loop.add_reader(self._fd, self._accept)

    def close(self) -> None:
        """Stop accepting (the socket stays open: the control process owns it)."""
        if not self._closed:
            self._closed = True
            self._loop.remove_reader(self._fd)

    def _accept(self) -> None:
        sock = self._sock
        for _ in range(ACCEPT_BATCH):
            try:
                conn, _ = sock.accept()
            except (BlockingIOError, InterruptedError):
                return
            except OSError as exc:
                if exc.errno in OUT_OF_DESCRIPTORS:
                    self._loop.remove_reader(self._fd)
                    self._loop.call_later(ACCEPT_PAUSE, self._resume)
                return  # ECONNABORTED and the like: that client is gone; the next readiness goes on
            conn.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            task = self._loop.create_task(self._loop.connect_accepted_socket(self._factory, conn))
            self._pending.add(task)
            task.add_done_callback(self._pending.discard)

    def _resume(self) -> None:
        if not self._closed:
            self._loop.add_reader(self._fd, self._accept)
