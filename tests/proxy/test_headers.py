"""Header rules, one rule per test (kamal-proxy keeps one small middleware per rule)."""

from __future__ import annotations

import re

import pytest

from proxy.http import headers as rules
from proxy.http.parser import Headers

UUID4 = re.compile(r"^[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$")


def names(lines: list[bytes]) -> list[bytes]:
    return [line.split(b":", 1)[0].lower() for line in lines]


def scan(headers: Headers) -> rules.RequestFields:
    return rules.scan_request(headers)


# --- hop-by-hop removal ---------------------------------------------------------------------------
def test_request_hop_by_hop_fields_are_dropped() -> None:
    fields = scan(
        [(b"Host", b"a"), (b"Keep-Alive", b"5"), (b"TE", b"trailers"), (b"Proxy-Authorization", b"x")]
    )
    assert fields.lines == [b"Host: a"]


def test_request_fields_named_by_connection_are_dropped() -> None:
    fields = scan([(b"Connection", b"close, X-Secret"), (b"X-Secret", b"1"), (b"X-Other", b"2")])
    assert fields.lines == [b"X-Other: 2"]


def test_usual_connection_options_drop_nothing_else() -> None:
    assert rules.connection_tokens(b"keep-alive") == frozenset()
    assert rules.connection_tokens(b"Upgrade, Foo") == frozenset({b"foo"})


def test_response_hop_by_hop_fields_are_dropped() -> None:
    lines, content_type = rules.scan_response(
        [
            (b"Content-Type", b"text/plain"),
            (b"Transfer-Encoding", b"chunked"),
            (b"Connection", b"X-Hop"),
            (b"X-Hop", b"1"),
        ]
    )
    assert lines == [b"Content-Type: text/plain"]
    assert content_type == b"text/plain"


def test_a_101_response_keeps_every_field() -> None:
    assert rules.all_lines([(b"Connection", b"Upgrade"), (b"Upgrade", b"websocket")]) == [
        b"Connection: Upgrade",
        b"Upgrade: websocket",
    ]


def test_field_case_and_order_are_kept() -> None:
    fields = scan([(b"X-B", b"2"), (b"x-a", b"1"), (b"Accept", b"*/*")])
    assert fields.lines == [b"X-B: 2", b"x-a: 1", b"Accept: */*"]


def test_what_routing_and_logging_need_is_noted() -> None:
    fields = scan(
        [(b"Host", b"h"), (b"User-Agent", b"ua"), (b"Content-Type", b"t"), (b"Upgrade", b"websocket")]
    )
    assert (fields.host, fields.user_agent, fields.content_type, fields.upgrade) == (
        b"h",
        b"ua",
        b"t",
        b"websocket",
    )


# --- X-Request-Id -------------------------------------------------------------------------------
def test_client_request_id_is_kept() -> None:
    fields = scan([(b"X-Request-ID", b"abc")])
    assert rules.add_request_id(fields) == ""
    assert fields.lines == [b"X-Request-ID: abc"]
    assert fields.request_id == b"abc"


def test_missing_request_id_is_added_as_uuid4() -> None:
    fields = scan([])
    rid = rules.add_request_id(fields)
    assert UUID4.match(rid)
    assert fields.lines == [b"X-Request-Id: " + rid.encode()]


# --- X-Request-Start ----------------------------------------------------------------------------
def test_request_start_is_added_in_milliseconds() -> None:
    fields = scan([])
    rules.add_request_start(fields, 1700000000.1234)
    assert fields.lines == [b"X-Request-Start: t=1700000000123"]


def test_client_request_start_is_kept() -> None:
    fields = scan([(b"X-Request-Start", b"t=1")])
    rules.add_request_start(fields, 5.0)
    assert fields.lines == [b"X-Request-Start: t=1"]


# --- upgrade ------------------------------------------------------------------------------------
def test_upgrade_request_keeps_connection_upgrade_and_its_protocol() -> None:
    fields = scan([(b"Connection", b"Upgrade"), (b"Upgrade", b"websocket")])
    rules.add_upgrade(fields)
    assert fields.lines == [b"Connection: Upgrade\r\nUpgrade: websocket"]


