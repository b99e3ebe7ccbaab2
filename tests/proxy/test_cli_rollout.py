"""`rollout`'s command group: its help, kamal-proxy's flag errors, checked before any control call."""

from __future__ import annotations

import pytest

from proxy.cli.main import main


def test_rollout_alone_prints_its_subcommands(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["rollout"]) == 0
    out = capsys.readouterr().out
    assert "kamal-proxy rollout [command]" in out
    assert all(f"  {name} " in out for name in ("deploy", "set", "stop"))
    assert main(["rollout", "set", "--help"]) == 0
    assert "kamal-proxy rollout set <service> [flags]" in capsys.readouterr().out


@pytest.mark.parametrize(
    ("argv", "error"),
    [
        (["rollout", "nope"], 'Error: unknown command "nope" for "kamal-proxy rollout"'),
        (
            ["rollout", "set", "app"],
            "Error: at least one of the flags in the group [percent list] is required",
        ),
        (["rollout", "deploy", "app"], 'Error: required flag(s) "target" not set'),
        (["rollout", "stop"], "Error: accepts 1 arg(s), received 0"),
        (["rollout", "set", "app", "--percent", "x"], 'Error: invalid argument "x" for "--percent" flag'),
    ],
)
def test_rollout_flag_errors_are_kamal_proxys(
    argv: list[str], error: str, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(argv) == 1
    assert capsys.readouterr().err.startswith(error)
