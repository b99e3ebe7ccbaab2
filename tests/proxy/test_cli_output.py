"""What the CLI prints for people: `list` colours only on a terminal (and never with NO_COLOR), the
hint when no daemon answers, and `version`."""

from __future__ import annotations

import os
import select
import subprocess
import sys
import time
import tomllib
from pathlib import Path

import pytest

from tests.proxy.backend import Backend
from tests.proxy.conftest import ROOT, ProxyProcess, clean_env

ESC = "\033["


def ctl_on_terminal(proxy: ProxyProcess, *args: str, env: dict[str, str] | None = None) -> str:
    """`proxyctl ARGS` with stdout on a pseudo-terminal, as a person runs it; what it printed."""
    controller, terminal = os.openpty()
    proc = subprocess.Popen(
        [sys.executable, "-m", "proxy.cli.main", *args],
        stdout=terminal,
        stderr=subprocess.PIPE,
        env=env or proxy.env,
        cwd=proxy.tmp,
    )
    os.close(terminal)
    output = b""
    deadline = time.monotonic() + 20
    try:
        while time.monotonic() < deadline:
            ready, _, _ = select.select([controller], [], [], 0.2)
            if not ready:
                if proc.poll() is not None:
                    break
                continue
            try:
                data = os.read(controller, 65536)
            except OSError:  # EIO: the child closed the terminal
                break
            if not data:
                break
            output += data
        assert proc.wait(5) == 0
    finally:
        os.close(controller)
    return output.decode().replace("\r\n", "\n")


@pytest.fixture
def listed(control_proxy: ProxyProcess, backend: Backend) -> ProxyProcess:
    control_proxy.deploy("web", backend.address, args=("--host=a.com",))
    return control_proxy


def test_list_is_styled_like_kamal_proxy_on_a_terminal(listed: ProxyProcess, backend: Backend) -> None:
    lines = ctl_on_terminal(listed, "list").splitlines()
    assert lines[0].startswith("\033[3;94mService")
    assert lines[1].startswith("\033[1;34mweb")
    assert f"\033[m{backend.address}" in lines[1]


def test_list_prints_no_colour_codes_into_a_pipe(listed: ProxyProcess, backend: Backend) -> None:
    out = listed.ctl("list").stdout
    assert ESC not in out
    header, row = out.splitlines()
    assert header.split() == ["Service", "Host", "Path", "Target", "State", "TLS"]
    assert row.split() == ["web", "a.com", "/", backend.address, "running", "no"]
    # columns line up: each cell starts where its header does
    assert row.index(backend.address) == header.index("Target")


def test_list_honours_no_color_on_a_terminal(listed: ProxyProcess, backend: Backend) -> None:
    out = ctl_on_terminal(listed, "list", env={**listed.env, "NO_COLOR": "1"})
    assert ESC not in out
    assert out.splitlines()[1].split()[:2] == ["web", "a.com"]
    # an empty NO_COLOR does not count (no-color.org)
    assert ESC in ctl_on_terminal(listed, "list", env={**listed.env, "NO_COLOR": ""})


@pytest.mark.parametrize(
    ("variable", "origin"),
    [("KAMAL_PROXY_SOCKET", "from $KAMAL_PROXY_SOCKET"), ("XDG_RUNTIME_DIR", "from $XDG_RUNTIME_DIR")],
)
def test_control_command_without_daemon_hints_at_run_after_the_dial_error(
    tmp_path: Path, variable: str, origin: str
) -> None:
    sock = tmp_path / "kamal-proxy.sock"
    value = str(sock) if variable == "KAMAL_PROXY_SOCKET" else str(tmp_path)
    env = clean_env(HOME=str(tmp_path), **{variable: value})
    for command in (["list"], ["remove", "app"], ["deploy", "app", "--target=127.0.0.1:1"]):
        result = subprocess.run(
            [sys.executable, "-m", "proxy.cli.main", *command],
            env=env,
            capture_output=True,
            text=True,
            cwd=ROOT,
            timeout=30,
        )
        assert result.returncode == 1
        assert result.stderr == (
            f"Error: dial unix {sock}: connect: no such file or directory "
            f"(is `kamal-proxy run` running? socket: {sock}, {origin})\n"
        )


def test_a_stale_socket_file_gets_the_hint_too(tmp_path: Path) -> None:
    import socket

    sock = tmp_path / "kamal-proxy.sock"
    with socket.socket(socket.AF_UNIX) as s:
        s.bind(str(sock))  # bound, never listening: connect is refused, as after a crash
    env = clean_env(HOME=str(tmp_path), KAMAL_PROXY_SOCKET=str(sock))
    result = subprocess.run(
        [sys.executable, "-m", "proxy.cli.main", "list"], env=env, capture_output=True, text=True, cwd=ROOT
    )
    assert result.returncode == 1
    assert result.stderr.startswith(f"Error: dial unix {sock}: connect: connection refused (is `kamal-proxy")


def test_version_prints_the_package_version() -> None:
    expected = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["version"]
    result = subprocess.run(
        [sys.executable, "-m", "proxy.cli.main", "version"],
        env=clean_env(),
        capture_output=True,
        text=True,
        cwd=ROOT,
        timeout=30,
    )
    assert (result.returncode, result.stdout, result.stderr) == (0, f"{expected}\n", "")
