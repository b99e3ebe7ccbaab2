"""The control socket: one JSON request and one JSON reply per connection, over a Unix socket.

Requests are served concurrently (a deploy waiting for health checks does not block `list`).
The socket file is created with mode 0600; a stale file at the path is replaced.
"""

from __future__ import annotations

import asyncio
import json
import os
import socket
import tempfile
from collections.abc import Awaitable, Callable, Mapping
from pathlib import Path
from typing import Any

from proxy import defaults
from proxy.commands import Command, CommandError, decode_request, encode_request

MAX_REQUEST = 1 << 20

Handler = Callable[[Command], Awaitable[Any]]


class CallError(Exception):
    """A failed call; the message is what the CLI prints after `Error: `."""


class DialError(CallError):
    """The socket could not be connected to (kamal-proxy's `dial unix …` error); ``no_daemon`` when
    nothing listens there (no socket file, or connection refused)."""

    def __init__(self, message: str, *, path: Path, no_daemon: bool) -> None:
        super().__init__(message)
        self.path = path
        self.no_daemon = no_daemon


def socket_path(environ: Mapping[str, str] | None = None) -> Path:
    env = os.environ if environ is None else environ
    explicit = env.get("KAMAL_PROXY_SOCKET")
    if explicit:
        return Path(explicit)
    runtime = env.get("XDG_RUNTIME_DIR")
    if runtime:
        return Path(runtime) / defaults.SOCKET_NAME
    return Path(env.get("TMPDIR") or tempfile.gettempdir()) / defaults.SOCKET_NAME


class ControlServer:
    def __init__(self, *, path: Path, handler: Handler, errors: tuple[type[Exception], ...]) -> None:
        self._path = path
        self._handler = handler
        self._errors = errors
        self._server: asyncio.AbstractServer | None = None
        self._tasks: set[asyncio.Task[None]] = set()

    async def start(self) -> None:
        try:
            self._path.unlink()
        except FileNotFoundError:
            pass
        self._path.parent.mkdir(parents=True, exist_ok=True)
        old_umask = os.umask(0o177)
        try:
            self._server = await asyncio.start_unix_server(self._serve, path=str(self._path))
        finally:
            os.umask(old_umask)
        os.chmod(self._path, 0o600)

    async def close(self) -> None:
        if self._server is not None:
            self._server.close()
            await self._server.wait_closed()
        for task in list(self._tasks):
            task.cancel()
        try:
            self._path.unlink()
        except FileNotFoundError:
            pass

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        if task is not None:
            self._tasks.add(task)
        try:
            reply = await self._reply(reader)
            writer.write(json.dumps(reply).encode() + b"\n")
            await writer.drain()
        except (ConnectionError, asyncio.CancelledError):
            pass
        finally:
            if task is not None:
                self._tasks.discard(task)
            writer.close()

    async def _reply(self, reader: asyncio.StreamReader) -> dict[str, Any]:
        try:
            line = await reader.readuntil(b"\n")
        except (asyncio.IncompleteReadError, asyncio.LimitOverrunError):
            return {"ok": False, "error": "incomplete or oversized request"}
        try:
            command = decode_request(json.loads(line))
        except (ValueError, CommandError) as exc:
            return {"ok": False, "error": str(exc)}
        try:
            result = await self._handler(command)
        except self._errors as exc:
            return {"ok": False, "error": str(exc)}
        return {"ok": True, "result": result}


def call(command: Command, *, path: Path | None = None, timeout: float | None = None) -> Any:
    """Send one command and wait for its reply (blocking; the CLI's one call)."""
    path = path or socket_path()
    data = json.dumps(encode_request(command)).encode() + b"\n"
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as sock:
        sock.settimeout(timeout)
        try:
            sock.connect(str(path))
        except OSError as exc:
            raise DialError(
                f"dial unix {path}: connect: {_reason(exc)}",
                path=path,
                no_daemon=isinstance(exc, FileNotFoundError | ConnectionRefusedError),
            ) from None
        sock.sendall(data)
        chunks = []
        while True:
            piece = sock.recv(65536)
            if not piece:
                break
            chunks.append(piece)
    try:
        reply = json.loads(b"".join(chunks))
    except ValueError:
        raise CallError("unexpected EOF") from None
    if not reply.get("ok"):
        raise CallError(str(reply.get("error", "unknown error")))
    return reply.get("result")


def _reason(exc: OSError) -> str:
    if isinstance(exc, FileNotFoundError):
        return "no such file or directory"
    if isinstance(exc, ConnectionRefusedError):
        return "connection refused"
    if isinstance(exc, PermissionError):
        return "permission denied"
    return exc.strerror or str(exc)
