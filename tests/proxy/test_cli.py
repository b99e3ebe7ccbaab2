"""kamal-proxy's CLI surface: Kamal 2's exact command lines, flag syntax, errors and exit codes."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests.proxy.backend import Backend
from tests.proxy.certs import CA
from tests.proxy.conftest import ROOT, ProxyProcess, clean_env


def bash(proxy: ProxyProcess, line: str) -> subprocess.CompletedProcess[str]:
    """Run a command line through bash with `kamal-proxy` being this program, as `docker exec` would."""
    bindir = proxy.tmp / "bin"
    bindir.mkdir(exist_ok=True)
    shim = bindir / "kamal-proxy"
    shim.write_text(f'#!/bin/sh\nexec "{sys.executable}" -m proxy.cli.main "$@"\n')
    shim.chmod(0o755)
    env = dict(proxy.env, PATH=f"{bindir}:{os.environ['PATH']}")
    return subprocess.run(["bash", "-c", line], env=env, capture_output=True, text=True, timeout=60)


def service(proxy: ProxyProcess, name: str) -> dict[str, object]:
    return dict(json.loads(proxy.ctl("list", "--json").stdout)[name])


def test_kamal_default_deploy_line(control_proxy: ProxyProcess, backend: Backend) -> None:
    result = bash(
        control_proxy,
        f'kamal-proxy deploy app-web --target="{backend.address}" --deploy-timeout="30s" '
        '--drain-timeout="30s" --health-check-path="/up" --buffer-requests --buffer-responses '
        '--log-request-header="Cache-Control" --log-request-header="Last-Modified" '
        '--log-request-header="User-Agent"',
    )
    assert (result.returncode, result.stdout, result.stderr) == (0, "", "")
    web = service(control_proxy, "app-web")
    options = web["target_options"]
    assert isinstance(options, dict)
    assert options["buffer_requests"] is True and options["buffer_responses"] is True
    assert options["log_request_headers"] == ["Cache-Control", "Last-Modified", "User-Agent"]
    assert options["response_timeout"] == 30_000_000_000


def test_kamal_full_deploy_line_with_hosts_prefixes_and_false_booleans(
    control_proxy: ProxyProcess, backend: Backend
) -> None:
    result = bash(
        control_proxy,
        f'kamal-proxy deploy app-web --target="{backend.address}" --host="a.com" --host="b.com" '
        '--deploy-timeout="10s" --drain-timeout="5s" --health-check-interval="1s" '
        '--health-check-timeout="3s" --health-check-path="/up" --target-timeout="10s" '
        '--buffer-requests="false" --buffer-responses="false" --buffer-memory="2000000" '
        '--path-prefix="/api" --strip-path-prefix="false" --forward-headers="false" '
        '--log-response-header="X-Request-ID"',
    )
    assert result.returncode == 0, result.stderr
    web = service(control_proxy, "app-web")
    assert web["hosts"] == ["a.com", "b.com"] and web["path_prefixes"] == ["/api"]
    target_options = web["target_options"]
    options = web["options"]
    assert isinstance(target_options, dict) and isinstance(options, dict)
    assert target_options["buffer_requests"] is False
    assert target_options["max_memory_buffer_size"] == 2_000_000
    assert target_options["forward_headers"] is False
    assert target_options["response_timeout"] == 10_000_000_000
    assert target_options["log_response_headers"] == ["X-Request-ID"]
    assert options["strip_prefix"] is False


def test_kamal_remove_line(control_proxy: ProxyProcess, backend: Backend) -> None:
    control_proxy.deploy("app-web", backend.address)
    assert bash(control_proxy, "kamal-proxy remove app-web").returncode == 0
    assert "app-web" not in json.loads(control_proxy.ctl("list", "--json").stdout)


def test_flag_value_syntaxes_are_equivalent(control_proxy: ProxyProcess, backend: Backend) -> None:
    control_proxy.ctl(
        "deploy", "a", "--target", backend.address, "--host", "x.com,y.com", "--deploy-timeout", "1m30s"
    )
    control_proxy.ctl(
        "deploy", "b", f"--target={backend.address}", "--host=z.com", "--host=w.com", "--force=true"
    )
    assert service(control_proxy, "a")["hosts"] == ["x.com", "y.com"]
    assert service(control_proxy, "b")["hosts"] == ["z.com", "w.com"]


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["deploy", "app"], 'required flag(s) "target" not set'),
        (["deploy", "--target=a:1"], "accepts 1 arg(s), received 0"),
        (["deploy", "app", "--target=a:1", "--deploy-timeout=30"], 'invalid argument "30" for "--deploy-timeout" flag'),
        (["deploy", "app", "--target=a:1", "--bogus"], "unknown flag: --bogus"),
        (["deploy", "app", "--target=a:1", "--max-request-body=10"],
         "max-request-body can only be set when request buffering is enabled"),
        (["deploy", "app", "--target=a:1", "--max-response-body=10"],
         "max-response-body can only be set when response buffering is enabled"),
        (["deploy", "app", "--target=a:1", "--tls"], "service options invalid: host must be set when using TLS"),
        (["deploy", "app", "--target=a:1", "--tls-certificate-path=/c"],
         "if any flags in the group [tls-certificate-path tls-private-key-path] are set they must all be set; "
         "missing [tls-private-key-path]"),
        (["deploy", "app", "--target=a:1", "--force=maybe"], 'invalid argument "maybe" for "--force" flag'),
        (["frobnicate"], 'unknown command "frobnicate" for "kamal-proxy"'),
    ],
)  # fmt: skip
def test_invalid_command_lines_fail_with_error_and_exit_1(
    tmp_path: Path, args: list[str], message: str
) -> None:
    env = clean_env(HOME=str(tmp_path), KAMAL_PROXY_SOCKET=str(tmp_path / "none.sock"))
    result = subprocess.run(
        [sys.executable, "-m", "proxy.cli.main", *args], env=env, capture_output=True, text=True, cwd=ROOT
    )
    assert result.returncode == 1
    assert result.stderr.startswith("Error: ")
    assert message in result.stderr
    assert result.stdout == ""


def test_server_side_validation_errors(control_proxy: ProxyProcess) -> None:
    result = control_proxy.ctl("deploy", "app", "--target=http://bad", check=False)
    assert (result.returncode, result.stderr) == (1, "Error: http://bad :invalid host pattern\n")


def test_control_call_without_daemon_reports_dial_error(tmp_path: Path) -> None:
    sock = tmp_path / "missing.sock"
    env = clean_env(HOME=str(tmp_path), KAMAL_PROXY_SOCKET=str(sock))
    result = subprocess.run(
        [sys.executable, "-m", "proxy.cli.main", "list"], env=env, capture_output=True, text=True, cwd=ROOT
    )
    assert result.returncode == 1
    # kamal-proxy's message first, then our hint (tests/proxy/test_cli_output.py)
    assert result.stderr.startswith(f"Error: dial unix {sock}: connect: no such file or directory (")


def test_socket_path_falls_back_to_xdg_runtime_dir_then_tmpdir(tmp_path: Path) -> None:
    from proxy.control import socket_path

    assert socket_path({"KAMAL_PROXY_SOCKET": "/x.sock", "XDG_RUNTIME_DIR": "/run"}) == Path("/x.sock")
    assert socket_path({"XDG_RUNTIME_DIR": "/run/user/1"}) == Path("/run/user/1/kamal-proxy.sock")
    assert socket_path({"TMPDIR": str(tmp_path)}) == tmp_path / "kamal-proxy.sock"


def test_run_takes_ports_from_env_with_prefix_winning(tmp_path: Path) -> None:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        free = s.getsockname()[1]
    env = clean_env(
        HOME=str(tmp_path),
        KAMAL_PROXY_SOCKET=str(tmp_path / "s.sock"),
        HTTP_PORT="1",
        KAMAL_PROXY_HTTP_PORT=str(free),
    )
    proc = subprocess.Popen(
        [sys.executable, "-m", "proxy.cli.main", "run", "--bind", "127.0.0.1"],
        env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, cwd=ROOT,
    )  # fmt: skip
    try:
        assert proc.stdout is not None
        for raw in proc.stdout:
            entry = json.loads(raw)
            if entry["msg"] == "Server started":
                assert entry["http"] == free
                break
    finally:
        proc.terminate()
        assert proc.wait(10) == 0


def test_port_in_use_exits_1(tmp_path: Path) -> None:
    import socket

    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        env = clean_env(HOME=str(tmp_path), KAMAL_PROXY_SOCKET=str(tmp_path / "s.sock"))
        result = subprocess.run(
            [sys.executable, "-m", "proxy.cli.main", "run", "--bind", "127.0.0.1", "--http-port", str(port)],
            env=env, capture_output=True, text=True, timeout=20, cwd=ROOT,
        )  # fmt: skip
    assert result.returncode == 1


def test_help_is_printed_and_exits_0(tmp_path: Path) -> None:
    env = clean_env(HOME=str(tmp_path))
    for args in (["--help"], ["deploy", "--help"], ["help", "run"]):
        result = subprocess.run(
            [sys.executable, "-m", "proxy.cli.main", *args], env=env, capture_output=True, text=True, cwd=ROOT
        )
        assert result.returncode == 0
        assert "Usage:" in result.stdout


def test_bad_control_request_leaves_config_intact(control_proxy: ProxyProcess, backend: Backend) -> None:
    import socket

    control_proxy.deploy("app", backend.address)
    before = control_proxy.state_path.read_bytes()
    for payload in (b"not json\n", b'{"command":"deploy","args":{"service":5}}\n', b'{"command":"nope"}\n'):
        with socket.socket(socket.AF_UNIX) as s:
            s.connect(str(control_proxy.socket))
            s.sendall(payload)
            reply = json.loads(s.makefile().readline())
        assert reply["ok"] is False and reply["error"]
    assert control_proxy.state_path.read_bytes() == before
    assert control_proxy.ctl("list", "--json").returncode == 0


def test_kamal_tls_and_error_pages_lines_are_accepted_and_stored(
    control_proxy: ProxyProcess, backend: Backend
) -> None:
    pages = control_proxy.tmp / "apps-config" / "app" / "error_pages" / "abc123"
    pages.mkdir(parents=True)
    (pages / "503.html").write_text("<p>{{ .Message }}</p>")
    tls_dir = control_proxy.tmp / "apps-config" / "tls" / "web"  # the certificate must load now
    tls_dir.mkdir(parents=True)
    CA.create().write_leaf(tls_dir, "app.example.com", stem="cert")
    (tls_dir / "cert.crt").rename(tls_dir / "cert.pem")
    (tls_dir / "cert.key").rename(tls_dir / "key.pem")
    result = bash(
        control_proxy,
        f'kamal-proxy deploy app-web --target="{backend.address}" --host="app.example.com" --tls '
        f'--tls-certificate-path="{tls_dir}/cert.pem" '
        f'--tls-private-key-path="{tls_dir}/key.pem" '
        '--deploy-timeout="30s" --drain-timeout="30s" --health-check-path="/up" --tls-redirect="false" '
        '--buffer-requests --buffer-responses --max-request-body="40000000" '
        f'--error-pages="{pages}"',
    )
    assert result.returncode == 0, result.stderr
    options = service(control_proxy, "app-web")["options"]
    assert isinstance(options, dict)
    assert options["tls_enabled"] is True and options["tls_redirect"] is False
    assert options["tls_certificate_path"].endswith("/tls/web/cert.pem")
    assert options["error_page_path"] == str(pages)
    target_options = service(control_proxy, "app-web")["target_options"]
    assert isinstance(target_options, dict)
    assert target_options["forward_headers"] is False  # default !tls
    assert target_options["max_request_body_size"] == 40_000_000
