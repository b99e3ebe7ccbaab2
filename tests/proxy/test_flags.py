"""Table tests for the cobra/pflag reimplementation in proxy.cli.flags."""

from __future__ import annotations

import shlex

import pytest

from proxy.cli.flags import (
    Flag,
    FlagError,
    HelpRequested,
    Parsed,
    apply_env_defaults,
    check_required,
    env_value,
    help_text,
    parse_bool,
    parse_flags,
)
from proxy.gotext import format_duration, go_quote, parse_duration, parse_duration_ns

HELP = Flag("help", "bool", False, "help for deploy", shorthand="h")

DEPLOY_FLAGS: list[Flag] = [
    HELP,
    Flag("target", "strings", [], "Target host(s) to deploy", required=True),
    Flag("read-target", "strings", [], "Read-only target(s)"),
    Flag("host", "strings", [], "Host(s) to serve this target on (empty for wildcard)"),
    Flag("path-prefix", "strings", [], "Deploy the service below a path prefix"),
    Flag("strip-path-prefix", "bool", True, "Strip the path prefix from the request"),
    Flag("tls", "bool", False, "Configure TLS for this target (requires a non-empty host)"),
    Flag("tls-acme-cache-path", "string", "/home/kamal-proxy/.config/kamal-proxy/certs", "ACME cache"),
    Flag("deploy-timeout", "duration", 30.0, "Maximum time to wait for the new target to become healthy"),
    Flag("drain-timeout", "duration", 30.0, "Maximum time to allow existing connections to drain"),
    Flag("health-check-interval", "duration", 1.0, "Interval between health checks"),
    Flag("health-check-path", "string", "/up", "Path to check for health"),
    Flag("health-check-port", "int", 0, "Port to check (default: target port)"),
    Flag("force", "bool", False, "Skip the health check wait"),
    Flag("buffer-requests", "bool", False, "Enable request buffering"),
    Flag("buffer-responses", "bool", False, "Enable response buffering"),
    Flag("buffer-memory", "bytes", 1048576, "Max size of memory buffer"),
    Flag(
        "max-request-body",
        "bytes",
        0,
        "Max size of request body when buffering (default of 0 means unlimited)",
    ),
    Flag("forward-headers", "bool", False, "Forward X-Forwarded headers to target"),
    Flag(
        "log-request-header",
        "strings",
        [],
        "Additional request header to log (may be specified multiple times)",
    ),
    Flag("weight", "float", 0.0, "A float flag"),
]


def deploy(argv: str | list[str]) -> Parsed:
    return parse_flags(DEPLOY_FLAGS, shlex.split(argv) if isinstance(argv, str) else argv)


# --------------------------------------------------------------------------------------------
# Kamal 2's exact command lines (spec §5.2)

KAMAL_DEPLOY = (
    'deploy app-web --target="172.1.0.2:80" --deploy-timeout="30s" --drain-timeout="30s" '
    '--buffer-requests --buffer-responses --log-request-header="Cache-Control" '
    '--log-request-header="Last-Modified" --log-request-header="User-Agent"'
)


def test_kamal_deploy_command_line() -> None:
    argv = shlex.split(KAMAL_DEPLOY)
    assert argv[0] == "deploy"
    parsed = parse_flags(DEPLOY_FLAGS, argv[1:])
    assert parsed.args == ["app-web"]
    assert parsed.values["target"] == ["172.1.0.2:80"]
    assert parsed.values["deploy-timeout"] == 30.0
    assert parsed.values["drain-timeout"] == 30.0
    assert parsed.values["buffer-requests"] is True
    assert parsed.values["buffer-responses"] is True
    assert parsed.values["log-request-header"] == ["Cache-Control", "Last-Modified", "User-Agent"]
    assert parsed.values["tls"] is False
    assert parsed.values["strip-path-prefix"] is True
    assert parsed.values["buffer-memory"] == 1048576
    assert parsed.values["host"] == []
    assert parsed.changed == frozenset(
        {
            "target",
            "deploy-timeout",
            "drain-timeout",
            "buffer-requests",
            "buffer-responses",
            "log-request-header",
        }
    )


