"""The TLS entry rules as pure functions: ACME HTTP-01 answers, 503 for https to plain services, redirects."""

from __future__ import annotations

from dataclasses import dataclass

from proxy.http.tls_rules import Answer, EntryRules, entry_answer, rules_for, sync_entry_rules
from proxy.options import ServiceOptions
from proxy.service_map import ServiceMap

ACME = EntryRules(tls=True, redirect=True, acme=True, canonical_host="")
STATIC_NO_REDIRECT = EntryRules(tls=True, redirect=False, acme=False, canonical_host="")
CANONICAL = EntryRules(tls=False, redirect=False, acme=False, canonical_host="www.example.com")


def answer(
    rules: EntryRules | None,
    *,
    tls: bool = False,
    path: bytes = b"/",
    query: bytes = b"",
    host: str = "a.example.com",
    method: bytes = b"GET",
    tokens: dict[str, str] | None = None,
) -> Answer | None:
    return entry_answer(
        rules, is_tls=tls, method=method, host=host, path=path, query=query, tokens=tokens or {}
    )


def test_plain_service_on_plain_http_is_left_alone_and_on_https_is_503() -> None:
    assert answer(None) is None
    refused = answer(None, tls=True)
    assert refused is not None and refused.status == 503 and refused.error_page


def test_http01_token_is_answered_before_the_redirect() -> None:
    found = answer(ACME, path=b"/.well-known/acme-challenge/tok", tokens={"tok": "tok.thumb"})
    assert found is not None and (found.status, found.body, found.location) == (200, b"tok.thumb", "")
    missing = answer(ACME, path=b"/.well-known/acme-challenge/other", tokens={"tok": "tok.thumb"})
    assert missing is not None and missing.status == 404 and missing.content_type.startswith("text/plain")


def test_static_certificate_services_do_not_answer_challenges() -> None:
    assert answer(STATIC_NO_REDIRECT, path=b"/.well-known/acme-challenge/tok", tokens={"tok": "x"}) is None


def test_redirect_keeps_path_and_query_and_drops_the_port() -> None:
    found = answer(ACME, path=b"/a/b", query=b"?c=1", host="a.example.com:8080")
    assert found is not None
    assert (found.status, found.location) == (301, "https://a.example.com/a/b?c=1")
    assert found.body == b'<a href="https://a.example.com/a/b?c=1">Moved Permanently</a>.\n\n'


def test_redirect_body_only_for_get() -> None:
    for method in (b"POST", b"HEAD"):
        found = answer(ACME, method=method)
        assert found is not None and found.status == 301 and found.body == b""


def test_https_request_to_a_tls_service_passes() -> None:
    assert answer(ACME, tls=True) is None
    assert answer(STATIC_NO_REDIRECT) is None


def test_canonical_host_and_scheme_in_one_redirect() -> None:
    both = EntryRules(tls=True, redirect=True, acme=True, canonical_host="www.example.com")
    found = answer(both, host="example.com", path=b"/x")
    assert found is not None and found.location == "https://www.example.com/x"
    on_tls = answer(both, tls=True, host="example.com", path=b"/x")
    assert on_tls is not None and on_tls.location == "https://www.example.com/x"
    assert answer(both, tls=True, host="www.example.com:443") is None
    plain = answer(CANONICAL, host="other.example.com")
    assert plain is not None and plain.location == "http://www.example.com/"


def test_rules_for_options() -> None:
    assert rules_for(ServiceOptions()) is None
    assert rules_for(ServiceOptions(hosts=("a",), tls_enabled=True)) == ACME
    static = ServiceOptions(
        hosts=("a",), tls_enabled=True, tls_redirect=False, tls_certificate_path="c", tls_private_key_path="k"
    )
    assert rules_for(static) == STATIC_NO_REDIRECT


@dataclass
class FakeService:
    name: str
    options: ServiceOptions
    entry: EntryRules | None = None


def test_path_prefixed_service_takes_tls_and_redirect_from_its_root_service() -> None:
    root = FakeService("root", ServiceOptions(hosts=("a.com",), tls_enabled=True))
    api = FakeService("api", ServiceOptions(hosts=("a.com",), path_prefixes=("/api",)))
    lonely = FakeService("lonely", ServiceOptions(hosts=("b.com",), path_prefixes=("/x",)))
    services = [root, api, lonely]
    routes = ServiceMap((h, p, s) for s in services for h in s.options.hosts for p in s.options.path_prefixes)
    sync_entry_rules(services, routes)
    assert root.entry == ACME
    assert api.entry == ACME
    assert lonely.entry is None


def test_forwarded_port_is_the_listeners_unless_the_client_is_trusted() -> None:
    from proxy.http import headers as rules

    sent = [(b"Host", b"h"), (b"X-Forwarded-Port", b"8443")]
    replaced = rules.scan_request(sent)
    rules.add_forwarded(replaced, peer=b"p", scheme=b"https", port=b"443", trust_client=False)
    assert [line for line in replaced.lines if line.startswith(b"X-Forwarded-Port")] == [
        b"X-Forwarded-Port: 443"
    ]
    trusted = rules.scan_request(sent)
    rules.add_forwarded(trusted, peer=b"p", scheme=b"https", port=b"443", trust_client=True)
    assert [line for line in trusted.lines if line.startswith(b"X-Forwarded-Port")] == [
        b"X-Forwarded-Port: 8443"
    ]
