"""`proxyctl` / `kamal-proxy`: one program, kamal-proxy's subcommands, flags and exit codes."""

from __future__ import annotations

import importlib
import pkgutil
import sys
from types import ModuleType

from proxy import cli
from proxy.cli.common import Usage
from proxy.cli.flags import FlagError
from proxy.control import CallError

ROOT_HEAD = """kamal-proxy lets you run multiple apps on a single server, routing traffic to each of them
and performing zero-downtime deploys.

Usage:
  kamal-proxy [command]

Available Commands:
"""
ROOT_TAIL = """
Flags:
  -h, --help   help for kamal-proxy

Use "kamal-proxy [command] --help" for more information about a command.
"""
NAME_PADDING = 11  # cobra's minimum


def subcommands(package: ModuleType = cli) -> dict[str, ModuleType]:
    """Every module of ``package`` (``proxy/cli/``) with a ``USAGE`` is a subcommand: adding one is
    adding the module (a package groups subcommands, as ``rollout``). Keys are names and aliases."""
    found: dict[str, ModuleType] = {}
    for info in pkgutil.iter_modules(package.__path__):
        module = importlib.import_module(f"{package.__name__}.{info.name}")
        usage = getattr(module, "USAGE", None)
        if isinstance(usage, Usage):
            for name in (usage.name, *usage.aliases):
                found[name] = module
    return found


def root_help(commands: dict[str, ModuleType]) -> str:
    shorts = {m.USAGE.name: m.USAGE.short for m in commands.values()}
    shorts["help"] = "Help about any command"
    lines = [f"  {name.ljust(NAME_PADDING)} {shorts[name]}\n" for name in sorted(shorts)]
    return ROOT_HEAD + "".join(lines) + ROOT_TAIL


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    commands = subcommands()
    if not args or args[0] in ("-h", "--help"):
        print(root_help(commands), end="")
        return 0
    name, rest = args[0], args[1:]
    if name == "help":
        if rest and rest[0] in commands:
            return int(commands[rest[0]].main(["--help"]))
        print(root_help(commands), end="")
        return 0
    command = commands.get(name)
    if command is None:
        print(f'Error: unknown command "{name}" for "kamal-proxy"', file=sys.stderr)
        print("Run 'kamal-proxy --help' for usage.", file=sys.stderr)
        return 1
    try:
        return int(command.main(rest))
    except (FlagError, CallError) as exc:
        print(f"Error: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    sys.exit(main())
