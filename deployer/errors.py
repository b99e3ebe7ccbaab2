"""Exception types shared by every layer of the deployer."""

from __future__ import annotations


class DeployerError(Exception):
    """Base class: every error the CLI reports as ``ERROR (<Class>): <message>``."""


class ConfigError(DeployerError):
    """The configuration is invalid. The message names the file, the key path and what was expected."""


class SecretError(ConfigError):
    """A secret could not be resolved."""


class HookError(DeployerError):
    """A hook exited non-zero."""


class LockError(DeployerError):
    """The deploy lock is held by someone else (or could not be released)."""


class BootError(DeployerError):
    """A new container failed to boot or become healthy."""


class CommandFailed(DeployerError):
    """A command exited non-zero on a host."""

    def __init__(self, host: str, command: str, status: int, stdout: str = "", stderr: str = "") -> None:
        self.host = host
        self.command = command
        self.status = status
        self.stdout = stdout
        self.stderr = stderr
        detail = (stderr.strip() or stdout.strip()).splitlines()
        tail = "\n".join(detail[-20:])
        super().__init__(f"host {host}: command `{command}` exited {status}" + (f": {tail}" if tail else ""))


class MultiHostError(DeployerError):
    """Several hosts failed; every failure is kept."""

    def __init__(self, errors: dict[str, BaseException]) -> None:
        self.errors = errors
        lines = [f"Exceptions on {len(errors)} hosts:"]
        for host, err in errors.items():
            text = str(err)
            if not text.startswith(f"host {host}"):
                text = f"host {host}: {text}"
            lines.append("  " + text.replace("\n", "\n    "))
        super().__init__("\n".join(lines))


def _default_warn(message: str) -> None:
    import sys

    print(f"  WARN {message}", file=sys.stderr)


_warn_handler = [_default_warn]


def warn(message: str) -> None:
    """Report a non-fatal problem (deprecations, fallbacks) through the active handler."""
    _warn_handler[0](message)


def set_warn_handler(handler: object) -> None:
    """Install a ``Callable[[str], None]`` as the warning sink (the CLI routes it to its output)."""
    assert callable(handler)
    _warn_handler[0] = handler
