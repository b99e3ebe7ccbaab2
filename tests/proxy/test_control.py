"""The control protocol's boundary, in-process: every field typed and ranged, all-or-nothing commands,
bounded reads, and no request that can take the control plane down."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path
from typing import Any

import pytest

from proxy.commands import COMMANDS, CommandError, decode_request
from proxy.control import ControlServer
from proxy.router import ControlError, InProcessDataPlane, Router
from proxy.state import StateFile
from tests.proxy.control_plane import CapturedLog, ControlPlane, deploy, run

GOOD = deploy("app", "web-1:3000", hosts=["app.test"])


def with_field(section: str, key: str, value: Any) -> dict[str, Any]:
    request: dict[str, Any] = json.loads(json.dumps(GOOD))
    if section:
        request["args"].setdefault(section, {})[key] = value
    else:
        request["args"][key] = value
    return request


BAD_REQUESTS: list[tuple[dict[str, Any], str]] = [
    (with_field("service_options", "hosts", "a.test"), "service_options.hosts: must be a list"),
    (with_field("", "service_options", "x"), "service_options: must be an object"),
    (
        with_field("target_options", "buffer_requests", "no"),
        "target_options.buffer_requests: must be a boolean",
    ),
    (with_field("target_options", "buffer_requests", 1), "must be a boolean"),
    (with_field("target_options", "max_request_body_size", "1000"), "must be an integer"),
    (with_field("target_options", "max_request_body_size", True), "must be an integer"),
    (with_field("target_options", "max_request_body_size", -1), "between 0 and"),
    (with_field("target_options", "max_memory_buffer_size", 1 << 64), "between 0 and"),
    (with_field("target_options", "response_timeout", 1.5e9), "integer number of nanoseconds"),
    (with_field("deployment_options", "deploy_timeout", -1), "between 0 and"),
    (with_field("target_options", "log_request_headers", ["Bad Header"]), "an HTTP header name"),
    (with_field("service_options", "hosts", ["a b.test"]), "a host name"),
    (with_field("service_options", "hosts", ["a.test/x"]), "a host name"),
    (with_field("service_options", "path_prefixes", ["/a?b"]), "a URL path"),
    (with_field("service_options", "tls_certificate_path", "a\x00b"), "NUL"),
    (with_field("service_options", "hostz", ["a.test"]), "unknown field: service_options.hostz"),
    (with_field("service_options", "client_ip_header", "X Real IP"), "an HTTP header name"),
    (
        with_field("target_options", "health_check_config", {"host": "a.test\r\nX-Evil: 1"}),
        "target_options.health_check_config.host: must be a Host header value",
    ),
    (with_field("", "extra", 1), "unknown field: extra"),
    (with_field("", "targets", []), "at least one target"),
    (with_field("", "targets", "web-1:3000"), "targets: must be a list"),
    (with_field("", "service", "a b"), "service: must be a service name"),
    (with_field("", "service", "app\n"), "service: must be a service name"),
    (with_field("", "targets", ["web:80\n"]), ":invalid host pattern"),
    (with_field("service_options", "hosts", ["app.test\n"]), "a host name"),
    (with_field("", "service", ["app"]), "service: must be a string"),
    ({"command": "remove", "args": {"service": 1}}, "service: must be a string"),
    ({"command": "pause", "args": {"service": "app", "drain_timeout": "30s"}}, "drain_timeout"),
    ({"command": "stop", "args": {"service": "app", "message": 5}}, "message: must be a string"),
    ({"command": "list", "args": []}, "args: must be an object"),
    ({"command": "nope"}, "unknown command"),
]


@pytest.mark.parametrize(("request_", "message"), BAD_REQUESTS)
def test_wrong_types_and_ranges_are_rejected_naming_the_field(request_: dict[str, Any], message: str) -> None:
    with pytest.raises(CommandError) as error:
        decode_request(request_)
    assert message in str(error.value)


def test_target_errors_keep_kamal_proxys_wording() -> None:
    with pytest.raises(CommandError) as error:
        decode_request(with_field("", "targets", ["http://bad"]))
    assert str(error.value) == "http://bad :invalid host pattern"
    with pytest.raises(CommandError) as error:
        decode_request(with_field("", "targets", ["web:99999"]))
    assert str(error.value) == "web:99999 :invalid port"


@pytest.mark.parametrize("raw", [b'{"command": "deploy", "args": {"deployment_options": {"deploy_timeout": NaN}}}\n',
                                 b'{"command": "list", "args": {"x": Infinity}}\n',
                                 b'{"command": "deploy", "args": {"deployment_options": {"drain_timeout": 1e400}}}\n',
                                 b"[" * 100_000 + b"\n", b"\xff\xfe\n", b"not json\n"])  # fmt: skip
def test_non_finite_numbers_and_bad_json_get_an_error_reply(tmp_path: Path, raw: bytes) -> None:
    async def scenario() -> None:
        plane = ControlPlane(tmp_path)
        reply = await plane.send(raw)
        assert reply["ok"] is False and reply["error"]
        await plane.close()

    run(scenario())


def test_a_bad_command_leaves_state_file_and_list_byte_for_byte_intact(tmp_path: Path) -> None:
    async def scenario() -> None:
        plane = ControlPlane(tmp_path)
        await plane.ok(GOOD)
        await plane.ok({"command": "stop", "args": {"service": "app", "message": "soon", "drain_timeout": 0}})
        state, listing = plane.state_bytes(), await plane.listing()
        routes = plane.router.routes
        for request, _ in BAD_REQUESTS:
            reply = await plane.send(request)
            assert reply["ok"] is False, request
            assert plane.state_bytes() == state
            assert await plane.listing() == listing
            assert plane.router.routes is routes
        await plane.close()

    run(scenario())


def test_the_issues_cases_never_reach_the_data_plane(tmp_path: Path) -> None:
    """`"hosts": "a.test"` became hosts a,.,t,e,s,t; `"service_options": "x"` a catch-all service."""

    async def scenario() -> None:
        plane = ControlPlane(tmp_path)
        for request in (
            with_field("service_options", "hosts", "a.test"),
            with_field("", "service_options", "x"),
        ):
            assert (await plane.send(request))["ok"] is False
        assert plane.backend_of("a.test") is None and plane.backend_of("") is None
        assert plane.state_bytes() is None
        await plane.close()

    run(scenario())


def test_every_registered_command_has_a_router_handler(tmp_path: Path) -> None:
    router = Router(log=CapturedLog(), state=StateFile(path=tmp_path / "s"), dataplane=InProcessDataPlane())
    assert {"deploy", "remove", "pause", "stop", "resume", "list"} <= set(COMMANDS)
    assert all(callable(getattr(router, name)) for name in COMMANDS)


def test_an_unexpected_exception_in_a_handler_is_an_error_reply_and_the_server_goes_on(
    tmp_path: Path,
) -> None:
    async def scenario() -> None:
        plane = ControlPlane(tmp_path)
        await plane.ok(GOOD)

        async def broken(command: Any) -> Any:
            if command.name == "remove":
                raise RuntimeError("boom")
            return await plane.router.handle(command)

        plane.server = ControlServer(
            path=tmp_path / "s.sock", handler=broken, errors=(ControlError,), log=plane.log
        )
        reply = await plane.send({"command": "remove", "args": {"service": "app"}})
        assert reply == {"ok": False, "error": "internal error: RuntimeError: boom"}
        assert plane.log.entries("Control command failed")[0]["command"] == "remove"
        assert "app" in (await plane.listing())["services"]
        await plane.close()

    run(scenario())


class FailingState(StateFile):
    def save_encoded(self, entries: list[str]) -> None:  # (``save`` writes through it too)
        raise OSError(28, "No space left on device")


def test_a_command_whose_state_cannot_be_saved_changes_nothing(tmp_path: Path) -> None:
    async def scenario() -> None:
        plane = ControlPlane(tmp_path)
        await plane.ok(GOOD)
        listing, routes = await plane.listing(), plane.router.routes
        plane.router._state = FailingState(path=plane.state.path)
        for request in (
            deploy("app", "web-2:3000", hosts=["app.test"]),
            deploy("other", "web-3:3000", hosts=["other.test"]),
            {"command": "remove", "args": {"service": "app"}},
            {"command": "stop", "args": {"service": "app", "drain_timeout": 0}},
            {"command": "pause", "args": {"service": "app", "drain_timeout": 0}},
        ):
            reply = await plane.send(request)
            assert reply == {"ok": False, "error": "unable to save state: [Errno 28] No space left on device"}
            assert await plane.listing() == listing
            assert plane.router.routes is routes
        assert plane.backend_of("app.test") == ["web-1:3000"]
        assert plane.router.routes.lookup("app.test", "/") is not None
        service = plane.router.routes.lookup("app.test", "/")
        assert service is not None and service[0].mode.label == "running"
        await plane.close()

    run(scenario())


def test_a_request_over_max_request_gets_an_error_reply(tmp_path: Path) -> None:
    async def scenario() -> None:
        plane = ControlPlane(tmp_path)
        big = json.dumps(with_field("", "service", "x" * 2_000_000)).encode() + b"\n"
        reply = await plane.send(big)
        assert reply == {"ok": False, "error": "request larger than 1048576 bytes"}
        assert (await plane.send(b'{"command": "list"}')) == {
            "ok": False,
            "error": "incomplete request (no newline before the end)",
        }
        await plane.close()

    run(scenario())


def test_a_client_that_never_finishes_its_request_is_answered_and_dropped(tmp_path: Path) -> None:
    async def scenario() -> None:
        path = tmp_path / "c.sock"
        server = ControlServer(path=path, handler=lambda c: asyncio.sleep(0), errors=(), read_timeout=0.05)
        await server.start()
        reader, writer = await asyncio.open_unix_connection(str(path))
        writer.write(b'{"command": "li')
        reply = json.loads(await asyncio.wait_for(reader.readline(), 5))
        assert reply == {"ok": False, "error": "timed out reading the request"}
        assert await reader.read() == b""
        writer.close()
        await server.close()

    run(scenario())


def test_closing_removes_the_socket_only_while_it_is_still_ours(tmp_path: Path) -> None:
    async def scenario() -> None:
        path = tmp_path / "c.sock"
        first = ControlServer(path=path, handler=lambda c: asyncio.sleep(0), errors=())
        await first.start()
        await first.close()
        assert not path.exists()
        await first.start()
        other = tmp_path / "other"
        other.write_bytes(b"")  # made while the socket exists: another inode
        other.replace(path)  # someone else's file at the path now
        await first.close()
        assert path.exists()

    run(scenario())
