"""The framing edges of issue 9 (item 7) through the real daemon, with each parser.

The parsers' byte tables (test_parsers.py) pin the events; these check that the data plane acts on
them: routing by the authority of an absolute-form target, closing after an HTTP/1.0 request with
Transfer-Encoding, an immediate 400 for an HTTP/0.9 request line, and nothing forwarded of a
chunked body whose chunk size overflows.
"""

from __future__ import annotations

import json
import time

from tests.proxy.backend import Backend
from tests.proxy.conftest import ProxyProcess, raw_request, status_of


def body_of(response: bytes) -> dict[str, object]:
    return dict(json.loads(response.partition(b"\r\n\r\n")[2]))


def test_absolute_form_target_is_routed_by_its_authority_and_forwarded_in_origin_form(
    proxy: ProxyProcess, backend: Backend, backend2: Backend
) -> None:
    proxy.deploy("app", backend.address, args=("--host=app.test",))
    proxy.deploy("other", backend2.address, args=("--host=other.test",))
    sock = proxy.connect()
    response = raw_request(sock, b"GET http://other.test/echo?x=1 HTTP/1.1\r\nHost: app.test\r\n\r\n")
    assert status_of(response) == 200
    assert b"X-Backend: two" in response
    echoed = body_of(response)
    assert echoed["target"] == "/echo?x=1"
    headers = {str(n).lower(): str(v) for n, v in echoed["headers"]}  # type: ignore[attr-defined]
    assert headers["host"] == "other.test"
    # the Host field still routes an origin-form request on the same connection
    response = raw_request(sock, b"GET /echo HTTP/1.1\r\nHost: app.test\r\n\r\n")
    assert b"X-Backend: one" in response


def test_http10_request_with_transfer_encoding_closes_after_the_response(
    proxy: ProxyProcess, backend: Backend
) -> None:
    proxy.deploy("app", backend.address)
    sock = proxy.connect()
    stream = raw_request(
        sock,
        b"POST /echo HTTP/1.0\r\nHost: a\r\nConnection: keep-alive\r\nTransfer-Encoding: chunked\r\n\r\n"
        b"3\r\nabc\r\n0\r\n\r\n"
        b"GET /echo?smuggled=1 HTTP/1.1\r\nHost: a\r\n\r\n",
        until_close=True,
    )
    assert stream.count(b"HTTP/1.") == 1  # one response, then the connection closed
    assert status_of(stream) == 200
    assert body_of(stream)["body"] == "abc"
    assert b"smuggled" not in stream
    assert not any("smuggled" in str(line.get("query", "")) for line in proxy.requests_logged())


def test_http09_request_line_is_answered_400_at_once(proxy: ProxyProcess, backend: Backend) -> None:
    proxy.deploy("app", backend.address)
    sock = proxy.connect()
    started = time.monotonic()
    response = raw_request(sock, b"GET /\r\n", until_close=True, timeout=5)
    assert status_of(response) == 400
    assert time.monotonic() - started < 4  # not after the 30 s header timeout


def test_chunk_size_overflow_forwards_nothing_of_the_body(proxy: ProxyProcess, backend: Backend) -> None:
    proxy.deploy("app", backend.address)
    sock = proxy.connect()
    response = raw_request(
        sock,
        b"POST /echo HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n"
        b"10000000000000000\r\n" + b"GET /echo?smuggled=1 HTTP/1.1\r\nHost: a\r\n\r\n" + b"\r\n0\r\n\r\n",
        until_close=True,
    )
    assert b"smuggled" not in response
    assert status_of(response) == 400