def test_kamal_false_bools() -> None:
    parsed = deploy(
        'app-web --target="cid:80" --buffer-requests="false" --buffer-responses="false" '
        '--forward-headers="false" --strip-path-prefix="false" --buffer-memory="2000000" '
        '--max-request-body="40000000" --host="a.com" --host="b.com" --tls'
    )
    assert parsed.args == ["app-web"]
    assert parsed.values["buffer-requests"] is False
    assert parsed.values["buffer-responses"] is False
    assert parsed.values["forward-headers"] is False
    assert parsed.values["strip-path-prefix"] is False
    assert parsed.values["buffer-memory"] == 2000000
    assert parsed.values["max-request-body"] == 40000000
    assert parsed.values["host"] == ["a.com", "b.com"]
    assert parsed.values["tls"] is True
    # "changed" records that the flag was given, even when given its default value
    assert {"buffer-requests", "forward-headers", "max-request-body"} <= parsed.changed


def test_defaults_are_copied_not_shared() -> None:
    first = deploy("app --target a --host x")
    second = deploy("app --target a")
    assert first.values["host"] == ["x"]
    assert second.values["host"] == []
    assert DEPLOY_FLAGS[3].default == []


# --------------------------------------------------------------------------------------------
# Syntax table: argv -> (selected values, positionals)


@pytest.mark.parametrize(
    ("argv", "expected", "args"),
    [
        (["app", "--target", "t:80"], {"target": ["t:80"]}, ["app"]),
        (["app", "--target=t:80"], {"target": ["t:80"]}, ["app"]),
        (["--target", "t:80", "app"], {"target": ["t:80"]}, ["app"]),
        # bool never consumes the next argument
        (["--target=t", "--force", "app-web"], {"force": True}, ["app-web"]),
        (["--target=t", "--force=false", "app"], {"force": False}, ["app"]),
        (["--target=t", "--force=0", "app"], {"force": False}, ["app"]),
        (["--target=t", "--force=F", "app"], {"force": False}, ["app"]),
        (["--target=t", "--force=TRUE", "app"], {"force": True}, ["app"]),
        (["--target=t", "--force=t", "app"], {"force": True}, ["app"]),
        (["--target=t", "--force", "false"], {"force": True}, ["false"]),
        # last one wins
        (["--target=t", "--force", "--force=false"], {"force": False}, []),
        (
            ["--target=t", "--health-check-path", "/a", "--health-check-path=/b"],
            {"health-check-path": "/b"},
            [],
        ),
        # string slices: repeats and comma lists, first use replaces the default
        (["--target", "a", "--target", "b,c"], {"target": ["a", "b", "c"]}, []),
        (["--target", "a,b", "--target=c"], {"target": ["a", "b", "c"]}, []),
        (["--target", "a", "--host="], {"host": []}, []),
        (["--target", "a", "--host=", "--host=x"], {"host": ["x"]}, []),
        (["--target", "a", "--host=x", "--host="], {"host": ["x"]}, []),
        (["--target", "a", "--host", "x,"], {"host": ["x", ""]}, []),
        (["--target", "a", "--host", '"a,b",c'], {"host": ["a,b", "c"]}, []),
        (["--target", "a", "--host", '"say ""hi""",x'], {"host": ['say "hi"', "x"]}, []),
        (["--target", "a", "--host", "a b, c"], {"host": ["a b", " c"]}, []),
        (["--target", "a", "--host", "a,b\nc,d"], {"host": ["a", "b"]}, []),
        (["--target", "a", "--host", "\na"], {"host": ["a"]}, []),
        (["--target", "a", "--host", '"a\nb",c'], {"host": ["a\nb", "c"]}, []),
        # values that look like flags are still consumed by non-bool flags
        (["--target", "--force", "app"], {"target": ["--force"], "force": False}, ["app"]),
        (["--target", "a", "--health-check-path", "-"], {"health-check-path": "-"}, []),
        # "--" ends flag parsing; a lone "-" and "" are positionals
        (["--target", "a", "--", "--force", "-x"], {"force": False}, ["--force", "-x"]),
        (["--target", "a", "-", "", "b"], {}, ["-", "", "b"]),
        (["x", "--target", "a", "y", "--force", "z"], {"force": True}, ["x", "y", "z"]),
        # durations
        (["--target=a", "--deploy-timeout", "1m30s"], {"deploy-timeout": 90.0}, []),
        (["--target=a", "--deploy-timeout=500ms"], {"deploy-timeout": 0.5}, []),
        (["--target=a", "--deploy-timeout=0"], {"deploy-timeout": 0.0}, []),
        (["--target=a", "--deploy-timeout=-1s"], {"deploy-timeout": -1.0}, []),
        # ints: ParseInt base 0
        (["--target=a", "--health-check-port", "8080"], {"health-check-port": 8080}, []),
        (["--target=a", "--health-check-port=0x1F"], {"health-check-port": 31}, []),
        (["--target=a", "--health-check-port=010"], {"health-check-port": 8}, []),
        (["--target=a", "--health-check-port=0o10"], {"health-check-port": 8}, []),
        (["--target=a", "--health-check-port=0b101"], {"health-check-port": 5}, []),
        (["--target=a", "--health-check-port=1_000"], {"health-check-port": 1000}, []),
        (["--target=a", "--health-check-port=-5"], {"health-check-port": -5}, []),
        (["--target=a", "--health-check-port=+5"], {"health-check-port": 5}, []),
        (["--target=a", "--buffer-memory=9223372036854775807"], {"buffer-memory": 9223372036854775807}, []),
        (["--target=a", "--max-request-body=-9223372036854775808"], {"max-request-body": -(1 << 63)}, []),
        # floats
        (["--target=a", "--weight=1.5"], {"weight": 1.5}, []),
        (["--target=a", "--weight=1e3"], {"weight": 1000.0}, []),
        (["--target=a", "--weight=.5"], {"weight": 0.5}, []),
        (["--target=a", "--weight=0x1p-2"], {"weight": 0.25}, []),
        # strings keep "=" after the first one, and may be empty
        (["--target=a", "--health-check-path=/a=b"], {"health-check-path": "/a=b"}, []),
        (["--target=a", "--health-check-path="], {"health-check-path": ""}, []),
        # shorthand
        (["--target=a", "-h"], {"help": True}, []),
        (["--target=a", "-h=false"], {"help": False}, []),
        (["--target=a", "-h", "app"], {"help": True}, ["app"]),
        (["--target=a", "--help"], {"help": True}, []),
    ],
)
def test_syntax(argv: list[str], expected: dict[str, object], args: list[str]) -> None:
    parsed = parse_flags(DEPLOY_FLAGS, argv)
    for name, value in expected.items():
        assert parsed.values[name] == value, name
        assert type(parsed.values[name]) is type(value), name
    assert parsed.args == args


