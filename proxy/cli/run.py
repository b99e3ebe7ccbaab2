"""`run`: start the daemon. Flags fall back to env vars; the KAMAL_PROXY_-prefixed name wins.

Ports, from a flag or the environment, must be 0-65535 and timeouts must not be negative (an
unparsable env value falls back to the default, as kamal-proxy's; an out-of-range one is an
error). `run` refuses to start while another daemon answers on the control socket.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from typing import cast

from proxy import defaults
from proxy.cli.common import Usage
from proxy.cli.flags import ENV_PREFIX, Flag, FlagError, Parsed, apply_env_defaults, env_key, env_value
from proxy.control import socket_path
from proxy.daemon import DaemonConfig, StartupError, default_workers, run_daemon
from proxy.gotext import format_duration
from proxy.http.parsers import PARSER_KINDS, ParserKind
from proxy.state import default_state_path

FLAGS = [
    Flag("debug", "bool", False, "Include debugging logs"),
    Flag("http-port", "int", defaults.HTTP_PORT, "Port to serve HTTP traffic on"),
    Flag("https-port", "int", defaults.HTTPS_PORT, "Port to serve HTTPS traffic on"),
    Flag(
        "metrics-port",
        "int",
        defaults.METRICS_PORT,
        "Publish metrics on the specified port (default zero to disable)",
    ),
    Flag(
        "http3",
        "bool",
        False,
        "Serve HTTP/3 on the HTTPS port (not supported yet; accepted for compatibility)",
    ),
    Flag(
        "http-parser",
        "string",
        "auto",
        "HTTP/1 parser: auto (httptools), httptools or h11 (strict, pure Python)",
    ),
    Flag(
        "workers",
        "int",
        0,
        "Worker processes serving traffic (default: one per CPU this process may run on)",
    ),
    Flag("bind", "string", "", "Address to listen on (default: all interfaces)"),
    Flag(
        "read-header-timeout",
        "duration",
        defaults.READ_HEADER_TIMEOUT,
        "Time a client may take to send request headers",
    ),
    Flag(
        "idle-timeout",
        "duration",
        defaults.IDLE_TIMEOUT,
        "Time an idle keep-alive client connection is kept open",
    ),
    Flag(
        "request-body-timeout",
        "duration",
        defaults.REQUEST_BODY_TIMEOUT,
        "Time a request body may make no progress before the request gets 408",
    ),
    Flag(
        "write-timeout",
        "duration",
        defaults.WRITE_TIMEOUT,
        "Time a response may wait for the client to read any of it before the connection is closed "
        "(0 to disable)",
    ),
]

USAGE = Usage(name="run", use="run", short="Run the server", flags=FLAGS, nargs=0)

PORT_FLAGS = ("http-port", "https-port", "metrics-port")
MAX_PORT = 65535
TIMEOUT_FLAGS = ("read-header-timeout", "idle-timeout", "request-body-timeout", "write-timeout")


def refused(parsed: Parsed, environ: Mapping[str, str], name: str, shown: str, reason: str) -> FlagError:
    """The error for flag ``name``'s out-of-range value, naming where it came from: the command
    line (``shown`` is its value) or the environment variable (quoted as it was set)."""
    if name in parsed.changed:
        return FlagError(f'invalid argument "{shown}" for "--{name}" flag: {reason}')
    key = env_key(name)
    var = ENV_PREFIX + key if ENV_PREFIX + key in environ else key
    return FlagError(f'invalid value "{environ.get(var, shown)}" for environment variable {var}: {reason}')


def check_ports(parsed: Parsed, environ: Mapping[str, str]) -> None:
    """Every port flag's value (given or from the environment) is a TCP port number."""
    for name in PORT_FLAGS:
        value = parsed.values[name]
        assert isinstance(value, int)
        if not 0 <= value <= MAX_PORT:
            raise refused(parsed, environ, name, str(value), f"port must be between 0 and {MAX_PORT}")


def check_timeouts(parsed: Parsed, environ: Mapping[str, str]) -> None:
    """Every client timeout (given or from the environment) is a duration of 0 or more (before, a
    negative one passed here and every worker refused its configuration at start-up)."""
    for name in TIMEOUT_FLAGS:
        value = parsed.values[name]
        assert isinstance(value, float)
        if value < 0:
            raise refused(parsed, environ, name, format_duration(value), "must not be negative")


def worker_count(parsed: Parsed, environ: Mapping[str, str]) -> int:
    """--workers / $WORKERS: 1..MAX_WORKERS; neither given: one per usable CPU."""
    value = parsed.values["workers"]
    assert isinstance(value, int)
    if value == 0 and "workers" not in parsed.changed and env_value("workers", environ) is None:
        return default_workers()
    if 1 <= value <= defaults.MAX_WORKERS:
        return value
    raise refused(parsed, environ, "workers", str(value), f"must be between 1 and {defaults.MAX_WORKERS}")


def parser_kind(value: str) -> ParserKind:
    if value == "auto":
        try:
            import httptools  # noqa: F401
        except ImportError:
            return "h11"
        return "httptools"
    if value not in PARSER_KINDS:
        raise FlagError(
            f'invalid argument "{value}" for "--http-parser" flag: must be auto, httptools or h11'
        )
    return value


def main(argv: list[str]) -> int:
    usage = Usage(
        name=USAGE.name,
        use=USAGE.use,
        short=USAGE.short,
        flags=apply_env_defaults(FLAGS, os.environ, exclude=("help", "http3", "http-parser", "bind")),
        nargs=0,
    )
    parsed = usage.parse(argv)
    if parsed is None:
        return 0
    check_ports(parsed, os.environ)
    check_timeouts(parsed, os.environ)
    v = parsed.values
    config = DaemonConfig(
        http_port=int(cast(int, v["http-port"])),
        https_port=int(cast(int, v["https-port"])),
        metrics_port=int(cast(int, v["metrics-port"])),
        debug=bool(v["debug"]),
        http_parser=parser_kind(str(v["http-parser"])),
        bind=str(v["bind"]) or None,
        read_header_timeout=float(cast(float, v["read-header-timeout"])),
        idle_timeout=float(cast(float, v["idle-timeout"])),
        workers=worker_count(parsed, os.environ),
        request_body_timeout=float(cast(float, v["request-body-timeout"])),
        write_timeout=float(cast(float, v["write-timeout"])),
        socket_path=socket_path(),
        state_path=default_state_path(),
    )
    try:
        return run_daemon(config)
    except StartupError as exc:
        raise FlagError(str(exc)) from None
