"""The compiled per-request modules: which ones a process runs, the pure-Python switch, stale builds."""

from __future__ import annotations

import importlib.machinery
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

import proxy.http.exchange
from proxy import native
from tests.proxy.conftest import clean_env


def fake_build(root: Path, *, compiled: bool = True, stamp: bool = True) -> None:
    """A package tree under ``root`` with every compiled module's source, a stand-in compiled file
    next to each, and the build's stamp of the sources."""
    for module in native.COMPILED:
        source = native.source_path(module, root)
        source.parent.mkdir(parents=True, exist_ok=True)
        source.write_text(f"NAME = {module!r}\n")
        if compiled:
            suffix = importlib.machinery.EXTENSION_SUFFIXES[0]
            source.with_name(source.stem + suffix).write_bytes(b"")
    if stamp:
        (root / "proxy" / native.STAMP).write_text(json.dumps(native.source_digests(root)))


@pytest.fixture
def clean_meta_path(monkeypatch: pytest.MonkeyPatch) -> list[object]:
    """sys.meta_path without any SourceFinder (the pure test run installs one), restored after."""
    path: list[object] = [f for f in sys.meta_path if not isinstance(f, native.SourceFinder)]
    monkeypatch.setattr(sys, "meta_path", path)
    return path


def test_a_build_whose_sources_are_unchanged_is_not_stale(tmp_path: Path) -> None:
    fake_build(tmp_path)
    assert native.stale_sources(tmp_path) == []


def test_an_edited_source_makes_its_compiled_module_stale(tmp_path: Path) -> None:
    fake_build(tmp_path)
    native.source_path("proxy.http.writer", tmp_path).write_text("NAME = 'edited'\n")
    assert native.stale_sources(tmp_path) == ["proxy.http.writer"]


def test_compiled_modules_without_a_readable_stamp_are_all_stale(tmp_path: Path) -> None:
    fake_build(tmp_path, stamp=False)
    assert native.stale_sources(tmp_path) == list(native.COMPILED)
    (tmp_path / "proxy" / native.STAMP).write_text("[not a mapping]")
    assert native.stale_sources(tmp_path) == list(native.COMPILED)


def test_nothing_compiled_is_never_stale(tmp_path: Path) -> None:
    fake_build(tmp_path, compiled=False, stamp=False)
    assert native.stale_sources(tmp_path) == []


def test_a_stale_build_runs_the_sources_and_says_how_to_rebuild(
    tmp_path: Path, clean_meta_path: list[object], capsys: pytest.CaptureFixture[str]
) -> None:
    fake_build(tmp_path)
    native.source_path("proxy.targets", tmp_path).write_text("NAME = 'edited'\n")
    assert native.use_sources({}, tmp_path) == "stale"
    assert isinstance(clean_meta_path[0], native.SourceFinder)
    err = capsys.readouterr().err
    assert "proxy/targets.py changed" in err and "make build-ext" in err


def test_an_up_to_date_build_runs_compiled(tmp_path: Path, clean_meta_path: list[object]) -> None:
    fake_build(tmp_path)
    assert native.use_sources({}, tmp_path) == "compiled"
    assert not any(isinstance(f, native.SourceFinder) for f in clean_meta_path)


def test_the_environment_switch_forces_the_sources(tmp_path: Path, clean_meta_path: list[object]) -> None:
    fake_build(tmp_path)
    assert native.use_sources({native.PURE_ENV: "0"}, tmp_path) == "compiled"
    assert native.use_sources({native.PURE_ENV: "1"}, tmp_path) == "pure"
    finders = [f for f in clean_meta_path if isinstance(f, native.SourceFinder)]
    assert len(finders) == 1
    assert native.use_sources({native.PURE_ENV: "1"}, tmp_path) == "pure"  # once per process
    assert len([f for f in clean_meta_path if isinstance(f, native.SourceFinder)]) == 1


def test_the_source_finder_loads_the_py_file_of_listed_modules_only(tmp_path: Path) -> None:
    fake_build(tmp_path)
    finder = native.SourceFinder(native.COMPILED, tmp_path)
    spec = finder.find_spec("proxy.http.exchange")
    assert spec is not None and spec.origin == str(native.source_path("proxy.http.exchange", tmp_path))
    assert finder.find_spec("proxy.http.h2_connection") is None


def test_this_process_runs_what_the_environment_and_the_build_say() -> None:
    # the test suite runs twice in CI: compiled (when the install could compile) and with
    # KAMAL_PROXY_PURE=1, where every per-request module must come from its source
    pure = os.environ.get(native.PURE_ENV, "") not in ("", "0")
    built = native.compiled_present() and not native.stale_sources()
    assert native.is_compiled(proxy.http.exchange) == (built and not pure)
    if pure:
        assert all(not native.is_compiled(sys.modules[m]) for m in native.COMPILED if m in sys.modules)


def test_the_daemons_the_tests_start_run_what_this_process_runs() -> None:
    # the daemon and its workers get the test environment (clean_env): KAMAL_PROXY_PURE must reach them
    probe = "import proxy.http.exchange as e, proxy.native as n; print(n.is_compiled(e))"
    out = subprocess.run(
        [sys.executable, "-c", probe], env=clean_env(), capture_output=True, text=True, timeout=60, check=True
    )
    assert out.stdout.strip() == str(native.is_compiled(proxy.http.exchange))
