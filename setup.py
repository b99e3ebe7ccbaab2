"""Optional compiled modules: ``proxy.native.COMPILED``, compiled with mypyc when it and a C
compiler are available. Everything else is in pyproject.toml.

Never fails the install: without mypyc, or when the C compiler fails, it says so and installs the
pure-Python package (the compiled modules are a speed-up only, the sources are always installed).
``KAMAL_PROXY_PURE=1`` at install time skips compiling. The build records the digest of every
compiled source (``proxy/_native_sources.json``), so a source edited later is noticed at import
(see proxy/native.py).
"""

from __future__ import annotations

import importlib.util
import json
import os
import shutil
import sys
import sysconfig
from pathlib import Path
from typing import Any

from setuptools import setup  # type: ignore[import-untyped]
from setuptools.command.build_ext import build_ext  # type: ignore[import-untyped]

ROOT = Path(__file__).resolve().parent


def _native() -> Any:
    # proxy/native.py by path: importing the package would need its dependencies at build time
    spec = importlib.util.spec_from_file_location("_kamal_proxy_native", ROOT / "proxy" / "native.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


NATIVE = _native()


def _say(message: str) -> None:
    sys.stderr.write(f"kamal-proxy-py: {message}\n")


def _missing_toolchain() -> str:
    """What compiling needs and this machine lacks ("" when nothing is missing)."""
    compiler = (os.environ.get("CC") or sysconfig.get_config_var("CC") or "cc").split()[0]
    if shutil.which(compiler) is None:
        return f"no C compiler ({compiler})"
    if not Path(sysconfig.get_paths()["include"], "Python.h").exists():
        return "no Python headers (Python.h; Debian: python3-dev)"
    return ""


def _extensions() -> list[Any]:
    if os.environ.get(NATIVE.PURE_ENV, "") not in ("", "0"):
        _say(f"{NATIVE.PURE_ENV} is set: installing the pure-Python modules only")
        return []
    missing = _missing_toolchain()
    if missing:
        _say(f"{missing}: installing the pure-Python modules only (slower)")
        return []
    try:
        from mypyc.build import mypycify
    except ImportError:
        _say("mypyc is not available: installing the pure-Python modules only (slower)")
        return []
    sources = [str(NATIVE.source_path(m, Path(".")).as_posix()) for m in NATIVE.COMPILED]
    try:
        # The runtime dependencies are not installed in an isolated build (`pip install .`, the
        # Dockerfile): their types are Any, so the strict checks about Any (a class deriving from
        # h2's, a value returned from hpack) are relaxed here; `make lint` keeps them on.
        flags = ["--ignore-missing-imports", "--allow-subclassing-any", "--no-warn-return-any"]
        return list(mypycify([*flags, *sources], opt_level="3"))
    except (Exception, SystemExit) as exc:  # mypyc refusing a module must not fail the install
        _say(f"mypyc could not compile the per-request modules ({exc}): installing pure Python only")
        return []


class OptionalBuildExt(build_ext):  # type: ignore[misc]
    """build_ext that installs pure Python when compiling fails, and stamps what it compiled."""

    def run(self) -> None:
        if not self.extensions:
            return
        try:
            super().run()
        except Exception as exc:  # no compiler, no Python headers, a compiler error
            _say(f"compiling the per-request modules failed ({exc}): installing pure Python only (slower)")
            self._remove_outputs()
            return
        self._stamp()

    def _remove_outputs(self) -> None:
        for output in self.get_outputs():
            Path(output).unlink(missing_ok=True)
            if self.inplace or getattr(self, "editable_mode", False):
                Path(ROOT, os.path.relpath(output, self.build_lib)).unlink(missing_ok=True)
        del self.extensions[:]

    def _stamp(self) -> None:
        stamp = json.dumps(NATIVE.source_digests(ROOT), indent=1, sort_keys=True) + "\n"
        targets = [Path(self.build_lib, "proxy", NATIVE.STAMP)]
        if self.inplace or getattr(self, "editable_mode", False):
            targets.append(ROOT / "proxy" / NATIVE.STAMP)
        for target in targets:
            target.parent.mkdir(parents=True, exist_ok=True)
            target.write_text(stamp)


setup(ext_modules=_extensions(), cmdclass={"build_ext": OptionalBuildExt})