def test_help_skips_required_check() -> None:
    parsed = parse_flags(DEPLOY_FLAGS, ["--help"])
    assert parsed.values["help"] is True
    assert "target" not in parsed.changed


def test_short_flags() -> None:
    flags = [
        Flag("verbose", "bool", False, "v", shorthand="v"),
        Flag("quiet", "bool", False, "q", shorthand="q"),
        Flag("name", "string", "", "n", shorthand="n"),
    ]
    assert parse_flags(flags, ["-vq"]).values == {"verbose": True, "quiet": True, "name": ""}
    assert parse_flags(flags, ["-vnfoo"]).values["name"] == "foo"
    assert parse_flags(flags, ["-n", "foo"]).values["name"] == "foo"
    assert parse_flags(flags, ["-n=foo"]).values["name"] == "foo"
    assert parse_flags(flags, ["-n="]).values["name"] == "="  # pflag quirk
    assert parse_flags(flags, ["-vn", "x", "y"]).args == ["y"]
    with pytest.raises(FlagError, match=r"^unknown shorthand flag: 'x' in -x$"):
        parse_flags(flags, ["-vx"])
    with pytest.raises(FlagError, match=r"^flag needs an argument: 'n' in -n$"):
        parse_flags(flags, ["-vn"])
    with pytest.raises(HelpRequested):
        parse_flags(flags, ["-h"])
    with pytest.raises(HelpRequested):
        parse_flags(flags, ["--help"])


