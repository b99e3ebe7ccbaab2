"""`rollout set SERVICE [--percent N] [--list a,b]`: split traffic between the active and rollout targets."""

from __future__ import annotations

from proxy.cli.common import Usage, send
from proxy.cli.flags import Flag, FlagError
from proxy.commands import RolloutSetCommand

USAGE = Usage(
    name="set",
    use="set <service>",
    short="Set traffic split for rollout",
    flags=[
        Flag("percent", "int", 0, "Percentage of traffic to send to the new target"),
        Flag("list", "strings", [], "Rollout to specific values"),
    ],
    nargs=1,
    parent="rollout",
)


def main(argv: list[str]) -> int:
    parsed = USAGE.parse(argv)
    if parsed is None:
        return 0
    if "percent" not in parsed.changed and "list" not in parsed.changed:
        raise FlagError("at least one of the flags in the group [percent list] is required")
    percent, allowlist = parsed.values["percent"], parsed.values["list"]
    assert isinstance(percent, int) and isinstance(allowlist, list)
    send(RolloutSetCommand(service=parsed.args[0], percentage=percent, allowlist=tuple(map(str, allowlist))))
    return 0
