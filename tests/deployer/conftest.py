from __future__ import annotations

import copy
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from deployer import errors
from deployer.config import Config, build_config
from deployer.loading import deep_merge
from deployer.secrets import REDACTOR

ConfigFactory = Callable[..., Config]


@pytest.fixture(autouse=True)
def _collect_warnings() -> Iterator[list[str]]:
    seen: list[str] = []
    errors.set_warn_handler(seen.append)
    REDACTOR.clear()
    yield seen
    errors.set_warn_handler(errors._default_warn)


@pytest.fixture
def warnings_seen(_collect_warnings: list[str]) -> list[str]:
    return _collect_warnings


@pytest.fixture
def make_config(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> ConfigFactory:
    """Build a Config from a dict (like Kamal's tests), with optional secrets file contents."""
    monkeypatch.delenv("KAMAL_REGISTRY_PASSWORD", raising=False)

    def factory(
        raw: dict[str, Any],
        destination: str | None = None,
        version: str | None = "999",
        secrets: str | None = None,
        extra: dict[str, Any] | None = None,
    ) -> Config:
        if secrets is not None:
            (tmp_path / ".kamal").mkdir(exist_ok=True)
            name = f"secrets.{destination}" if destination else "secrets"
            (tmp_path / ".kamal" / name).write_text(secrets)
        merged = deep_merge(copy.deepcopy(raw), extra) if extra else copy.deepcopy(raw)
        merged.setdefault("builder", {"arch": "amd64"})  # Kamal 2 requires builder/arch
        return build_config(merged, "config/deploy.yml", destination, version, root=tmp_path)

    return factory


@pytest.fixture(scope="session")
def ssh_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Any]:
    from tests.deployer.sshd import SshServer, free_port, sshd_available

    reason = sshd_available()
    if reason:
        pytest.skip(reason)
    server = SshServer(tmp_path_factory.mktemp("sshd"), ["127.0.0.2", "127.0.0.3"], free_port())
    server.start()
    yield server
    server.stop()