# --------------------------------------------------------------------------------------------
# Errors: exact pflag/cobra text


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["app", "--foo"], "unknown flag: --foo"),
        (["app", "--foo=bar"], "unknown flag: --foo"),
        (["app", "-x"], "unknown shorthand flag: 'x' in -x"),
        (["app", "-hx"], "unknown shorthand flag: 'x' in -x"),
        (["app", "-xh"], "unknown shorthand flag: 'x' in -xh"),
        (["app", "-\u00e9"], "unknown shorthand flag: '\u00c3' in -\u00e9"),
        (["app", "--target"], "flag needs an argument: --target"),
        (["app", "--target=a", "--deploy-timeout"], "flag needs an argument: --deploy-timeout"),
        (["app", "---x"], "bad flag syntax: ---x"),
        (["app", "--=x"], "bad flag syntax: --=x"),
        (
            ["app", "--target=a", "--deploy-timeout", "abc"],
            'invalid argument "abc" for "--deploy-timeout" flag: time: invalid duration "abc"',
        ),
        (
            ["app", "--target=a", "--deploy-timeout=30"],
            'invalid argument "30" for "--deploy-timeout" flag: time: missing unit in duration "30"',
        ),
        (
            ["app", "--target=a", "--deploy-timeout=30x"],
            'invalid argument "30x" for "--deploy-timeout" flag: time: unknown unit "x" in duration "30x"',
        ),
        (
            ["app", "--target=a", "--deploy-timeout="],
            'invalid argument "" for "--deploy-timeout" flag: time: invalid duration ""',
        ),
        (
            ["app", "--target=a", "--buffer-memory", "x"],
            'invalid argument "x" for "--buffer-memory" flag: strconv.ParseInt: parsing "x": invalid syntax',
        ),
        (
            ["app", "--target=a", "--buffer-memory=1MB"],
            'invalid argument "1MB" for "--buffer-memory" flag: '
            'strconv.ParseInt: parsing "1MB": invalid syntax',
        ),
        (
            ["app", "--target=a", "--buffer-memory=9223372036854775808"],
            'invalid argument "9223372036854775808" for "--buffer-memory" flag: '
            'strconv.ParseInt: parsing "9223372036854775808": value out of range',
        ),
        (
            ["app", "--target=a", "--buffer-memory=1__0"],
            'invalid argument "1__0" for "--buffer-memory" flag: '
            'strconv.ParseInt: parsing "1__0": invalid syntax',
        ),
        (
            ["app", "--target=a", "--buffer-memory=0x"],
            'invalid argument "0x" for "--buffer-memory" flag: '
            'strconv.ParseInt: parsing "0x": invalid syntax',
        ),
        (
            ["app", "--target=a", "--health-check-port=08"],
            'invalid argument "08" for "--health-check-port" flag: '
            'strconv.ParseInt: parsing "08": invalid syntax',
        ),
        (
            ["app", "--target=a", "--force=maybe"],
            'invalid argument "maybe" for "--force" flag: strconv.ParseBool: parsing "maybe": invalid syntax',
        ),
        (
            ["app", "--target=a", "--force="],
            'invalid argument "" for "--force" flag: strconv.ParseBool: parsing "": invalid syntax',
        ),
        (
            ["app", "--target=a", "-h=yes"],
            'invalid argument "yes" for "-h, --help" flag: strconv.ParseBool: parsing "yes": invalid syntax',
        ),
        (
            ["app", "--target=a", "--weight=abc"],
            'invalid argument "abc" for "--weight" flag: strconv.ParseFloat: parsing "abc": invalid syntax',
        ),
        (
            ["app", "--target=a", "--weight=1e400"],
            'invalid argument "1e400" for "--weight" flag: '
            'strconv.ParseFloat: parsing "1e400": value out of range',
        ),
        (
            ["app", "--target", 'a"b'],
            'invalid argument "a\\"b" for "--target" flag: parse error on line 1, column 2: '
            'bare " in non-quoted-field',
        ),
        (
            ["app", "--target", '"a"b'],
            'invalid argument "\\"a\\"b" for "--target" flag: parse error on line 1, column 3: '
            'extraneous or missing " in quoted-field',
        ),
        (
            ["app", "--target", '"abc'],
            'invalid argument "\\"abc" for "--target" flag: parse error on line 1, column 5: '
            'extraneous or missing " in quoted-field',
        ),
        (["app", "--target", "\n"], 'invalid argument "\\n" for "--target" flag: EOF'),
        (["app"], 'required flag(s) "target" not set'),
        (["app", "--force"], 'required flag(s) "target" not set'),
    ],
)
def test_errors(argv: list[str], message: str) -> None:
    with pytest.raises(FlagError) as info:
        parse_flags(DEPLOY_FLAGS, argv)
    assert str(info.value) == message


def test_several_required_flags_sorted() -> None:
    flags = [Flag("zeta", "string", "", "z", required=True), Flag("alpha", "strings", [], "a", required=True)]
    with pytest.raises(FlagError) as info:
        parse_flags(flags, [])
    assert str(info.value) == 'required flag(s) "alpha", "zeta" not set'
    parsed = parse_flags(flags, ["--alpha", "x"], validate_required=False)
    with pytest.raises(FlagError, match=r'^required flag\(s\) "zeta" not set$'):
        check_required(flags, parsed)


