"""What every CLI command shares: the help flag, argument-count checks and the one control call.

A subcommand is a module of ``proxy/cli/`` with a ``USAGE`` (name, aliases, one-line help, flags)
and a ``main(argv) -> exit code``; ``main.py`` finds them, nothing else lists them.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from typing import Any

from proxy import defaults
from proxy.cli.flags import Flag, FlagError, Parsed, help_text, parse_flags
from proxy.commands import Command
from proxy.control import DialError, call


class Usage:
    """A command's name, usage string and flags; parses argv or prints help."""

    def __init__(
        self,
        *,
        name: str,
        use: str,
        short: str,
        flags: list[Flag],
        nargs: int | None,
        aliases: tuple[str, ...] = (),
        parent: str = "",
    ) -> None:
        self.name = name
        self.command_path = f"kamal-proxy {parent} {name}" if parent else f"kamal-proxy {name}"
        self.aliases = aliases
        self.use = use
        self.short = short
        self.flags = [*flags, Flag("help", "bool", False, f"help for {name}", shorthand="h")]
        self.nargs = nargs

    def parse(self, argv: list[str]) -> Parsed | None:
        """The parsed flags, or None when help was asked for (and printed)."""
        parsed = parse_flags(self.flags, argv)
        if parsed.values.get("help"):
            print(self.help(), end="")
            return None
        if self.nargs is not None and len(parsed.args) != self.nargs:
            raise FlagError(f"accepts {self.nargs} arg(s), received {len(parsed.args)}")
        return parsed

    def help(self) -> str:
        return help_text(self.command_path, self.use, self.flags, description=self.short)


def send(command: Command) -> Any:
    """One control call; when no daemon answers, kamal-proxy's dial error gets a hint appended."""
    try:
        return call(command)
    except DialError as exc:
        if not exc.no_daemon:
            raise
        hint = f"is `kamal-proxy run` running? socket: {exc.path}, {socket_origin(os.environ)}"
        raise DialError(f"{exc} ({hint})", path=exc.path, no_daemon=True) from None


def socket_origin(environ: Mapping[str, str]) -> str:
    """Which setting chose the control socket's path (the order of proxy.control.socket_path)."""
    for name in ("KAMAL_PROXY_SOCKET", "XDG_RUNTIME_DIR"):
        if environ.get(name):
            return f"from ${name}"
    return "from $TMPDIR" if environ.get("TMPDIR") else "the default"


DRAIN_TIMEOUT = Flag(
    "drain-timeout", "duration", defaults.DRAIN_TIMEOUT, "How long to allow in-flight requests to complete"
)

# Flags `deploy` and `rollout deploy` share.
TARGET = Flag("target", "strings", [], "Target host(s) to deploy", required=True)
READ_TARGET = Flag("read-target", "strings", [], "Read-only target host(s) to deploy")
DEPLOY_TIMEOUT = Flag(
    "deploy-timeout",
    "duration",
    defaults.DEPLOY_TIMEOUT,
    "Maximum time to wait for the new target to become healthy",
)
DEPLOY_DRAIN_TIMEOUT = Flag(
    "drain-timeout",
    "duration",
    defaults.DRAIN_TIMEOUT,
    "Maximum time to allow existing connections to drain before removing old target",
)


def seconds(parsed: Parsed, name: str) -> float:
    value = parsed.values[name]
    assert isinstance(value, int | float)
    return float(value)