# --- X-Forwarded-* ------------------------------------------------------------------------------
def test_forwarded_headers_replace_the_clients_when_not_trusted() -> None:
    fields = scan(
        [
            (b"Host", b"h"),
            (b"X-Forwarded-For", b"1.1.1.1"),
            (b"X-Forwarded-Host", b"o"),
            (b"X-Forwarded-Proto", b"https"),
        ]
    )
    rules.add_forwarded(fields, peer=b"10.0.0.1", scheme=b"http", trust_client=False)
    assert fields.lines == [
        b"Host: h",
        b"X-Forwarded-For: 10.0.0.1",
        b"X-Forwarded-Host: h",
        b"X-Forwarded-Proto: http",
    ]


def test_forwarded_for_extends_the_clients_when_trusted() -> None:
    fields = scan([(b"X-Forwarded-For", b"1.1.1.1"), (b"X-Forwarded-For", b"2.2.2.2")])
    rules.add_forwarded(fields, peer=b"10.0.0.1", scheme=b"http", trust_client=True)
    assert b"X-Forwarded-For: 1.1.1.1, 2.2.2.2, 10.0.0.1" in fields.lines


def test_forwarded_host_and_proto_keep_the_clients_when_trusted() -> None:
    fields = scan([(b"Host", b"h"), (b"X-Forwarded-Host", b"o"), (b"X-Forwarded-Proto", b"https")])
    rules.add_forwarded(fields, peer=b"p", scheme=b"http", trust_client=True)
    assert fields.lines[-2:] == [b"X-Forwarded-Host: o", b"X-Forwarded-Proto: https"]


def test_forwarded_host_and_proto_default_to_host_and_scheme_when_trusted() -> None:
    fields = scan([(b"Host", b"h")])
    rules.add_forwarded(fields, peer=b"p", scheme=b"https", trust_client=True)
    assert fields.lines[-2:] == [b"X-Forwarded-Host: h", b"X-Forwarded-Proto: https"]


# --- X-Kamal-Target -----------------------------------------------------------------------------
def test_kamal_target_names_the_target() -> None:
    fields = scan([(b"X-Kamal-Target", b"evil")])
    rules.add_kamal_target(fields, b"app:3000", trust_client=False)
    assert fields.lines == [b"X-Kamal-Target: app:3000"]


def test_kamal_target_extends_the_clients_when_trusted() -> None:
    fields = scan([(b"X-Kamal-Target", b"lb:80")])
    rules.add_kamal_target(fields, b"app:3000", trust_client=True)
    assert fields.lines == [b"X-Kamal-Target: lb:80, app:3000"]


def test_without_removes_named_fields_case_insensitively() -> None:
    lines = [b"Content-Length: 3", b"X: 1", b"TRAILER: X-Sum"]
    assert rules.without(lines, rules.BUFFERED_BODY_DROPS) == [b"X: 1"]


# --- trailers -------------------------------------------------------------------------------------
def test_trailer_field_is_re_announced_with_only_names_that_may_be_trailers() -> None:
    assert (
        rules.announced_trailers(b"X-Sum, Content-Length ,if-match,, Server-Timing")
        == b"X-Sum, Server-Timing"
    )
    lines, _ = rules.scan_response([(b"Trailer", b"Host"), (b"TRAILER", b"x-a, te"), (b"X", b"1")])
    assert lines == [b"TRAILER: x-a", b"X: 1"]  # an announcement of nothing allowed is dropped
    assert scan([(b"Host", b"a"), (b"Trailer", b"X-Sum, Authorization")]).lines == [
        b"Host: a",
        b"Trailer: X-Sum",
    ]


def test_trailer_fields_leave_out_what_must_never_be_a_trailer() -> None:
    trailers = [
        (b"X-Sum", b"1"),
        (b"HOST", b"x"),
        (b"If-None-Match", b"*"),
        (b"set-cookie", b"a"),
        (b"TE", b"x"),
    ]
    assert rules.trailer_fields(trailers) == [(b"X-Sum", b"1"), (b"set-cookie", b"a")]


@pytest.mark.parametrize(
    "name", [*rules._LOWERED, b"X-Custom-Field", b"x-CUSTOM", b"", b"A", b"Content-length", b"HOST"]
)
def test_lower_name_is_bytes_lower_for_table_names_and_others(name: bytes) -> None:
    assert rules.lower_name(name) == name.lower()


@pytest.mark.parametrize(
    ("value", "stripped"),
    [(b"", b""), (b"a", b"a"), (b"a \t ", b"a"), (b" \t", b""), (b"a b", b"a b"), (b"a\r", b"a\r")],
)
def test_strip_trailing_ows_strips_only_trailing_spaces_and_tabs(value: bytes, stripped: bytes) -> None:
    assert rules.strip_trailing_ows(value) == stripped