def test_first_error_wins() -> None:
    with pytest.raises(FlagError, match=r"^unknown flag: --a$"):
        parse_flags(DEPLOY_FLAGS, ["--a", "--b"])


def test_redefined_flags_are_programming_errors() -> None:
    with pytest.raises(ValueError):
        parse_flags([Flag("x", "bool", False, ""), Flag("x", "bool", False, "")], [])
    with pytest.raises(ValueError):
        parse_flags([Flag("x", "bool", False, "", shorthand="xy")], [])


# --------------------------------------------------------------------------------------------
# Durations, bools, quoting


@pytest.mark.parametrize(
    ("text", "seconds"),
    [
        ("30s", 30.0),
        ("500ms", 0.5),
        ("1m30s", 90.0),
        ("1h", 3600.0),
        ("1.5s", 1.5),
        ("2us", 2e-6),
        ("2\u00b5s", 2e-6),
        ("2\u03bcs", 2e-6),
        ("10ns", 1e-8),
        ("0", 0.0),
        ("+0", 0.0),
        ("-0", 0.0),
        ("0s", 0.0),
        ("-1s", -1.0),
        ("+5s", 5.0),
        (".5s", 0.5),
        ("1.s", 1.0),
        ("1h1m1s", 3661.0),
        ("1s1s", 2.0),
        ("1.0000000001s", 1.0),
        ("2562047h", 2562047 * 3600.0),
    ],
)
def test_parse_duration(text: str, seconds: float) -> None:
    assert parse_duration(text) == pytest.approx(seconds)


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("", 'time: invalid duration ""'),
        ("abc", 'time: invalid duration "abc"'),
        ("30", 'time: missing unit in duration "30"'),
        ("1s30", 'time: missing unit in duration "1s30"'),
        ("-", 'time: invalid duration "-"'),
        (".", 'time: invalid duration "."'),
        (".s", 'time: invalid duration ".s"'),
        ("s", 'time: invalid duration "s"'),
        ("30x", 'time: unknown unit "x" in duration "30x"'),
        ("1e3s", 'time: unknown unit "e" in duration "1e3s"'),
        (" 30s", 'time: invalid duration " 30s"'),
        ("30 s", 'time: unknown unit " s" in duration "30 s"'),
        ("3\u00e9", 'time: unknown unit "\\xc3\\xa9" in duration "3\\xc3\\xa9"'),
        ('3"', 'time: unknown unit "\\"" in duration "3\\""'),
        ("9223372036854775808ns", 'time: invalid duration "9223372036854775808ns"'),
        ("2562048h", 'time: invalid duration "2562048h"'),
    ],
)
def test_parse_duration_errors(text: str, message: str) -> None:
    with pytest.raises(ValueError) as info:
        parse_duration(text)
    assert str(info.value) == message


def test_parse_duration_extremes() -> None:
    assert parse_duration_ns("9223372036854775807ns") == (1 << 63) - 1
    assert parse_duration_ns("-9223372036854775808ns") == -(1 << 63)
    assert parse_duration_ns("1.5s") == 1_500_000_000
    assert parse_duration_ns("1.0000000001s") == 1_000_000_000


@pytest.mark.parametrize(
    ("seconds", "text"),
    [
        (30, "30s"),
        (90, "1m30s"),
        (0.5, "500ms"),
        (0, "0s"),
        (3600, "1h0m0s"),
        (1.5, "1.5s"),
        (1, "1s"),
        (5, "5s"),
        (60, "1m0s"),
        (3661, "1h1m1s"),
        (0.001, "1ms"),
        (0.0015, "1.5ms"),
        (2e-6, "2\u00b5s"),
        (1e-9, "1ns"),
        (0.1234567, "123.4567ms"),
        (1.000000001, "1.000000001s"),
        (-90, "-1m30s"),
        (-0.5, "-500ms"),
        (100 * 3600, "100h0m0s"),
    ],
)
def test_format_duration(seconds: float, text: str) -> None:
    assert format_duration(seconds) == text


def test_format_parse_roundtrip() -> None:
    for text in ["30s", "1m30s", "500ms", "1h0m0s", "1.5s", "2\u00b5s", "-1m30s", "0s"]:
        assert format_duration(parse_duration(text)) == text


