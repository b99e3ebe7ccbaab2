"""The SSH runner against a real sshd on 127.0.0.2/127.0.0.3: parallelism, aggregation, multiplexing."""

from __future__ import annotations

import asyncio
import io
import os
import time
from typing import Any

import pytest

from deployer.config import SshConfig
from deployer.errors import CommandFailed, MultiHostError
from deployer.output import VERBOSE, Output
from deployer.runner import ConnectionFailed, Runner
from deployer.secrets import REDACTOR

HOSTS = ["127.0.0.2", "127.0.0.3"]


def make_runner(
    server: Any, max_starts: int = 30, out: Output | None = None, port: int | None = None
) -> Runner:
    ssh = SshConfig(
        user="root",
        port=port or server.port,
        config=str(server.client_config),
        max_concurrent_starts=max_starts,
    )
    return Runner(ssh, out or Output(stream=io.StringIO()))


def run(coro: Any) -> Any:
    return asyncio.run(coro)


def test_commands_run_in_each_hosts_directory(ssh_server: Any) -> None:
    async def main() -> dict[str, str]:
        runner = make_runner(ssh_server)
        try:
            return await runner.on(
                HOSTS, lambda h: runner.capture(h, ["pwd", "&&", "echo", "$SSH_CONNECTION"])
            )
        finally:
            await runner.close()

    results = run(main())
    for host in HOSTS:
        cwd, connection = results[host].splitlines()
        assert cwd == str(ssh_server.host_dir(host))
        assert connection.split()[2] == host


def test_hosts_run_in_parallel(ssh_server: Any) -> None:
    async def main() -> float:
        runner = make_runner(ssh_server)
        try:
            await runner.on(HOSTS, runner.connect)
            start = time.monotonic()
            await runner.on(HOSTS, lambda h: runner.run(h, "sleep 1"))
            return time.monotonic() - start
        finally:
            await runner.close()

    elapsed = run(main())
    assert elapsed < 1.9, f"two 1 s commands took {elapsed:.2f}s (sequential would be >= 2 s)"


def test_connections_are_multiplexed(ssh_server: Any) -> None:
    before = {h: ssh_server.connections_to(h) for h in HOSTS}

    async def main() -> Runner:
        runner = make_runner(ssh_server)
        try:
            for _ in range(5):
                await runner.on(HOSTS, lambda h: runner.run(h, "true"))
            await runner.upload(HOSTS[0], "x", "probe.txt")
            return runner
        finally:
            await runner.close()

    runner = run(main())
    time.sleep(0.2)
    after = {h: ssh_server.connections_to(h) for h in HOSTS}
    assert {h: after[h] - before[h] for h in HOSTS} == {h: 1 for h in HOSTS}
    assert runner.connection_starts == 2


def test_connection_starts_are_bounded(ssh_server: Any) -> None:
    async def main() -> Runner:
        runner = make_runner(ssh_server, max_starts=1)
        try:
            await runner.on(HOSTS, lambda h: runner.run(h, "true"))
            return runner
        finally:
            await runner.close()

    runner = run(main())
    assert runner.connection_starts == 2
    assert runner.max_parallel_starts == 1


def test_single_failure_is_reraised_with_host_command_status_and_stderr(ssh_server: Any) -> None:
    async def main() -> None:
        runner = make_runner(ssh_server)
        try:
            await runner.on(
                HOSTS, lambda h: runner.run(h, "echo boom >&2; exit 125" if h == HOSTS[1] else "true")
            )
        finally:
            await runner.close()

    with pytest.raises(CommandFailed) as exc:
        run(main())
    assert str(exc.value) == "host 127.0.0.3: command `echo boom >&2; exit 125` exited 125: boom"


def test_every_host_finishes_and_failures_are_aggregated(ssh_server: Any) -> None:
    async def main() -> None:
        runner = make_runner(ssh_server)
        try:

            async def job(h: str) -> None:
                await runner.run(h, "sleep 0.3")
                (ssh_server.host_dir(h) / "finished").write_text("yes")
                await runner.run(h, f"echo failed on {h} >&2; exit 3")

            await runner.on(HOSTS, job)
        finally:
            await runner.close()

    with pytest.raises(MultiHostError) as exc:
        run(main())
    message = str(exc.value)
    assert message.startswith("Exceptions on 2 hosts:")
    for host in HOSTS:
        assert (
            f"host {host}: command `echo failed on {host} >&2; exit 3` exited 3: failed on {host}" in message
        )
        assert (ssh_server.host_dir(host) / "finished").read_text() == "yes"


def test_upload_creates_parents_with_mode(ssh_server: Any) -> None:
    async def main() -> None:
        runner = make_runner(ssh_server)
        try:
            await runner.upload(HOSTS[0], "A=1\nB=2\n", ".kamal/apps/app/env/roles/web.env")
        finally:
            await runner.close()

    run(main())
    path = ssh_server.host_dir(HOSTS[0]) / ".kamal/apps/app/env/roles/web.env"
    assert path.read_text() == "A=1\nB=2\n"
    assert oct(os.stat(path).st_mode & 0o777) == "0o600"


def test_connection_failure_is_reported_per_host(ssh_server: Any) -> None:
    from tests.deployer.sshd import free_port

    async def main() -> None:
        runner = make_runner(ssh_server, port=free_port())
        try:
            await runner.on(["127.0.0.2"], lambda h: runner.run(h, "true"))
        finally:
            await runner.close()

    with pytest.raises(
        ConnectionFailed, match=r"host 127.0.0.2: SSH connection failed \(exit 255\): .*refused"
    ):
        run(main())


def test_verbose_output_shows_commands_and_redacts_secrets(ssh_server: Any) -> None:
    REDACTOR.add("supersecret-token")
    buf = io.StringIO()

    async def main() -> None:
        runner = make_runner(ssh_server, out=Output(VERBOSE, stream=buf))
        try:
            await runner.run(HOSTS[0], "echo supersecret-token")
        finally:
            await runner.close()

    run(main())
    text = buf.getvalue()
    assert "Running echo [REDACTED]" in text and "supersecret-token" not in text
    assert "Finished in" in text
