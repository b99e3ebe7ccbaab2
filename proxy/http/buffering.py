"""Body buffers for --buffer-requests / --buffer-responses: memory first, then a temp file.

The first ``memory`` bytes stay in RAM; the rest spills to an anonymous temp file named like
kamal-proxy's (`$TMPDIR/proxy-buffer-*`), removed as soon as it is closed. ``limit`` (> 0) caps
the total: ``write`` returns False once it would be exceeded, and keeps nothing past the limit.
"""

from __future__ import annotations

import tempfile
from collections.abc import Iterator
from typing import IO

READ_CHUNK = 64 * 1024


class SpoolBuffer:
    __slots__ = ("_file", "_memory", "_parts", "limit", "size")

    def __init__(self, *, memory: int, limit: int) -> None:
        self._memory = memory
        self.limit = limit
        self.size = 0
        self._parts: list[bytes] = []
        self._file: IO[bytes] | None = None

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

    def chunks(self) -> Iterator[bytes]:
        """Everything written, in order: the memory part, then the file part in READ_CHUNK pieces."""
        yield from self._parts
        if self._file is not None:
            self._file.seek(0)
            while piece := self._file.read(READ_CHUNK):
                yield piece

    def close(self) -> None:
        self._parts = []
        if self._file is not None:
            self._file.close()
            self._file = None
