"""A property of the control protocol: a command with a wrong type or value anywhere never changes
the state and always gets an error reply, and the daemon answers `list` afterwards.

Commands are generated from the schema itself (each option field's reader says what a wrong value
for it is), so a field added later is covered without editing this file. In-process against the
control server and router (hundreds of commands a second), plus a bounded slice over the real
daemon's socket. Derandomized: the same inputs on every run. More by hand:
    HYPOTHESIS_MAX_EXAMPLES=20000 python -m pytest tests/proxy/test_control_properties.py
"""

from __future__ import annotations

import asyncio
import dataclasses
import json
import os
import socket
from collections.abc import Callable
from pathlib import Path
from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st

from proxy import schema
from proxy.commands import decode_request
from proxy.options import DeploymentOptions, HealthCheckConfig, ServiceOptions, TargetOptions
from tests.proxy.conftest import ProxyProcess
from tests.proxy.control_plane import ControlPlane, deploy
from tests.proxy.test_ipc_properties import paths, replace

EXAMPLES = int(os.environ.get("HYPOTHESIS_MAX_EXAMPLES", "300"))
DAEMON_EXAMPLES = 30

Json = Any
Strategy = st.SearchStrategy[Json]

scalars: Strategy = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(min_value=-(2**70), max_value=2**70),
    st.floats(allow_nan=True, allow_infinity=True),
    st.text(max_size=8),
)
json_values: Strategy = st.recursive(
    scalars,
    lambda inner: st.one_of(
        st.lists(inner, max_size=3), st.dictionaries(st.text(max_size=5), inner, max_size=3)
    ),
    max_leaves=6,
)


def anything_but(*types: type) -> Strategy:
    def wrong(value: Json) -> bool:
        if isinstance(value, bool):
            return bool not in types
        return not isinstance(value, types)

    return json_values.filter(wrong)


out_of_range = st.one_of(
    st.integers(max_value=-1, min_value=-(2**70)), st.integers(min_value=2**63, max_value=2**70)
)
not_an_int = anything_but(int)
bad_size = st.one_of(not_an_int, out_of_range)
bad_port = st.one_of(not_an_int, st.integers(max_value=-1), st.integers(min_value=65536, max_value=2**64))
bad_string = st.one_of(
    anything_but(str),
    st.text(max_size=4).map(lambda t: t + "\x00"),
    st.just(schema.MAX_STRING + 1).map(lambda n: "x" * n),
)


def bad_list(bad_item: Strategy) -> Strategy:
    """Not a list (``null`` is a valid empty list), or a list with one bad item among good ones."""
    return st.one_of(
        anything_but(list).filter(lambda v: v is not None),
        st.tuples(st.integers(0, 2), bad_item).map(lambda p: ["ok-item.test"] * p[0] + [p[1]]),
    )


def texts(*samples: str) -> Strategy:
    return st.one_of(anything_but(str), st.sampled_from(samples))


bad_host = texts("a b.test", "a/b", "a..b", "-a.test", "*", "a.*.test", "ä.test", "a\x00", "a:b:c")
bad_path = texts("/a b", "/a?b", "/#x", "/\t", "/a\x7f")
bad_header = texts("Bad Header", "a:b", "", "ü", "a\r\nb")
bad_target = texts("http://web:80", "w", "web:99999", "web:0", " web:80", "web:80/x", "wéb:80", "")

WRONG: dict[Callable[..., Any], Strategy] = {
    schema.read_bool: anything_but(bool),
    schema.read_size: bad_size,
    schema.read_duration: bad_size,
    schema.read_port: bad_port,
    schema.read_string: bad_string,
    schema.read_host: bad_host,
    schema.read_path: bad_path,
    schema.read_hosts: bad_list(bad_host),
    schema.read_paths: bad_list(bad_path),
    schema.read_header_names: bad_list(bad_header),
    schema.read_strings: bad_list(bad_string),
    schema.read_host_header: texts("a b", "a\r\nX: 1", "a\x00", "\t"),
    schema.read_optional_header_name: bad_header.filter(lambda v: v != ""),
}

SECTIONS: dict[str, type] = {
    "service_options": ServiceOptions,
    "target_options": TargetOptions,
    "target_options.health_check_config": HealthCheckConfig,
    "deployment_options": DeploymentOptions,
}


