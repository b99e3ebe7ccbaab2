"""`resume SERVICE`: back to running; held requests go on to the targets active now."""

from __future__ import annotations

from proxy.cli.common import Usage, send
from proxy.commands import ResumeCommand

USAGE = Usage(name="resume", use="resume <service>", short="Resume a service", flags=[], nargs=1)


def main(argv: list[str]) -> int:
    parsed = USAGE.parse(argv)
    if parsed is None:
        return 0
    send(ResumeCommand(service=parsed.args[0]))
    return 0
