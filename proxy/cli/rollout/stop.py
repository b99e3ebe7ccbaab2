"""`rollout stop SERVICE`: remove the split; all traffic goes to the active targets again."""

from __future__ import annotations

from proxy.cli.common import Usage, send
from proxy.commands import RolloutStopCommand

USAGE = Usage(
    name="stop", use="stop <service>", short="Stops rollout of a service", flags=[], nargs=1, parent="rollout"
)


def main(argv: list[str]) -> int:
    parsed = USAGE.parse(argv)
    if parsed is None:
        return 0
    send(RolloutStopCommand(service=parsed.args[0]))
    return 0
