"""`pause SERVICE`: hold new requests (up to --max-pause each) and let those in flight finish."""

from __future__ import annotations

from proxy import defaults
from proxy.cli.common import Usage, send
from proxy.cli.flags import Flag
from proxy.commands import PauseCommand

USAGE = Usage(
    name="pause",
    use="pause <service>",
    short="Pause a service",
    flags=[
        Flag(
            "drain-timeout",
            "duration",
            defaults.DRAIN_TIMEOUT,
            "How long to allow in-flight requests to complete",
        ),
        Flag("max-pause", "duration", defaults.MAX_PAUSE, "Maximum time to pause for"),
    ],
    nargs=1,
)


def main(argv: list[str]) -> int:
    parsed = USAGE.parse(argv)
    if parsed is None:
        return 0
    v = parsed.values
    send(
        PauseCommand(
            service=parsed.args[0],
            drain_timeout=float(v["drain-timeout"]),  # type: ignore[arg-type]
            pause_timeout=float(v["max-pause"]),  # type: ignore[arg-type]
        )
    )
    return 0
