"""`list` (alias `ls`): kamal-proxy's table of services, or `--json` for every detail."""

from __future__ import annotations

import json
import os
import sys
from collections.abc import Mapping
from typing import Any, TextIO

from proxy.cli.common import Usage, send
from proxy.cli.flags import Flag
from proxy.commands import ListCommand

USAGE = Usage(
    aliases=("ls",),
    name="list",
    use="list",
    short="List the services currently running",
    flags=[Flag("json", "bool", False, "print machine-readable JSON")],
    nargs=0,
)

HEADER_STYLE = "\033[3;94m"
NAME_STYLE = "\033[1;34m"
CELL_STYLE = "\033[m"
RESET = "\033[0m"
COLUMNS = ("Service", "Host", "Path", "Target", "State", "TLS")


def use_colour(stream: TextIO, environ: Mapping[str, str]) -> bool:
    """kamal-proxy always styles its table; we do only on a terminal, and never when ``NO_COLOR`` is
    set to anything non-empty (https://no-color.org), so pipes and logs get plain text."""
    if environ.get("NO_COLOR"):
        return False
    try:
        return stream.isatty()
    except ValueError:  # closed stream
        return False


def rollout_cell(rollout: dict[str, Any] | None) -> str:
    """The Rollout column: the rollout targets and the split (kamal-proxy's newer `list` has one too)."""
    if not rollout:
        return ""
    percentage = rollout.get("percentage")
    if percentage is None:
        return f"{rollout['target']} (no split)"
    allowlist = rollout.get("allowlist") or []
    listed = f", list: {','.join(allowlist)}" if allowlist else ""
    return f"{rollout['target']} ({percentage}%{listed})"


def table(services: dict[str, Any], *, colour: bool = True) -> str:
    """kamal-proxy's table; a Rollout column is added only while some service has rollout targets,
    so the table without rollouts is exactly the reference version's."""
    rows = [
        [name, s["host"], s["path"], s["target"], s["state"], "yes" if s["tls"] else "no"]
        for name, s in sorted(services.items())
    ]
    columns: tuple[str, ...] = COLUMNS
    if any(s.get("rollout") for s in services.values()):
        columns += ("Rollout",)
        for row, (_, s) in zip(rows, sorted(services.items()), strict=True):
            row.append(rollout_cell(s.get("rollout")))
    widths = [max(len(c), *(len(r[i]) for r in rows)) if rows else len(c) for i, c in enumerate(columns)]

    def line(cells: list[str] | tuple[str, ...], styles: list[str]) -> str:
        if not colour:
            return "  ".join(cell.ljust(w) for cell, w in zip(cells, widths, strict=True)).rstrip(" ")
        return "".join(
            f"{style}{cell.ljust(w)}{RESET}  " for cell, w, style in zip(cells, widths, styles, strict=True)
        ).rstrip(" ")

    out = [line(columns, [HEADER_STYLE] * len(columns))]
    for row in rows:
        out.append(line(row, [NAME_STYLE] + [CELL_STYLE] * (len(columns) - 1)))
    return "\n".join(out) + "\n"


def main(argv: list[str]) -> int:
    parsed = USAGE.parse(argv)
    if parsed is None:
        return 0
    result = send(ListCommand())
    services = result.get("services", {})
    if parsed.values["json"]:
        print(json.dumps(services, indent=2, sort_keys=True))
    else:
        print(table(services, colour=use_colour(sys.stdout, os.environ)), end="")
    return 0