def field_mutations() -> Strategy:
    """(path, wrong value) for every option field the schema knows."""
    options = []
    for section, cls in SECTIONS.items():
        for f in dataclasses.fields(cls):
            if "read" in f.metadata:
                options.append(st.tuples(st.just(f"{section}.{f.name}"), WRONG[f.metadata["read"]]))
        options.append(st.tuples(st.just(section), anything_but(dict).filter(lambda v: v is not None)))
        options.append(st.tuples(st.just(f"{section}.unknown_key"), json_values))
    options += [
        st.tuples(
            st.just("service"), st.one_of(anything_but(str), st.sampled_from(["", "a b", "a/b", "a\n"]))
        ),
        st.tuples(st.just("targets"), st.one_of(st.just([]), st.just(None), bad_list(bad_target))),
        st.tuples(st.just("read_targets"), bad_list(bad_target)),
        st.tuples(st.just("no_such_argument"), json_values),
    ]
    return st.one_of(options)


def set_path(request: dict[str, Any], path: str, value: Json) -> dict[str, Any]:
    node = request["args"]
    *parents, last = path.split(".")
    for key in parents:
        node = node.setdefault(key, {})
        if not isinstance(node, dict):
            return request  # an earlier mutation replaced the section: already wrong
    node[last] = value
    return request


def bad_deploys() -> Strategy:
    """A valid deploy that would change the state, with one to three fields made wrong."""

    def build(mutations: list[tuple[str, Json]]) -> dict[str, Any]:
        request = deploy("app", "web-2:3000", hosts=["new.test"])
        for path, value in mutations:
            set_path(request, path, value)
        return request

    return st.lists(field_mutations(), min_size=1, max_size=3).map(build)


def bad_mode_commands() -> Strategy:
    """pause / stop / resume / remove of the existing service, each with one wrong argument."""
    duration = st.sampled_from(["drain_timeout", "pause_timeout"])
    return st.one_of(
        st.builds(lambda k, v: {"command": "pause", "args": {"service": "app", k: v}}, duration, bad_size),
        st.builds(lambda v: {"command": "stop", "args": {"service": "app", "message": v}}, bad_string),
        st.builds(lambda v: {"command": "stop", "args": {"service": "app", "drain_timeout": v}}, bad_size),
        st.builds(lambda c, v: {"command": c, "args": {"service": v}}, st.sampled_from(["remove", "resume", "stop"]), anything_but(str)),
        st.builds(lambda c, v: {"command": c, "args": {"service": "app", "extra": v}}, st.sampled_from(["remove", "resume", "pause"]), json_values),
        st.builds(lambda v: {"command": "remove", "args": v}, anything_but(dict).filter(lambda v: v is not None)),
    )  # fmt: skip


def bad_rollout_commands() -> Strategy:
    """rollout_deploy / rollout_set / rollout_stop of the existing service, each with one wrong argument."""
    percent = st.one_of(not_an_int, st.integers(max_value=-101), st.integers(min_value=101, max_value=2**70))
    allowlist = st.one_of(bad_list(bad_string), st.just(["x"] * 1025), st.just(None).map(lambda _: [None]))
    return st.one_of(
        st.builds(lambda v: {"command": "rollout_set", "args": {"service": "app", "percentage": v}}, percent),
        st.builds(lambda v: {"command": "rollout_set", "args": {"service": "app", "allowlist": v}}, allowlist),
        st.builds(lambda v: {"command": "rollout_deploy", "args": {"service": "app", "targets": v}}, st.one_of(st.just([]), st.just(None), bad_list(bad_target))),
        st.builds(lambda v: {"command": "rollout_deploy", "args": {"service": "app", "targets": ["web-3:3000"], "read_targets": v}}, bad_list(bad_target)),
        st.builds(lambda v: {"command": "rollout_deploy", "args": {"service": "app", "targets": ["web-3:3000"], "deployment_options": v}}, anything_but(dict).filter(lambda v: v is not None)),
        st.builds(lambda c, v: {"command": c, "args": {"service": v}}, st.sampled_from(["rollout_stop", "rollout_set", "rollout_deploy"]), anything_but(str)),
        st.builds(lambda c, v: {"command": c, "args": {"service": "app", "extra": v}}, st.sampled_from(["rollout_stop", "rollout_set"]), json_values),
    )  # fmt: skip


def garbage() -> Strategy:
    """Whole requests that are not a command."""
    return st.one_of(
        anything_but(dict),
        st.dictionaries(st.text(max_size=8), json_values, max_size=3).filter(lambda d: "command" not in d),
        st.builds(lambda c: {"command": c}, anything_but(str)),
        st.builds(
            lambda c: {"command": c}, st.text(max_size=10).filter(lambda c: c not in ("list", "deploy"))
        ),
    )


