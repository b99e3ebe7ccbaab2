"""Cookies as kamal-proxy reads and writes them: request cookies, writer affinity, path scoping."""

from __future__ import annotations

import pytest

from proxy.http.cookies import (
    request_cookie,
    scope_cookie_path,
    writer_affinity_active,
    writer_affinity_cookie,
)


def test_request_cookie_finds_the_first_valid_value_across_headers() -> None:
    headers = ["a=1; kamal-rollout=first", "kamal-rollout=second"]
    assert request_cookie(headers, "kamal-rollout") == "first"
    assert request_cookie(['x=1;  kamal-rollout="quoted" '], "kamal-rollout") == "quoted"
    assert request_cookie(["kamal-rollout=bad\\value; kamal-rollout=good"], "kamal-rollout") == "good"
    assert request_cookie(["kamal-rolloutx=1; other=2"], "kamal-rollout") is None
    assert request_cookie([], "kamal-rollout") is None


def test_writer_affinity_cookie_carries_its_expiry_in_milliseconds() -> None:
    cookie = writer_affinity_cookie(now=1_700_000_000.0, timeout=1.5)
    assert cookie == "kamal-writer=1700000001500; Path=/; Expires=Tue, 14 Nov 2023 22:13:22 GMT; HttpOnly"


@pytest.mark.parametrize(
    ("value", "active"),
    [("1700000001500", True), ("1700000000000", False), ("soon", False), (None, False), ("9" * 30, False)],
)
def test_writer_affinity_is_active_until_the_cookie_expires(value: str | None, active: bool) -> None:
    assert writer_affinity_active(value, now=1_700_000_000.5) is active


@pytest.mark.parametrize(
    ("cookie", "scoped"),
    [
        ("sid=1; Path=/", "sid=1; Path=/api"),
        ("sid=1; Path=/admin; HttpOnly", "sid=1; Path=/api/admin; HttpOnly"),
        ("sid=1; HttpOnly", "sid=1; HttpOnly; Path=/api"),
        ("sid=1; path=/x/; Secure", "sid=1; Path=/api/x; Secure"),
        ("sid=1; Domain=app.test; Path=/", "sid=1; Domain=app.test; Path=/api"),
        ("sid=1; Path=/../../etc", "sid=1; Path=/etc"),
    ],
)
def test_cookie_paths_move_under_the_prefix_for_the_request_host(cookie: str, scoped: str) -> None:
    assert scope_cookie_path(cookie, prefix="/api", host="app.test") == scoped


@pytest.mark.parametrize(
    "cookie",
    [
        "sid=1; Domain=other.test; Path=/",  # third party
        "sid=1; Domain=sub.app.test; Path=/",  # a subdomain
        "sid=1; Domain=.app.test; Path=/",  # a parent-domain form
        "no equals sign",
        "bad name=1; Path=/",
        'sid=a"b; Path=/',
    ],
)
def test_cookies_for_other_domains_or_unparsable_ones_are_untouched(cookie: str) -> None:
    assert scope_cookie_path(cookie, prefix="/api", host="app.test") == cookie
