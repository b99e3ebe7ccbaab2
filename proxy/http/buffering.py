"""Body buffers for --buffer-requests / --buffer-responses: memory first, then a temp file.

The first ``memory`` bytes stay in RAM; the rest spills to an anonymous temp file named like
kamal-proxy's (`$TMPDIR/proxy-buffer-*`), removed as soon as it is closed. ``limit`` (> 0) caps
the total: ``write`` returns False once it would be exceeded, and keeps nothing past the limit.
Once written, the body is forwarded with ``read``: one bounded slice at a time, at the pace of
whoever takes it, so a spilled body never comes back into memory whole.
"""

from __future__ import annotations

import tempfile
from typing import IO

READ_CHUNK = 64 * 1024  # the slice a spilled body is read back and forwarded in


class SpoolBuffer:
    __slots__ = ("_file", "_memory", "_next", "_parts", "_reading", "limit", "size")

    def __init__(self, *, memory: int, limit: int) -> None:
        self._memory = memory
        self.limit = limit
        self.size = 0
        self._parts: list[bytes] = []
        self._file: IO[bytes] | None = None
        self._next = 0  # the next memory part ``read`` returns
        self._reading = False  # the file was rewound for ``read``

    def write(self, data: bytes) -> bool:
        size = self.size + len(data)
        if self.limit > 0 and size > self.limit:
            return False
        self.size = size
        if self._file is None and size <= self._memory:
            self._parts.append(data)
            return True
        if self._file is None:
            self._file = tempfile.TemporaryFile(prefix="proxy-buffer-")
        self._file.write(data)
        return True

    @property
    def spilled(self) -> bool:
        return self._file is not None

    def read(self) -> bytes:
        """The next piece of what was written (a memory part, else at most READ_CHUNK bytes of the
        file); b"" at the end. Only once the writing is over."""
        parts = self._parts
        i = self._next
        if i < len(parts):
            self._next = i + 1
            piece = parts[i]
            parts[i] = b""  # forwarded: not held twice
            return piece
        file = self._file
        if file is None:
            return b""
        if not self._reading:
            self._reading = True
            file.seek(0)
        return file.read(READ_CHUNK)

    def close(self) -> None:
        self._parts = []
        if self._file is not None:
            self._file.close()
            self._file = None
