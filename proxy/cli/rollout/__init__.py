"""`rollout deploy | set | stop`: the canary commands, one module each (kamal-proxy's `rollout` group).

`rollout` alone prints its help; an unknown subcommand is cobra's error.
"""

from __future__ import annotations

import sys

from proxy.cli.common import Usage
from proxy.cli.flags import FlagError

USAGE = Usage(name="rollout", use="rollout [command]", short="Manage rollout settings", flags=[], nargs=None)


def help_text() -> str:
    from proxy.cli import rollout
    from proxy.cli.main import subcommands

    commands = {m.USAGE.name: m.USAGE.short for m in subcommands(rollout).values()}
    lines = "".join(f"  {name.ljust(11)} {short}\n" for name, short in sorted(commands.items()))
    return (
        "Manage rollout settings\n\nUsage:\n  kamal-proxy rollout [command]\n\nAvailable Commands:\n"
        f"{lines}\nFlags:\n  -h, --help   help for rollout\n\n"
        'Use "kamal-proxy rollout [command] --help" for more information about a command.\n'
    )


def main(argv: list[str]) -> int:
    from proxy.cli import rollout
    from proxy.cli.main import subcommands

    if not argv or argv[0] in ("-h", "--help", "help"):
        sys.stdout.write(help_text())
        return 0
    command = subcommands(rollout).get(argv[0])
    if command is None:
        raise FlagError(f'unknown command "{argv[0]}" for "kamal-proxy rollout"')
    return int(command.main(argv[1:]))
