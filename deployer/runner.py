"""Running commands on hosts over the system OpenSSH client, with connection multiplexing.

* One ControlMaster per host, started under a semaphore (``sshkit.max_concurrent_starts``) so only a
  bounded number of SSH handshakes happen at once; every later command on that host is multiplexed.
* :meth:`Runner.on` runs a coroutine per host in parallel, waits for **all** of them and aggregates
  failures into one :class:`~deployer.errors.MultiHostError` (a single failure is re-raised as is).
* Command failures read ``host X: command `…` exited 125: <stderr>``; secrets are redacted.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import shlex
import shutil
import tempfile
import time
from collections.abc import Awaitable, Callable, Iterable, Sequence
from dataclasses import dataclass
from typing import TypeVar

from deployer.config import SshConfig
from deployer.errors import CommandFailed, DeployerError, MultiHostError
from deployer.output import Output
from deployer.secrets import REDACTOR
from deployer.utils import redact

T = TypeVar("T")
LineCallback = Callable[[str, str], None]


class ConnectionFailed(DeployerError):
    def __init__(self, host: str, status: int, stderr: str) -> None:
        self.host = host
        super().__init__(
            f"host {host}: SSH connection failed (exit {status}): {stderr.strip() or 'no output'}"
        )


@dataclass
class Result:
    host: str
    command: str
    status: int
    stdout: str
    stderr: str
    elapsed: float

    @property
    def ok(self) -> bool:
        return self.status == 0


def ssh_base_args(ssh: SshConfig) -> list[str]:
    """Options mapping ``ssh:`` config onto the OpenSSH client (user/port/keys/jump host/config)."""
    args: list[str] = []
    if ssh.config is False:
        args += ["-F", "/dev/null"]
    elif isinstance(ssh.config, str):
        args += ["-F", os.path.expanduser(ssh.config)]
    elif isinstance(ssh.config, list):
        for path in ssh.config:
            args += ["-F", os.path.expanduser(path)]
    for key in ssh.keys:
        args += ["-i", os.path.expanduser(key)]
    if ssh.keys_only:
        args += ["-o", "IdentitiesOnly=yes"]
    if ssh.jump_host:
        args += ["-J", ssh.jump_host]
    if ssh.proxy_command:
        args += ["-o", f"ProxyCommand={ssh.proxy_command}"]
    if ssh.forward_agent:
        args += ["-A"]
    if ssh.log_level:
        args += ["-o", f"LogLevel={ssh.log_level.upper()}"]
    args += ["-l", ssh.user, "-p", str(ssh.port)]
    return args


def interactive_ssh_command(ssh: SshConfig, host: str, command: str) -> list[str]:
    """``ssh -t user@host -p PORT 'command'`` for ``exec -i`` / ``logs -f`` (argv for os.execvp)."""
    return ["ssh", *ssh_base_args(ssh), "-t", host, command]


class Runner:
    def __init__(
        self,
        ssh: SshConfig,
        output: Output | None = None,
        ssh_binary: str = "ssh",
        connect_timeout: int = 15,
        control_persist: int = 60,
        extra_options: Sequence[str] = (),
    ) -> None:
        self.ssh = ssh
        self.out = output or Output()
        self.ssh_binary = ssh_binary
        self.connect_timeout = connect_timeout
        self.control_persist = control_persist
        self.extra_options = list(extra_options)
        self._semaphore: asyncio.Semaphore | None = None
        self._connected: dict[str, asyncio.Future[None]] = {}
        self._control_dir = tempfile.mkdtemp(prefix="deployer-ssh-")
        self.connection_starts = 0  # how many SSH handshakes this runner made (for tests/diagnostics)
        self.max_parallel_starts = 0
        self._starting = 0

    # -- argv ----------------------------------------------------------------------------------------
    @property
    def control_path(self) -> str:
        return os.path.join(self._control_dir, "%C")

    def _base(self) -> list[str]:
        return [
            self.ssh_binary,
            *ssh_base_args(self.ssh),
            "-o",
            f"ControlPath={self.control_path}",
            "-o",
            "BatchMode=yes",
            "-o",
            f"ConnectTimeout={self.connect_timeout}",
            "-o",
            "ServerAliveInterval=30",
            "-o",
            "StrictHostKeyChecking=accept-new",
            *self.extra_options,
        ]

    def master_argv(self, host: str) -> list[str]:
        return [
            *self._base(),
            "-o",
            "ControlMaster=yes",
            "-o",
            f"ControlPersist={self.control_persist}",
            "-N",
            "-f",
            host,
        ]

    def command_argv(self, host: str, command: str) -> list[str]:
        return [*self._base(), "-o", "ControlMaster=no", host, command]

    # -- connections ---------------------------------------------------------------------------------
    def _sem(self) -> asyncio.Semaphore:
        if self._semaphore is None:
            self._semaphore = asyncio.Semaphore(self.ssh.max_concurrent_starts)
        return self._semaphore

    async def connect(self, host: str) -> None:
        """Start the ControlMaster for ``host`` once (bounded by max_concurrent_starts)."""
        fut = self._connected.get(host)
        if fut is None:
            fut = asyncio.get_running_loop().create_future()
            self._connected[host] = fut
            try:
                async with self._sem():
                    self._starting += 1
                    self.max_parallel_starts = max(self.max_parallel_starts, self._starting)
                    self.connection_starts += 1
                    try:
                        await self._start_master(host)
                    finally:
                        self._starting -= 1
                fut.set_result(None)
            except BaseException as e:
                del self._connected[host]
                fut.set_exception(e)
                fut.exception()  # mark retrieved
                raise
        else:
            await asyncio.shield(fut)

    async def _start_master(self, host: str) -> None:
        argv = self.master_argv(host)
        self.out.debug(f"Connecting: {shlex.join(argv)}", host)
        proc = await asyncio.create_subprocess_exec(
            *argv,
            stdin=asyncio.subprocess.DEVNULL,
            stdout=asyncio.subprocess.DEVNULL,
            stderr=asyncio.subprocess.PIPE,
        )
        _, err = await proc.communicate()
        if proc.returncode != 0:
            raise ConnectionFailed(host, proc.returncode or 255, REDACTOR(err.decode(errors="replace")))

    # -- commands ------------------------------------------------------------------------------------
    async def run(
        self,
        host: str,
        command: Sequence[str] | str,
        *,
        check: bool = True,
        stdin: bytes | None = None,
        timeout: float | None = None,
        on_line: LineCallback | None = None,
        quiet: bool = False,
    ) -> Result:
        """Run ``command`` (tokens joined with spaces, as Kamal does) on ``host``."""
        line = command if isinstance(command, str) else " ".join(command)
        display = REDACTOR(command if isinstance(command, str) else redact(command))
        await self.connect(host)
        if not quiet:
            self.out.debug(f"Running {display}", host)
        start = time.monotonic()
        proc = await asyncio.create_subprocess_exec(
            *self.command_argv(host, line),
            stdin=asyncio.subprocess.PIPE if stdin is not None else asyncio.subprocess.DEVNULL,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE,
        )

        async def pump(stream: asyncio.StreamReader | None, name: str, sink: list[str]) -> None:
            assert stream is not None
            async for raw in stream:
                text = raw.decode(errors="replace")
                sink.append(text)
                if on_line:
                    on_line(name, text.rstrip("\n"))
                if not quiet:
                    self.out.debug(f"\t{text.rstrip()}", host)

        out_lines: list[str] = []
        err_lines: list[str] = []
        if stdin is not None:
            assert proc.stdin is not None
            proc.stdin.write(stdin)
            with contextlib.suppress(BrokenPipeError, ConnectionResetError):
                await proc.stdin.drain()
            proc.stdin.close()
        pumps = asyncio.gather(pump(proc.stdout, "stdout", out_lines), pump(proc.stderr, "stderr", err_lines))
        try:
            await asyncio.wait_for(asyncio.shield(pumps), timeout)
            status = await proc.wait()
        except TimeoutError:
            proc.kill()
            await proc.wait()
            pumps.cancel()
            raise CommandFailed(host, display, -1, "", f"timed out after {timeout}s") from None
        elapsed = time.monotonic() - start
        result = Result(host, display, status, "".join(out_lines), "".join(err_lines), elapsed)
        if not quiet:
            self.out.debug(f"Finished in {elapsed:.3f} seconds with exit status {status}", host)
        if status == 255 and not result.stdout and self._looks_like_ssh_failure(result.stderr):
            self._connected.pop(host, None)
            raise ConnectionFailed(host, status, REDACTOR(result.stderr))
        if check and status != 0:
            raise CommandFailed(host, display, status, REDACTOR(result.stdout), REDACTOR(result.stderr))
        return result

    @staticmethod
    def _looks_like_ssh_failure(stderr: str) -> bool:
        markers = ("ssh:", "Permission denied", "Connection refused", "Connection closed", "Host key")
        return any(m in stderr for m in markers)

    async def capture(self, host: str, command: Sequence[str] | str, check: bool = True) -> str:
        return (await self.run(host, command, check=check)).stdout.strip()

    async def test(self, host: str, command: Sequence[str] | str) -> bool:
        return (await self.run(host, command, check=False)).ok

    async def upload(self, host: str, content: str | bytes, path: str, mode: str = "600") -> None:
        """Write ``content`` to ``path`` on ``host`` (parent dirs created, mode applied before writing)."""
        data = content.encode() if isinstance(content, str) else content
        quoted = shlex.quote(path)
        parent = shlex.quote(os.path.dirname(path) or ".")
        script = f"mkdir -p {parent} && touch {quoted} && chmod {mode} {quoted} && cat > {quoted}"
        self.out.debug(f"Uploading {len(data)} bytes to {path}", host)
        await self.run(host, script, stdin=data, quiet=True)

    # -- parallelism ---------------------------------------------------------------------------------
    async def on(self, hosts: Iterable[str], fn: Callable[[str], Awaitable[T]]) -> dict[str, T]:
        """Run ``fn(host)`` for every host in parallel; join all, then raise the aggregated failures."""
        host_list = list(dict.fromkeys(hosts))
        results = await asyncio.gather(*(fn(h) for h in host_list), return_exceptions=True)
        errors: dict[str, BaseException] = {}
        values: dict[str, T] = {}
        for host, res in zip(host_list, results, strict=True):
            if isinstance(res, BaseException):
                if not isinstance(res, Exception):
                    raise res
                errors[host] = res
            else:
                values[host] = res
        if len(errors) == 1:
            raise next(iter(errors.values()))
        if errors:
            raise MultiHostError(errors)
        return values

    async def close(self) -> None:
        """Stop every ControlMaster and remove the control socket directory."""
        for host in list(self._connected):
            proc = await asyncio.create_subprocess_exec(
                *self._base(),
                "-O",
                "exit",
                host,
                stdin=asyncio.subprocess.DEVNULL,
                stdout=asyncio.subprocess.DEVNULL,
                stderr=asyncio.subprocess.DEVNULL,
            )
            await proc.wait()
        self._connected.clear()
        shutil.rmtree(self._control_dir, ignore_errors=True)
