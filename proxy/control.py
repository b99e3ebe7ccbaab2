"""The control socket: one JSON request and one JSON reply per connection, over a Unix socket.

Requests are served concurrently (a deploy waiting for health checks does not block `list`).
A request is read with a bound on its size (``MAX_REQUEST``) and on the time it may take
(``defaults.CONTROL_READ_TIMEOUT``); whatever goes wrong with one request (bad JSON, a wrong field,
a failing handler, even a bug) is answered with ``{"ok": false, "error": ...}`` and the server goes
on serving. The socket file is created with mode 0600; a stale file at the path (nobody listening)
is replaced, but a daemon that answers on it is never taken over (``DaemonRunning``).
"""

from __future__ import annotations

import asyncio
import fcntl
import json
import os
import socket
import tempfile
from collections.abc import Awaitable, Callable, Mapping
from pathlib import Path
from typing import Any

from proxy import defaults
from proxy.commands import Command, CommandError, decode_request, encode_request
from proxy.log import JsonLog
from proxy.schema import loads

MAX_REQUEST = defaults.CONTROL_MAX_REQUEST

Handler = Callable[[Command], Awaitable[Any]]


class DaemonRunning(Exception):
    """Another daemon answers on the control socket."""


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


def claim_socket(path: Path) -> int:
    """Take the daemon lock next to the control socket (``<socket>.lock``, an exclusive ``flock``)
    and return its descriptor, to keep open for the daemon's life: two ``run``s started at once
    cannot both pass ``check_not_running`` (the second would otherwise share the SO_REUSEPORT
    ports and take the socket over). The kernel drops the lock when the process dies, however
    it dies, so a stale lock file never blocks a restart. DaemonRunning when another holds it."""
    lock = path.with_name(path.name + ".lock")
    lock.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(lock, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        os.close(fd)
        raise DaemonRunning(f"another kamal-proxy is already running on {path}") from None
    except BaseException:
        os.close(fd)
        raise
    return fd


def check_not_running(path: Path) -> None:
    """Raise DaemonRunning when something accepts connections on ``path``; a stale file is fine."""
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as sock:
        sock.settimeout(defaults.CONTROL_PROBE_TIMEOUT)
        try:
            sock.connect(str(path))
        except OSError:
            return  # no file, not a socket, or nobody listening: ours to (re)create
    raise DaemonRunning(f"another kamal-proxy is already running on {path}")


class ControlServer:
    def __init__(
        self,
        *,
        path: Path,
        handler: Handler,
        errors: tuple[type[Exception], ...],
        log: JsonLog | None = None,
        read_timeout: float = defaults.CONTROL_READ_TIMEOUT,
        max_request: int = MAX_REQUEST,
    ) -> None:
        self._path = path
        self._handler = handler
        self._errors = errors
        self._log = log
        self._read_timeout = read_timeout
        self._max_request = max_request
        self._server: asyncio.AbstractServer | None = None
        self._inode = -1
        self._tasks: set[asyncio.Task[None]] = set()

    async def start(self) -> None:
        check_not_running(self._path)
        try:
            self._path.unlink()
        except FileNotFoundError:
            pass
        self._path.parent.mkdir(parents=True, exist_ok=True)
        old_umask = os.umask(0o177)
        try:
            self._server = await asyncio.start_unix_server(
                self._serve, path=str(self._path), limit=self._max_request
            )
        finally:
            os.umask(old_umask)
        os.chmod(self._path, 0o600)
        self._inode = self._path.stat().st_ino

    async def close(self) -> None:
        if self._server is not None:
            self._server.close()
            await self._server.wait_closed()
        for task in list(self._tasks):
            task.cancel()
        try:
            if self._path.stat().st_ino == self._inode:  # only our own socket, never a successor's
                self._path.unlink()
        except FileNotFoundError:
            pass

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        if task is not None:
            self._tasks.add(task)
        try:
            reply = await self.answer(reader)
            writer.write(_encode_reply(reply))
            await asyncio.wait_for(writer.drain(), self._read_timeout)
        except (ConnectionError, TimeoutError, asyncio.CancelledError):
            pass
        finally:
            if task is not None:
                self._tasks.discard(task)
            writer.close()

    async def answer(self, reader: asyncio.StreamReader) -> dict[str, Any]:
        """Read one request from ``reader`` and carry it out: the reply, never an exception."""
        try:
            async with asyncio.timeout(self._read_timeout):
                line = await reader.readuntil(b"\n")
        except TimeoutError:
            return _error("timed out reading the request")
        except asyncio.LimitOverrunError:
            return _error(f"request larger than {self._max_request} bytes")
        except asyncio.IncompleteReadError:
            return _error("incomplete request (no newline before the end)")
        try:
            message = loads(line)
        except (ValueError, UnicodeDecodeError) as exc:
            return _error(f"invalid JSON: {exc}")
        name = "?"
        try:
            command = decode_request(message)
            name = command.name
            result = await self._handler(command)
        except CommandError as exc:
            return _error(str(exc))
        except self._errors as exc:
            return _error(str(exc))
        except Exception as exc:  # a bug must cost one reply, never the control plane
            if self._log is not None:
                self._log.error("Control command failed", command=name, error=f"{type(exc).__name__}: {exc}")
            return _error(f"internal error: {type(exc).__name__}: {exc}")
        return {"ok": True, "result": result}


def _error(message: str) -> dict[str, Any]:
    return {"ok": False, "error": message}


def _encode_reply(reply: dict[str, Any]) -> bytes:
    try:
        return json.dumps(reply, allow_nan=False).encode() + b"\n"
    except (TypeError, ValueError) as exc:
        return json.dumps(_error(f"internal error: unencodable reply: {exc}")).encode() + b"\n"


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
