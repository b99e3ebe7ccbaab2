"""`remove SERVICE` (alias `rm`): delete the service's routes now, without draining."""

from __future__ import annotations

from proxy.cli.common import Usage, send
from proxy.commands import RemoveCommand

USAGE = Usage(
    aliases=("rm",), name="remove", use="remove <service>", short="Remove the service", flags=[], nargs=1
)


def main(argv: list[str]) -> int:
    parsed = USAGE.parse(argv)
    if parsed is None:
        return 0
    send(RemoveCommand(service=parsed.args[0]))
    return 0
