"""The table of configurations the deployer accepts and refuses, as Kamal 2.12 does.

Each directory under ``tests/deployer/cases/`` is a Kamal app layout (``config/deploy*.yml``,
``.kamal/secrets*``, hooks) plus ``expected.yml``: its first line says which Kamal rule it shows;
``args`` / ``env`` are given to ``deployer config``; ``loads`` lists keys its output must have, or
``refuses`` the key path and message the error must name (``<key>: <message>``). Cases whose files use
ERB run once per renderer (Ruby's erb, and the built-in subset) unless ``renderers`` narrows them.
"""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import Any

import pytest
import yaml

from deployer.cli import main

CASES = Path(__file__).parent / "cases"


def _uses_erb(case: Path) -> bool:
    return any("<%" in p.read_text() for p in case.rglob("*.yml") if p.name != "expected.yml")


def _params() -> list[Any]:
    params = []
    for case in sorted(p for p in CASES.iterdir() if p.is_dir()):
        expected = yaml.safe_load((case / "expected.yml").read_text())
        renderers = expected.get("renderers", ["ruby", "subset"]) if _uses_erb(case) else ["auto"]
        for renderer in renderers:
            marks = []
            if renderer == "ruby" and shutil.which("ruby") is None:
                marks.append(pytest.mark.skip(reason="Ruby's erb needs the Debian package ruby"))
            params.append(pytest.param(case, renderer, id=f"{case.name}-{renderer}", marks=marks))
    return params


def _run(args: list[str]) -> int:
    try:
        main(args)
    except SystemExit as e:
        return int(e.code or 0)
    return 0


@pytest.mark.parametrize(("case", "renderer"), _params())
def test_case(
    case: Path,
    renderer: str,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    expected = yaml.safe_load((case / "expected.yml").read_text())
    app = tmp_path / "app"
    shutil.copytree(case, app, ignore=shutil.ignore_patterns("expected.yml"))
    monkeypatch.chdir(app)
    for name in ("VERSION", "KAMAL_DESTINATION", "KAMAL_REGISTRY_PASSWORD"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("DEPLOYER_ERB", renderer)
    for name, value in (expected.get("env") or {}).items():
        monkeypatch.setenv(name, str(value))

    status = _run(["config", *expected.get("args", [])])
    out, err = capsys.readouterr()
    if "refuses" in expected:
        want = f"{expected['refuses']['key']}: {expected['refuses']['message']}"
        assert status == 1 and want in err, f"exit {status}, wanted {want!r} in:\n{err}"
        return
    assert status == 0, err
    shown = yaml.safe_load(out)
    for key, value in expected["loads"].items():
        assert shown[key] == value, f"{key}: {shown[key]!r} != {value!r}"
