"""What a person sees: headings, one line per step and host with elapsed time, live waits, summary.

Levels: quiet (errors only), normal, verbose (every command and its output). Every line passes through
the secrets redactor.
"""

from __future__ import annotations

import contextlib
import sys
import threading
import time
from collections.abc import Iterator
from typing import TextIO

from deployer.secrets import REDACTOR

QUIET, NORMAL, VERBOSE = 0, 1, 2


class Output:
    def __init__(
        self,
        level: int = NORMAL,
        stream: TextIO | None = None,
        err: TextIO | None = None,
        tty: bool | None = None,
    ) -> None:
        self.level = level
        self.stream = stream or sys.stdout
        self.err = err or sys.stderr
        self.tty = self.stream.isatty() if tty is None else tty
        self.started = time.monotonic()
        self._lock = threading.Lock()

    # -- primitives ----------------------------------------------------------------------------------
    def _color(self, text: str, code: str) -> str:
        return f"\x1b[{code}m{text}\x1b[0m" if self.tty else text

    def _write(self, text: str, stream: TextIO | None = None) -> None:
        with self._lock:
            target = stream or self.stream
            target.write(REDACTOR(text) + "\n")
            target.flush()

    def say(self, heading: str) -> None:
        """A step heading (Kamal's magenta ``say``)."""
        if self.level >= NORMAL:
            self._write(self._color(heading, "35"))

    def info(self, message: str, host: str | None = None) -> None:
        if self.level >= NORMAL:
            self._write(f"  INFO {f'[{host}] ' if host else ''}{message}")

    def debug(self, message: str, host: str | None = None) -> None:
        if self.level >= VERBOSE:
            self._write(self._color(f" DEBUG {f'[{host}] ' if host else ''}{message}", "2"))

    def warn(self, message: str) -> None:
        if self.level >= NORMAL:
            self._write(self._color(f"  WARN {message}", "33"), self.err)

    def error(self, message: str) -> None:
        self._write(self._color(f"  ERROR {message}", "31"), self.err)

    def data(self, text: str) -> None:
        """Command results the user asked for (status tables, logs): shown even with -q."""
        self._write(text.rstrip("\n"))

    # -- steps ---------------------------------------------------------------------------------------
    @contextlib.contextmanager
    def step(self, message: str, host: str | None = None) -> Iterator[None]:
        """Print ``message`` when done, with the elapsed time; on failure print it as failed."""
        start = time.monotonic()
        try:
            yield
        except BaseException:
            self.info(f"{message} failed after {time.monotonic() - start:.1f}s", host)
            raise
        self.info(f"{message} ({time.monotonic() - start:.1f}s)", host)

    def waiting(self, message: str, host: str | None = None, every: float = 5.0) -> Waiting:
        """A live indication while something blocks (e.g. the proxy's health check)."""
        return Waiting(self, message, host, every)

    def runtime(self) -> float:
        return time.monotonic() - self.started

    def summary(self, text: str) -> None:
        if self.level >= NORMAL:
            self._write(self._color(f"  {text}", "32"))


class Waiting:
    """Prints ``waiting for …`` lines (or updates one line on a TTY) until the block finishes."""

    def __init__(self, out: Output, message: str, host: str | None, every: float) -> None:
        self.out, self.message, self.host, self.every = out, message, host, every
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self.start = 0.0

    def _tick(self) -> None:
        while not self._stop.wait(self.every):
            elapsed = time.monotonic() - self.start
            self.out.info(f"{self.message}… {elapsed:.0f}s", self.host)

    def __enter__(self) -> Waiting:
        self.start = time.monotonic()
        if self.out.level >= NORMAL:
            self._thread = threading.Thread(target=self._tick, daemon=True)
            self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        if self._thread:
            self._thread.join()