@pytest.mark.parametrize("text", ["1", "t", "T", "TRUE", "true", "True"])
def test_parse_bool_true(text: str) -> None:
    assert parse_bool(text) is True


@pytest.mark.parametrize("text", ["0", "f", "F", "FALSE", "false", "False"])
def test_parse_bool_false(text: str) -> None:
    assert parse_bool(text) is False


@pytest.mark.parametrize("text", ["", "yes", "no", "tRUE", "on", " true", "2"])
def test_parse_bool_invalid(text: str) -> None:
    with pytest.raises(ValueError) as info:
        parse_bool(text)
    assert str(info.value) == f"strconv.ParseBool: parsing {go_quote(text)}: invalid syntax"


@pytest.mark.parametrize(
    ("text", "quoted"),
    [
        ("abc", '"abc"'),
        ('a"b', '"a\\"b"'),
        ("a\\b", '"a\\\\b"'),
        ("a\nb\tc", '"a\\nb\\tc"'),
        ("\x00\x7f", '"\\x00\\x7f"'),
        ("caf\u00e9", '"caf\u00e9"'),
        ("\u00a0", '"\\u00a0"'),
        ("\udcff", '"\\xff"'),
    ],
)
def test_go_quote(text: str, quoted: str) -> None:
    assert go_quote(text) == quoted


# --------------------------------------------------------------------------------------------
# Environment


RUN_FLAGS = [
    Flag("help", "bool", False, "help for run", shorthand="h"),
    Flag("debug", "bool", False, "Include debugging logs"),
    Flag("http-port", "int", 80, "Port to serve HTTP traffic on"),
    Flag("https-port", "int", 443, "Port to serve HTTPS traffic on"),
    Flag("metrics-port", "int", 0, "Publish metrics on the specified port (default zero to disable)"),
    Flag("http3", "bool", False, "Enable HTTP/3"),
    Flag("idle-timeout", "duration", 60.0, "Idle timeout"),
]


@pytest.mark.parametrize(
    ("environ", "expected"),
    [
        ({}, None),
        ({"HTTP_PORT": "8080"}, "8080"),
        ({"KAMAL_PROXY_HTTP_PORT": "9090"}, "9090"),
        ({"HTTP_PORT": "8080", "KAMAL_PROXY_HTTP_PORT": "9090"}, "9090"),
        ({"HTTP_PORT": "8080", "KAMAL_PROXY_HTTP_PORT": ""}, ""),  # set-but-empty still wins
        ({"http_port": "8080"}, None),
    ],
)
def test_env_value(environ: dict[str, str], expected: str | None) -> None:
    assert env_value("http-port", environ) == expected
    assert env_value("HTTP_PORT", environ) == expected


def defaults(flags: list[Flag]) -> dict[str, object]:
    return {f.name: f.default for f in flags}


def test_apply_env_defaults() -> None:
    environ = {
        "DEBUG": "true",
        "HTTP_PORT": "8080",
        "KAMAL_PROXY_HTTPS_PORT": "8443",
        "HTTPS_PORT": "1",
        "METRICS_PORT": "0x10",  # Atoi: no base prefixes -> ignored
        "HTTP3": "true",  # excluded below
        "HELP": "true",  # excluded by default
        "IDLE_TIMEOUT": "90s",
    }
    flags = apply_env_defaults(RUN_FLAGS, environ, exclude=("help", "http3"))
    assert defaults(flags) == {
        "help": False,
        "debug": True,
        "http-port": 8080,
        "https-port": 8443,
        "metrics-port": 0,
        "http3": False,
        "idle-timeout": 90.0,
    }
    # the originals are untouched, and the flag line still overrides the env default
    assert defaults(RUN_FLAGS)["http-port"] == 80
    parsed = parse_flags(flags, ["--http-port=81"])
    assert parsed.values["http-port"] == 81
    assert parsed.values["debug"] is True
    assert "debug" not in parsed.changed


