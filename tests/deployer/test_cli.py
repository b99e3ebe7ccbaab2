"""The click CLI: init, config (redacted), error reporting, aliases, and lock commands over real sshd."""

from __future__ import annotations

import textwrap
from pathlib import Path
from typing import Any

import pytest

from deployer.cli import main


def run_cli(args: list[str]) -> int:
    try:
        main(args)
    except SystemExit as e:
        return int(e.code or 0)
    return 0


def write_config(root: Path, text: str) -> None:
    (root / "config").mkdir(parents=True, exist_ok=True)
    (root / "config" / "deploy.yml").write_text(textwrap.dedent(text))


def test_init_creates_files(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: Any) -> None:
    monkeypatch.chdir(tmp_path)
    assert run_cli(["init"]) == 0
    assert (tmp_path / "config/deploy.yml").exists()
    assert "KAMAL_REGISTRY_PASSWORD=$KAMAL_REGISTRY_PASSWORD" in (tmp_path / ".kamal/secrets").read_text()
    assert (tmp_path / ".kamal/hooks/pre-deploy.sample").exists()
    # the generated file is a valid config
    monkeypatch.setenv("KAMAL_REGISTRY_PASSWORD", "from-env-1234")
    monkeypatch.setenv("RAILS_MASTER_KEY", "x")
    assert run_cli(["config"]) == 0
    out = capsys.readouterr().out
    assert "service: my-app" in out and "from-env-1234" not in out


def test_config_is_redacted_and_merges_destination(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: Any
) -> None:
    monkeypatch.chdir(tmp_path)
    write_config(
        tmp_path,
        """\
        service: app
        image: app
        registry:
          username: me
          password: [PW]
        servers: [1.1.1.1]
        builder: {arch: amd64}
        """,
    )
    (tmp_path / "config" / "deploy.staging.yml").write_text("servers: [2.2.2.2]\n")
    (tmp_path / ".kamal").mkdir()
    (tmp_path / ".kamal" / "secrets.staging").write_text("PW=top-secret-pw\n")
    assert run_cli(["config", "-d", "staging"]) == 0
    out = capsys.readouterr().out
    assert "2.2.2.2" in out and "destination: staging" in out
    assert "password: '[REDACTED]'" in out and "top-secret-pw" not in out


def test_config_errors_exit_1_with_file_and_key(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: Any
) -> None:
    monkeypatch.chdir(tmp_path)
    write_config(
        tmp_path,
        "service: app\nimage: app\nregistry: {server: 'localhost:5000'}\nservers: [h]\n"
        "proxy:\n  helthcheck: {path: /up}\n",
    )
    assert run_cli(["deploy"]) == 1
    err = capsys.readouterr().err
    assert "ERROR (ConfigError): config/deploy.yml: proxy/helthcheck: unknown key" in err


def test_global_options_after_the_command(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: Any
) -> None:
    monkeypatch.chdir(tmp_path)
    write_config(
        tmp_path, "service: app\nregistry: {server: 'localhost:5000'}\nservers: [h]\nbuilder: {arch: amd64}\n"
    )
    (tmp_path / "config" / "deploy.prod.yml").write_text("servers: [p1]\n")
    assert run_cli(["config", "-d", "prod", "-q"]) == 0
    assert "- p1" in capsys.readouterr().out


def test_missing_destination_names_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: Any) -> None:
    monkeypatch.chdir(tmp_path)
    write_config(
        tmp_path, "service: app\nregistry: {server: 'localhost:5000'}\nservers: [h]\nbuilder: {arch: amd64}\n"
    )
    assert run_cli(["config", "-d", "nope"]) == 1
    assert "config/deploy.nope.yml: destination 'nope' not found" in capsys.readouterr().err


@pytest.fixture
def ssh_project(ssh_server: Any, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("KAMAL_LOCK", raising=False)
    write_config(
        tmp_path,
        f"""\
        service: cli-{tmp_path.name[-8:].replace("_", "-").lower()}
        registry:
          server: localhost:5000
        servers:
          - 127.0.0.2
          - 127.0.0.3
        ssh:
          user: root
          port: {ssh_server.port}
          config: {ssh_server.client_config}
        aliases:
          who: audit
        builder:
          arch: amd64
        """,
    )
    return tmp_path


def test_lock_commands_over_ssh(ssh_project: Path, ssh_server: Any, capsys: Any) -> None:
    assert run_cli(["lock", "acquire", "-m", "maintenance window"]) == 0
    assert run_cli(["lock", "status"]) == 0
    out = capsys.readouterr().out
    assert "Message: maintenance window" in out and "Locked by:" in out
    # only the primary host holds it
    service = (ssh_project / "config/deploy.yml").read_text().split()[1]
    assert (ssh_server.host_dir("127.0.0.2") / f".kamal/lock-{service}/details").exists()
    assert not (ssh_server.host_dir("127.0.0.3") / f".kamal/lock-{service}").exists()
    assert run_cli(["lock", "acquire", "-m", "second"]) == 1
    assert "ERROR (LockError): Deploy lock already in place on 127.0.0.2" in capsys.readouterr().err
    assert run_cli(["lock", "release"]) == 0
    assert run_cli(["lock", "status"]) == 0
    assert "There is no deploy lock" in capsys.readouterr().out


def test_audit_and_alias_over_ssh(
    ssh_project: Path, ssh_server: Any, capsys: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    service = (ssh_project / "config/deploy.yml").read_text().split()[1]
    for host in ("127.0.0.2", "127.0.0.3"):
        log = ssh_server.host_dir(host) / ".kamal" / f"{service}-audit.log"
        log.parent.mkdir(parents=True, exist_ok=True)
        log.write_text(f"[2026-01-01T00:00:00Z] [ann] deployed on {host}\n")
    monkeypatch.setattr("sys.argv", ["deployer", "who"])
    assert run_cli(["who"]) == 0
    out = capsys.readouterr().out
    assert "App Host: 127.0.0.2\n[2026-01-01T00:00:00Z] [ann] deployed on 127.0.0.2" in out
    assert "App Host: 127.0.0.3" in out


def test_deploy_reports_a_missing_secret_before_connecting(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: Any
) -> None:
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("DB_PASSWORD", raising=False)
    write_config(
        tmp_path,
        """\
        service: app
        registry: {server: 'localhost:5000'}
        servers: [192.0.2.1]
        builder: {arch: amd64}
        env:
          secret: [DB_PASSWORD]
        ssh:
          proxy_command: "false"
        """,
    )
    (tmp_path / ".kamal").mkdir()
    (tmp_path / ".kamal" / "secrets").write_text("OTHER=1\n")
    assert run_cli(["deploy", "-P", "--version", "v1"]) == 1
    err = capsys.readouterr().err
    assert (
        "ERROR (SecretError): config/deploy.yml: secret DB_PASSWORD referenced by the configuration but not "
        "found in .kamal/secrets-common or .kamal/secrets (add a line `DB_PASSWORD=...` to .kamal/secrets)"
    ) in err
    assert "SSH" not in err and "192.0.2.1" not in err


def test_missing_config_suggests_init(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: Any) -> None:
    monkeypatch.chdir(tmp_path)
    assert run_cli(["config"]) == 1
    assert (
        "config/deploy.yml: configuration file not found (run `deployer init` to create one, or pass -c FILE)"
        in capsys.readouterr().err
    )
