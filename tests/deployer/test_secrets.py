"""dotenv secrets with $VAR / ${VAR} / $(command), file precedence, and redaction."""

from __future__ import annotations

from pathlib import Path

import pytest

from deployer.errors import SecretError
from deployer.secrets import REDACTOR, Secrets, parse_dotenv


def test_parse_basic_forms(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("FROM_ENV", "envvalue")
    text = """
# comment
export A=1
B = two words   # trailing comment
C='single $A $(echo no)'
D="double $A ${B} \\$literal"
E=$FROM_ENV
F=$(echo from-command)
G=$(printf '%s' "$A-x")
H="line1
line2"
I=
J=a#b
"""
    values = parse_dotenv(text)
    assert values["A"] == "1"
    assert values["B"] == "two words"
    assert values["C"] == "single $A $(echo no)"
    assert values["D"] == "double 1 two words $literal"
    assert values["E"] == "envvalue"
    assert values["F"] == "from-command"
    assert values["G"] == "1-x"
    assert values["H"] == "line1\nline2"
    assert values["I"] == ""
    assert values["J"] == "a#b"


def test_parse_errors_name_the_line() -> None:
    with pytest.raises(SecretError, match=r"secrets:2: expected NAME=value"):
        parse_dotenv("A=1\nnot a line\n", "secrets")
    with pytest.raises(SecretError, match=r"secrets:1: command \$\(exit 3\) exited 3"):
        parse_dotenv("A=$(exit 3)\n", "secrets")
    with pytest.raises(SecretError, match=r"unterminated \" quote for A"):
        parse_dotenv('A="open\n', "secrets")


def test_files_and_destination_precedence(tmp_path: Path) -> None:
    kamal = tmp_path / ".kamal"
    kamal.mkdir()
    (kamal / "secrets-common").write_text("SHARED=common\nOVER=common\n")
    (kamal / "secrets").write_text("OVER=plain\nONLY_PLAIN=1\nREF=$SHARED-ref\n")
    (kamal / "secrets.staging").write_text("OVER=staging\n")
    plain = Secrets(".kamal/secrets", None, root=tmp_path, env_fallback=False)
    assert plain["OVER"] == "plain" and plain["SHARED"] == "common" and plain["REF"] == "common-ref"
    staging = Secrets(".kamal/secrets", "staging", root=tmp_path, env_fallback=False)
    assert staging["OVER"] == "staging"
    assert "ONLY_PLAIN" not in staging  # plain secrets are not read with a destination
    with pytest.raises(
        SecretError, match=r"secret ONLY_PLAIN not found in .*secrets-common or .*secrets.staging"
    ):
        staging["ONLY_PLAIN"]


def test_env_fallback_warns(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, warnings_seen: list[str]
) -> None:
    monkeypatch.setenv("KAMAL_REGISTRY_PASSWORD", "exported-secret")
    secrets = Secrets(".kamal/secrets", None, root=tmp_path)
    assert secrets["KAMAL_REGISTRY_PASSWORD"] == "exported-secret"
    assert any("using the environment variable" in w for w in warnings_seen)


def test_values_are_redacted(tmp_path: Path) -> None:
    (tmp_path / ".kamal").mkdir()
    (tmp_path / ".kamal" / "secrets").write_text("TOKEN=s3cr3t-value\nSHORT=ab\n")
    secrets = Secrets(".kamal/secrets", None, root=tmp_path)
    assert secrets["TOKEN"] == "s3cr3t-value"
    assert REDACTOR("login failed for s3cr3t-value!") == "login failed for [REDACTED]!"
    assert REDACTOR("ab stays") == "ab stays"  # too short to redact safely