bad_commands: Strategy = st.one_of(bad_deploys(), bad_mode_commands(), bad_rollout_commands(), garbage())


def encode(request: Json) -> bytes:
    return json.dumps(request, allow_nan=True).encode() + b"\n"


class PlaneLoop:
    """One event loop and one control plane (with a stopped service deployed) for every example."""

    def __init__(self, tmp: Path) -> None:
        self.loop = asyncio.new_event_loop()
        self.plane = ControlPlane(tmp)
        self.run(self.plane.ok(deploy("app", "web-1:3000", hosts=["app.test"])))
        self.run(self.plane.ok({"command": "stop", "args": {"service": "app", "drain_timeout": 0}}))
        self.state = self.plane.state_bytes()
        self.routes = self.plane.router.routes
        self.listing = self.run(self.plane.listing())

    def run(self, coro: Any) -> Any:
        return self.loop.run_until_complete(coro)

    def close(self) -> None:
        self.run(self.plane.close())
        self.loop.close()

    def assert_refused(self, reply: dict[str, Any], sent: object) -> None:
        """A clear error (never an internal one: that is a decoder bug) that changed nothing."""
        assert isinstance(reply["error"], str) and reply["error"], (sent, reply)
        assert not reply["error"].startswith("internal error"), (sent, reply)
        assert self.plane.state_bytes() == self.state, sent
        assert self.plane.router.routes is self.routes
        assert self.run(self.plane.listing()) == self.listing


def test_bad_commands_never_change_state_and_always_get_an_error(tmp_path: Path) -> None:
    harness = PlaneLoop(tmp_path)
    plane = harness.plane
    count = 0

    @settings(max_examples=EXAMPLES, derandomize=True, deadline=None, database=None)
    @given(request=bad_commands)
    def check(request: Json) -> None:
        nonlocal count
        count += 1
        reply = harness.run(plane.send(encode(request)))
        assert reply["ok"] is False, (request, reply)
        harness.assert_refused(reply, request)

    try:
        check()
    finally:
        harness.close()
    assert count >= EXAMPLES


VALID_REQUESTS: list[Json] = [
    {"command": "deploy", "args": {
        "service": "app",
        "targets": ["web-2:3000"],
        "read_targets": ["replica:3000"],
        "service_options": ServiceOptions(hosts=("new.test",), path_prefixes=("/api",)).to_json(),
        "target_options": TargetOptions(log_request_headers=("X-Id",)).to_json(),
        "deployment_options": {"deploy_timeout": 5_000_000_000, "force": True},
    }},
    {"command": "pause", "args": {"service": "app", "drain_timeout": 1_000_000_000, "pause_timeout": 5_000_000_000}},
    {"command": "stop", "args": {"service": "app", "drain_timeout": 0, "message": "back soon"}},
    {"command": "resume", "args": {"service": "app"}},
    {"command": "remove", "args": {"service": "app"}},
    {"command": "rollout_deploy", "args": {"service": "app", "targets": ["web-3:3000"], "read_targets": []}},
    {"command": "rollout_set", "args": {"service": "app", "percentage": 50, "allowlist": ["staff"]}},
    {"command": "rollout_stop", "args": {"service": "app"}},
    {"command": "list", "args": {}},
]  # fmt: skip


@st.composite
def mutated_lines(draw: st.DrawFn) -> bytes:
    """A valid request's line with bytes changed (mostly to printable ASCII, so that more of them
    reach the decoder than the JSON parser), inserted, removed or cut; now and then no newline."""
    line = bytearray(encode(draw(st.sampled_from(VALID_REQUESTS)))[:-1])
    for _ in range(draw(st.integers(1, 4))):
        at = draw(st.integers(0, len(line)))
        kind = draw(st.sampled_from(["flip", "insert", "delete", "cut"]))
        if kind == "flip" and at < len(line):
            line[at] = draw(
                st.one_of(st.integers(0x20, 0x7E), st.sampled_from(b'{}[]",:0-9\\'), st.integers(0, 255))
            )
        elif kind == "insert":
            line[at:at] = draw(st.binary(min_size=1, max_size=8))
        elif kind == "delete":
            del line[at : at + draw(st.integers(1, 8))]
        else:
            del line[at:]
    return bytes(line) + (b"" if draw(st.integers(0, 7)) == 7 else b"\n")


