"""`stop SERVICE` (maintenance mode): answer 503 with an optional message until `resume`."""

from __future__ import annotations

from proxy import defaults
from proxy.cli.common import Usage, send
from proxy.cli.flags import Flag
from proxy.commands import StopCommand

USAGE = Usage(
    name="stop",
    use="stop <service>",
    short="Stop a service",
    flags=[
        Flag(
            "drain-timeout",
            "duration",
            defaults.DRAIN_TIMEOUT,
            "How long to allow in-flight requests to complete",
        ),
        Flag("message", "string", "", "Message to display to clients while stopped"),
    ],
    nargs=1,
)


def main(argv: list[str]) -> int:
    parsed = USAGE.parse(argv)
    if parsed is None:
        return 0
    v = parsed.values
    send(
        StopCommand(
            service=parsed.args[0],
            drain_timeout=float(v["drain-timeout"]),  # type: ignore[arg-type]
            message=str(v["message"]),
        )
    )
    return 0
