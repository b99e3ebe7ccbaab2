"""`pause SERVICE`: hold new requests (up to --max-pause each) and let those in flight finish."""

from __future__ import annotations

from proxy import defaults
from proxy.cli.common import DRAIN_TIMEOUT, Usage, seconds, send
from proxy.cli.flags import Flag
from proxy.commands import PauseCommand

USAGE = Usage(
    name="pause",
    use="pause <service>",
    short="Pause a service",
    flags=[
        DRAIN_TIMEOUT,
        Flag("max-pause", "duration", defaults.MAX_PAUSE, "Maximum time to pause for"),
    ],
    nargs=1,
)


def main(argv: list[str]) -> int:
    parsed = USAGE.parse(argv)
    if parsed is None:
        return 0
    send(
        PauseCommand(
            service=parsed.args[0],
            drain_timeout=seconds(parsed, "drain-timeout"),
            pause_timeout=seconds(parsed, "max-pause"),
        )
    )
    return 0