@st.composite
def field_replaced_lines(draw: st.DrawFn) -> bytes:
    """A valid request with one or two values anywhere in it replaced, removed or given a sibling."""
    request = json.loads(encode(draw(st.sampled_from(VALID_REQUESTS))))
    for _ in range(draw(st.integers(1, 2))):
        places = paths(request)
        path = draw(st.sampled_from(places))
        action = draw(st.sampled_from(["replace", "replace", "delete", "add"]))
        if action == "add":
            parent = request
            for step in path[:-1]:
                parent = parent[step]
            if isinstance(parent, dict):
                parent[draw(st.text(max_size=6))] = draw(json_values)
            else:
                parent.append(draw(json_values))
        else:
            replace(request, path, draw(json_values), delete=action == "delete")
    return encode(request)


hostile_lines = st.one_of(
    st.binary(max_size=64).map(lambda b: b + b"\n"),
    st.integers(1, 5000).map(lambda d: b"[" * d + b"]" * d + b"\n"),
    st.integers(1, 5000).map(lambda d: b'{"command":"list","args":' + b'{"a":' * d + b"1" + b"}" * (d + 2) + b"\n"),
    st.sampled_from([
        b"\n", b"\xef\xbb\xbf{}\n", b'{"command":"list","args":{}} {"command":"remove"}\n', b'"\\ud800"\n',
        b'{"command":"pause","args":{"service":"app","drain_timeout":NaN}}\n', b"1" * 5000 + b"\n",
        b'{"command":"pause","args":{"service":"app","drain_timeout":1e400}}\n', b"{\"command\":\"list\"",
    ]),
)  # fmt: skip


def test_mutated_and_hostile_request_lines_get_a_clear_reply_and_only_a_valid_command_acts(
    tmp_path: Path,
) -> None:
    """Bytes from the socket: an error reply (never an internal error) that changes nothing, unless
    the mutation happened to leave a valid command (then it acts as that command)."""
    made = 0

    def fresh() -> PlaneLoop:
        nonlocal made
        made += 1
        return PlaneLoop(tmp_path / str(made))

    harness = fresh()
    count = 0

    @settings(max_examples=EXAMPLES, derandomize=True, deadline=None, database=None)
    @given(line=st.one_of(mutated_lines(), field_replaced_lines(), hostile_lines))
    def check(line: bytes) -> None:
        nonlocal count, harness
        count += 1
        plane = harness.plane
        reply = harness.run(plane.send(line))
        assert set(reply) in ({"ok", "result"}, {"ok", "error"}), reply
        json.dumps(reply, allow_nan=False)  # the reply goes out as it is, not as an "unencodable" error
        if reply["ok"]:
            harness.close()
            harness = fresh()  # a valid command acted: start again from the known state
            return
        harness.assert_refused(reply, line)

    try:
        check()
    finally:
        harness.close()
    assert count >= EXAMPLES


def test_the_requests_mutated_are_valid_before_mutation() -> None:
    """Else the mutations would start from requests that fail anyway, and prove less."""
    for request in VALID_REQUESTS:
        assert decode_request(json.loads(encode(request))).name == request["command"]


def send_raw(path: Path, data: bytes) -> Json:
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as sock:
        sock.settimeout(10)
        sock.connect(str(path))
        sock.sendall(data)
        reply = b""
        while not reply.endswith(b"\n"):
            piece = sock.recv(65536)
            if not piece:
                break
            reply += piece
    return json.loads(reply)


def test_the_real_daemon_answers_every_bad_command_with_an_error_and_keeps_serving(
    control_proxy: ProxyProcess,
) -> None:
    proxy = control_proxy
    proxy.ctl("deploy", "app", "--target=127.0.0.1:9", "--host=app.test", "--force")
    state, listing = proxy.state_path.read_bytes(), proxy.ctl("list", "--json").stdout
    sent: list[Json] = []

    @settings(max_examples=DAEMON_EXAMPLES, derandomize=True, deadline=None, database=None)
    @given(request=bad_commands)
    def check(request: Json) -> None:
        sent.append(request)
        reply = send_raw(proxy.socket, encode(request))
        assert reply["ok"] is False and reply["error"], reply

    check()
    assert len(sent) == DAEMON_EXAMPLES
    assert proxy.state_path.read_bytes() == state
    assert proxy.ctl("list", "--json").stdout == listing
    assert proxy.proc is not None and proxy.proc.poll() is None
