"""The per-request modules compiled with mypyc, and when the package uses their pure-Python sources.

``pip install`` compiles ``COMPILED`` with mypyc when it can (see setup.py; without mypyc or a C
compiler it installs pure Python and says so), as one group: the compiled modules call each other
directly, so the group is used whole or not at all. The build records a SHA-256 of each compiled
source in ``STAMP`` next to this file. The package uses the plain ``.py`` files instead when

* ``KAMAL_PROXY_PURE=1`` is set (the pure-Python path is tested with it), or
* a compiled source changed since the build (an edited file in an editable checkout must not be
  shadowed by its stale compiled module): then it warns once on stderr, naming the files and the
  command that rebuilds them (``make build-ext``).

Module-level constants in these modules are annotated ``Final``: compiled, they are then read from
C statics or inlined instead of being looked up in the module's dict at every use (about 9% of a
compiled request's instructions); uncompiled, the annotation costs nothing.

``use_sources()`` is called once, when the ``proxy`` package is imported, before any compiled
module can be.
"""

from __future__ import annotations

import hashlib
import importlib.abc
import importlib.machinery
import importlib.util
import json
import os
import sys
from collections.abc import Sequence
from pathlib import Path
from types import ModuleType

COMPILED = (
    "proxy.access_log",
    "proxy.http.connection",
    "proxy.http.exchange",
    "proxy.http.framing",
    "proxy.http.headers",
    "proxy.http.listener",
    "proxy.http.httptools_parser",
    "proxy.http.parser",
    "proxy.http.parsers",
    "proxy.http.record",
    "proxy.http.upstream",
    "proxy.http.writer",
    "proxy.log",
    "proxy.service",
    "proxy.service_map",
    "proxy.targets",
)
STAMP = "_native_sources.json"
PURE_ENV = "KAMAL_PROXY_PURE"
PACKAGE_ROOT = Path(__file__).resolve().parent.parent  # the directory holding proxy/


def source_path(module: str, root: Path = PACKAGE_ROOT) -> Path:
    return root.joinpath(*module.split(".")).with_suffix(".py")


def digest(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def source_digests(root: Path = PACKAGE_ROOT) -> dict[str, str]:
    """What the build records: each compiled module's source digest."""
    return {module: digest(source_path(module, root)) for module in COMPILED}


def compiled_present(root: Path = PACKAGE_ROOT) -> bool:
    """Whether any compiled module sits next to the sources."""
    suffixes = importlib.machinery.EXTENSION_SUFFIXES
    for module in COMPILED:
        base = source_path(module, root).with_suffix("")
        if any(base.with_name(base.name + suffix).exists() for suffix in suffixes):
            return True
    return False


def stale_sources(root: Path = PACKAGE_ROOT) -> list[str]:
    """Compiled modules whose source differs from what was compiled (all of them when the stamp is
    missing or unreadable); empty when nothing is compiled."""
    if not compiled_present(root):
        return []
    try:
        recorded = json.loads((root / "proxy" / STAMP).read_text())
    except (OSError, ValueError):
        recorded = {}
    if not isinstance(recorded, dict):
        recorded = {}
    stale = []
    for module in COMPILED:
        try:
            current = digest(source_path(module, root))
        except OSError:
            continue  # no source to fall back to: the compiled module is all there is
        if recorded.get(module) != current:
            stale.append(module)
    return stale


class SourceFinder(importlib.abc.MetaPathFinder):
    """Imports the listed modules from their ``.py`` files even where a compiled module exists."""

    def __init__(self, modules: Sequence[str], root: Path) -> None:
        self._modules = frozenset(modules)
        self._root = root

    def find_spec(
        self, fullname: str, path: Sequence[str] | None = None, target: ModuleType | None = None
    ) -> importlib.machinery.ModuleSpec | None:
        if fullname not in self._modules:
            return None
        source = source_path(fullname, self._root)
        if not source.exists():
            return None
        return importlib.util.spec_from_file_location(fullname, source)


def use_sources(environ: dict[str, str] | os._Environ[str] = os.environ, root: Path = PACKAGE_ROOT) -> str:
    """Decide once per process: returns "pure" (sources forced by the environment), "stale"
    (sources, since a compiled module is out of date), "compiled" or "none" (nothing compiled)."""
    if any(isinstance(f, SourceFinder) for f in sys.meta_path):
        return "pure"
    if environ.get(PURE_ENV, "") not in ("", "0"):
        sys.meta_path.insert(0, SourceFinder(COMPILED, root))
        return "pure"
    if not compiled_present(root):
        return "none"
    stale = stale_sources(root)
    if stale:
        names = ", ".join(str(source_path(m, root).relative_to(root)) for m in stale)
        sys.stderr.write(
            f"kamal-proxy: {names} changed since the compiled modules were built; running the pure-Python "
            f"sources (rebuild the compiled modules with `make build-ext`)\n"
        )
        sys.meta_path.insert(0, SourceFinder(COMPILED, root))
        return "stale"
    return "compiled"


def is_compiled(module: ModuleType) -> bool:
    """Whether ``module`` was loaded from a compiled extension."""
    return isinstance(getattr(module, "__loader__", None), importlib.machinery.ExtensionFileLoader)
