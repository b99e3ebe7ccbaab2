"""`list` (alias `ls`): kamal-proxy's table of services, or `--json` for every detail."""

from __future__ import annotations

import json
from typing import Any

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


def table(services: dict[str, Any]) -> str:
    rows = [
        [name, s["host"], s["path"], s["target"], s["state"], "yes" if s["tls"] else "no"]
        for name, s in sorted(services.items())
    ]
    widths = [max(len(c), *(len(r[i]) for r in rows)) if rows else len(c) for i, c in enumerate(COLUMNS)]

    def line(cells: list[str] | tuple[str, ...], styles: list[str]) -> str:
        return "".join(
            f"{style}{cell.ljust(w)}{RESET}  " for cell, w, style in zip(cells, widths, styles, strict=True)
        ).rstrip(" ")

    out = [line(COLUMNS, [HEADER_STYLE] * len(COLUMNS))]
    for row in rows:
        out.append(line(row, [NAME_STYLE] + [CELL_STYLE] * (len(COLUMNS) - 1)))
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
        print(table(services), end="")
    return 0
