"""`proxyctl` / `kamal-proxy`: one program, kamal-proxy's subcommands, flags and exit codes."""

from __future__ import annotations

import sys
from collections.abc import Callable

from proxy.cli.flags import FlagError
from proxy.control import CallError

ROOT_HELP = """kamal-proxy lets you run multiple apps on a single server, routing traffic to each of them
and performing zero-downtime deploys.

Usage:
  kamal-proxy [command]

Available Commands:
  deploy      Deploy a target host
  help        Help about any command
  list        List the services currently running
  pause       Pause a service
  remove      Remove the service
  resume      Resume a service
  run         Run the server
  stop        Stop a service
  version     Print the version

Flags:
  -h, --help   help for kamal-proxy

Use "kamal-proxy [command] --help" for more information about a command.
"""


def _commands() -> dict[str, Callable[[list[str]], int]]:
    from proxy.cli import deploy, list, pause, remove, resume, run, stop, version

    return {
        "run": run.main,
        "deploy": deploy.main,
        "remove": remove.main,
        "rm": remove.main,
        "pause": pause.main,
        "stop": stop.main,
        "resume": resume.main,
        "list": list.main,
        "ls": list.main,
        "version": version.main,
    }


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    if not args or args[0] in ("-h", "--help"):
        print(ROOT_HELP, end="")
        return 0
    commands = _commands()
    name, rest = args[0], args[1:]
    if name == "help":
        if rest and rest[0] in commands:
            return commands[rest[0]](["--help"])
        print(ROOT_HELP, end="")
        return 0
    command = commands.get(name)
    if command is None:
        print(f'Error: unknown command "{name}" for "kamal-proxy"', file=sys.stderr)
        print("Run 'kamal-proxy --help' for usage.", file=sys.stderr)
        return 1
    try:
        return command(rest)
    except (FlagError, CallError) as exc:
        print(f"Error: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    sys.exit(main())
