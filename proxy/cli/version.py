"""`version`: the installed package's version (kamal-proxy has no such command; people ask it anyway,
while Kamal reads the version from the image tag)."""

from __future__ import annotations

from importlib import metadata

from proxy.cli.common import Usage

DISTRIBUTION = "kamal-proxy-py"

USAGE = Usage(name="version", use="version", short="Print the version", flags=[], nargs=0)


def installed_version() -> str:
    """The version pip installed; from a source checkout that was never installed, ``unknown``."""
    try:
        return metadata.version(DISTRIBUTION)
    except metadata.PackageNotFoundError:
        return "unknown"


def main(argv: list[str]) -> int:
    if USAGE.parse(argv) is None:
        return 0
    print(installed_version())
    return 0
