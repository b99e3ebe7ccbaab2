"""The release version, as Kamal picks it: ``--version``, else ``$VERSION``, else git's HEAD.

A dirty working tree adds ``_uncommitted_<random>`` when the build context is the working tree
(``builder.context: .``), because the image is then built from files no commit holds.
"""

from __future__ import annotations

import os
import secrets
import subprocess
from pathlib import Path

from deployer.errors import DeployerError


def git_version(root: Path, *, uncommitted_suffix: bool) -> str | None:
    """HEAD's commit, or None outside a git checkout."""
    try:
        proc = subprocess.run(
            ["git", "rev-parse", "HEAD"], cwd=root, capture_output=True, text=True, check=False
        )
    except OSError:
        return None
    if proc.returncode != 0:
        return None
    version = proc.stdout.strip()
    if uncommitted_suffix:
        dirty = subprocess.run(
            ["git", "status", "--porcelain"], cwd=root, capture_output=True, text=True, check=False
        ).stdout.strip()
        if dirty:
            version += f"_uncommitted_{secrets.token_hex(8)}"
    return version


def declared_version(explicit: str | None) -> str | None:
    """``--version`` or ``$VERSION``: the version given without asking git."""
    return explicit or os.environ.get("VERSION") or None


def resolve_version(explicit: str | None, root: Path, *, uncommitted_suffix: bool) -> str:
    version = declared_version(explicit) or git_version(root, uncommitted_suffix=uncommitted_suffix)
    if not version:
        raise DeployerError("cannot determine the version: not a git checkout (pass --version V)")
    return version
