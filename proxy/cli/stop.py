"""`stop SERVICE` (maintenance mode): answer 503 with an optional message until `resume`."""

from __future__ import annotations

from proxy.cli.common import DRAIN_TIMEOUT, Usage, seconds, send
from proxy.cli.flags import Flag
from proxy.commands import StopCommand

USAGE = Usage(
    name="stop",
    use="stop <service>",
    short="Stop a service",
    flags=[
        DRAIN_TIMEOUT,
        Flag("message", "string", "", "Message to display to clients while stopped"),
    ],
    nargs=1,
)


def main(argv: list[str]) -> int:
    parsed = USAGE.parse(argv)
    if parsed is None:
        return 0
    send(
        StopCommand(
            service=parsed.args[0],
            drain_timeout=seconds(parsed, "drain-timeout"),
            message=str(parsed.values["message"]),
        )
    )
    return 0
