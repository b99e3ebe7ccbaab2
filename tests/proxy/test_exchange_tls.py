"""The TLS rules inside the data plane, in-process on both parsers: redirects, HTTP-01 answers, 503
for https to a plain service, X-Forwarded-Proto/-Port on the HTTPS listener. No sockets, no sleeps."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import cast

from proxy.http.parsers import ParserKind
from proxy.http.tls_rules import rules_for
from proxy.options import ServiceOptions
from proxy.service import Service
from tests.proxy.harness import Harness, get, ok, settle, status_of

ACME_TLS = rules_for(ServiceOptions(hosts=("app.test",), tls_enabled=True))


def run_on(parser: str, scheme: str, scenario: Callable[[Harness], Awaitable[None]]) -> None:
    async def main() -> None:
        harness = Harness(parser=cast(ParserKind, parser), scheme=scheme)
        try:
            await scenario(harness)
        finally:
            harness.close()

    asyncio.run(main())


def tls_service(h: Harness, *, forward_headers: bool = True) -> Service:
    service = h.deploy("app", "app:3000", hosts=("app.test",), forward_headers=forward_headers)
    service.entry = ACME_TLS
    return service


def test_plain_http_to_a_tls_service_is_redirected_and_the_connection_closes(parser: str) -> None:
    async def scenario(h: Harness) -> None:
        tls_service(h)
        conn, client = h.client()
        conn.data_received(get("/a/b?c=1", host=b"app.test:8080"))
        await settle()
        response = client.take()
        assert status_of(response) == 301
        assert b"Location: https://app.test/a/b?c=1\r\n" in response
        assert b"Connection: close\r\n" in response
        assert client.closed
        assert h.targets.dialled == []
        [line] = h.log.requests()
        assert line["status"] == 301 and line["service"] == "app"

    run_on(parser, "http", scenario)


def test_http01_token_is_answered_even_while_paused_and_unknown_tokens_get_404(parser: str) -> None:
    async def scenario(h: Harness) -> None:
        service = tls_service(h)
        h.pause(service)
        h.listener.challenge_tokens = {"tok": "tok.thumbprint"}
        conn, client = h.client()
        conn.data_received(get("/.well-known/acme-challenge/tok"))
        await settle()
        response = client.take()
        assert status_of(response) == 200 and response.endswith(b"\r\n\r\ntok.thumbprint")
        conn.data_received(get("/.well-known/acme-challenge/nope"))
        await settle()
        assert status_of(client.take()) == 404
        assert h.targets.dialled == []

    run_on(parser, "http", scenario)


def test_https_request_to_a_plain_service_is_503(parser: str) -> None:
    async def scenario(h: Harness) -> None:
        h.deploy("plain", "plain:3000", hosts=("plain.test",))
        conn, client = h.client()
        conn.data_received(get("/", host=b"plain.test"))
        await settle()
        assert status_of(client.take()) == 503
        assert h.targets.dialled == []

    run_on(parser, "https", scenario)


def test_https_listener_forwards_proto_and_port(parser: str) -> None:
    async def scenario(h: Harness) -> None:
        tls_service(h, forward_headers=False)  # --tls's default: the client's values are replaced
        conn, client = h.client()
        conn.data_received(get("/x", extra=b"X-Forwarded-Proto: http\r\nX-Forwarded-Port: 1\r\n"))
        await settle()
        request = h.targets.respond(ok(b"hello"))
        assert b"X-Forwarded-Proto: https\r\n" in request
        assert b"X-Forwarded-Port: 8080\r\n" in request and request.count(b"X-Forwarded-Port") == 1
        assert status_of(client.take()) == 200
        [line] = h.log.requests()
        assert line["scheme"] == "https" and line["port"] == 8080

    run_on(parser, "https", scenario)