@pytest.mark.parametrize(
    ("environ", "debug", "port"),
    [
        ({"DEBUG": "maybe", "HTTP_PORT": "eighty"}, False, 80),
        ({"DEBUG": "", "HTTP_PORT": ""}, False, 80),
        ({"DEBUG": "1", "HTTP_PORT": "+81"}, True, 81),
        ({"KAMAL_PROXY_DEBUG": "junk", "DEBUG": "true"}, False, 80),  # prefixed wins, then fails
        ({"HTTP_PORT": "1_000"}, False, 80),
        ({"HTTP_PORT": " 81"}, False, 80),
    ],
)
def test_apply_env_defaults_unparsable(environ: dict[str, str], debug: bool, port: int) -> None:
    values = defaults(apply_env_defaults(RUN_FLAGS, environ))
    assert values["debug"] is debug
    assert values["http-port"] == port


# --------------------------------------------------------------------------------------------
# Help


def test_help_text_run() -> None:
    text = help_text("kamal-proxy run", "run", RUN_FLAGS[:5], description="Run the server")
    assert text == (
        "Run the server\n"
        "\n"
        "Usage:\n"
        "  kamal-proxy run [flags]\n"
        "\n"
        "Flags:\n"
        "      --debug              Include debugging logs\n"
        "  -h, --help               help for run\n"
        "      --http-port int      Port to serve HTTP traffic on (default 80)\n"
        "      --https-port int     Port to serve HTTPS traffic on (default 443)\n"
        "      --metrics-port int   Publish metrics on the specified port (default zero to disable)\n"
    )


def test_help_text_defaults_and_varnames() -> None:
    flags = [
        HELP,
        Flag("target", "strings", [], "Target host(s) to deploy", required=True),
        Flag("host", "strings", ["a.com", "b,c"], "Host(s)"),
        Flag("deploy-timeout", "duration", 30.0, "Deploy timeout"),
        Flag("zero-timeout", "duration", 0.0, "No default shown"),
        Flag("health-check-path", "string", "/up", "Path to check for health"),
        Flag("tls-redirect", "bool", True, "Redirect HTTP to HTTPS"),
        Flag("buffer-memory", "bytes", 1048576, "Max size of memory `bytes`"),
        Flag("weight", "float", 1e6, "weight"),
    ]
    text = help_text("deploy", "deploy <service>", flags)
    assert text.startswith("Usage:\n  kamal-proxy deploy <service> [flags]\n\nFlags:\n")
    body = text.split("Flags:\n", 1)[1].splitlines()
    assert body == [
        "      --buffer-memory bytes        Max size of memory bytes (default 1048576)",
        "      --deploy-timeout duration    Deploy timeout (default 30s)",
        '      --health-check-path string   Path to check for health (default "/up")',
        "  -h, --help                       help for deploy",
        '      --host strings               Host(s) (default [a.com,"b,c"])',
        "      --target strings             Target host(s) to deploy",
        "      --tls-redirect               Redirect HTTP to HTTPS (default true)",
        "      --weight float               weight (default 1e+06)",
        "      --zero-timeout duration      No default shown",
    ]
    assert text.endswith("No default shown\n")


@pytest.mark.parametrize(
    ("command", "usage", "use_line"),
    [
        ("kamal-proxy deploy", "deploy <service>", "kamal-proxy deploy <service> [flags]"),
        ("deploy", "deploy <service>", "kamal-proxy deploy <service> [flags]"),
        ("deploy", "<service>", "kamal-proxy deploy <service> [flags]"),
        ("kamal-proxy deploy", "kamal-proxy deploy <service>", "kamal-proxy deploy <service> [flags]"),
        ("kamal-proxy rollout set", "set <service>", "kamal-proxy rollout set <service> [flags]"),
        ("kamal-proxy list", "", "kamal-proxy list [flags]"),
        ("kamal-proxy list", "list [flags]", "kamal-proxy list [flags]"),
    ],
)
def test_help_text_use_line(command: str, usage: str, use_line: str) -> None:
    text = help_text(command, usage, [Flag("help", "bool", False, "help", shorthand="h")])
    assert text.splitlines()[1] == "  " + use_line


def test_help_text_aliases_and_no_flags() -> None:
    text = help_text("kamal-proxy remove", "remove <service>", [], aliases=["rm"])
    assert text == "Usage:\n  kamal-proxy remove <service>\n\nAliases:\n  remove, rm\n"


def test_defaults_are_normalised() -> None:
    flags = [Flag("timeout", "duration", 30, "t"), Flag("hosts", "strings", ("a",), "h")]
    values = parse_flags(flags, []).values
    assert values == {"timeout": 30.0, "hosts": ["a"]}
    assert type(values["timeout"]) is float
