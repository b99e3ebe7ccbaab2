"""The certificate store in-process: which context a ClientHello gets, and when it waits for the issuer."""

from __future__ import annotations

import asyncio
import ssl
from dataclasses import dataclass
from pathlib import Path

import pytest

from proxy.log import JsonLog
from proxy.options import ServiceOptions
from proxy.service_map import ServiceMap
from proxy.tls import (
    ACME_TLS_ALPN,
    NO_WILDCARDS,
    UNABLE_TO_LOAD_CERTIFICATE,
    CertificateStore,
    ServiceTls,
    TlsConfigError,
    context_from_pem,
    prepare_service_tls,
)
from proxy.tls_hello import ClientHello
from tests.proxy.certs import CA, cert_pem, key_pem


@dataclass
class FakeService:
    name: str


class RecordingLog(JsonLog):
    def __init__(self) -> None:
        self.lines: list[tuple[str, str, dict[str, object]]] = []
        self.debug_enabled = True

    def emit(self, level: str, msg: str, **attrs: object) -> None:
        self.lines.append((level, msg, attrs))


def context_for(ca: CA, host: str) -> ssl.SSLContext:
    cert, key = ca.issue(host)
    return context_from_pem(key_pem(key) + cert_pem(cert))


class FakeIssuer:
    def __init__(self, store: CertificateStore, ca: CA, *, fail: bool = False) -> None:
        self.store = store
        self.ca = ca
        self.fail = fail
        self.calls: list[str] = []

    async def obtain(self, tls: ServiceTls, host: str) -> None:
        self.calls.append(host)
        await asyncio.sleep(0)
        if self.fail:
            raise RuntimeError("CA down")
        assert tls.acme is not None
        self.store.install(
            cache_dir=tls.acme.cache_dir, host=host, context=context_for(self.ca, host), not_after=0
        )


@pytest.fixture(scope="module")
def ca() -> CA:
    return CA.create()


def make_store(services: list[tuple[str, str, str]]) -> tuple[CertificateStore, RecordingLog]:
    """``services``: (name, host, kind) with kind "static", "acme" or "plain"."""
    routes: ServiceMap[FakeService] = ServiceMap((host, "/", FakeService(name)) for name, host, _ in services)
    log = RecordingLog()
    store = CertificateStore(log=log, routes=lambda: routes)  # type: ignore[arg-type,return-value]
    return store, log


def hello(name: str, *alpn: str) -> ClientHello:
    return ClientHello(server_name=name, alpn=alpn)


def test_sni_picks_exact_then_wildcard_and_refuses_unknown_and_plain(ca: CA, tmp_path: Path) -> None:
    store, _ = make_store(
        [
            ("exact", "a.example.com", "static"),
            ("wild", "*.example.com", "static"),
            ("plain", "p.example.com", "plain"),
        ]
    )
    exact, wild = context_for(ca, "a.example.com"), context_for(ca, "*.example.com")
    store.set_service(
        ServiceTls(service="exact", hosts=("a.example.com",), static=exact, default_host="a.example.com"),
        name="exact",
    )
    store.set_service(ServiceTls(service="wild", hosts=("*.example.com",), static=wild), name="wild")
    assert store.select(hello("a.example.com", "http/1.1")) is exact
    assert store.select(hello("b.example.com")) is wild
    assert store.select(hello("p.example.com")) is None
    assert store.select(hello("x.example.org")) is None
    store.remove_service("exact")
    assert store.select(hello("a.example.com")) is None


def test_no_server_name_uses_the_default_tls_host_and_warns(ca: CA) -> None:
    store, log = make_store([("app", "a.example.com", "static")])
    assert store.select(hello("")) is None
    ctx = context_for(ca, "a.example.com")
    store.set_service(
        ServiceTls(service="app", hosts=("a.example.com",), static=ctx, default_host="a.example.com"),
        name="app",
    )
    assert store.select(hello("")) is ctx
    assert ("WARN", "No server name; using default TLS hostname", {"host": "a.example.com"}) in log.lines


def test_acme_tls_alpn_only_client_gets_the_challenge_certificate(ca: CA, tmp_path: Path) -> None:
    store, _ = make_store([("app", "a.example.com", "acme")])
    tls = prepare_service_tls(
        "app", ServiceOptions(hosts=("a.example.com",), tls_enabled=True, acme_cache_path=str(tmp_path))
    )
    store.set_service(tls, name="app")
    assert store.select(hello("a.example.com", ACME_TLS_ALPN)) is None  # nothing pending
    challenge = context_for(ca, "a.example.com")
    store.add_alpn_challenge("a.example.com", challenge)
    assert store.select(hello("a.example.com", ACME_TLS_ALPN)) is challenge
    assert store.select(hello("a.example.com", ACME_TLS_ALPN, "http/1.1")) is not challenge
    store.remove_alpn_challenge("a.example.com")
    assert store.select(hello("a.example.com", ACME_TLS_ALPN)) is None


def test_missing_acme_certificate_waits_for_the_issuer_once_then_is_served(ca: CA, tmp_path: Path) -> None:
    store, _ = make_store([("app", "a.example.com", "acme")])
    tls = prepare_service_tls(
        "app", ServiceOptions(hosts=("a.example.com",), tls_enabled=True, acme_cache_path=str(tmp_path))
    )
    store.set_service(tls, name="app")
    issuer = FakeIssuer(store, ca)
    store.issuer = issuer

    async def run() -> None:
        waiting = store.select(hello("a.example.com"))
        assert waiting is not None and not isinstance(waiting, ssl.SSLContext)
        ctx = await waiting
        assert isinstance(ctx, ssl.SSLContext)
        assert store.select(hello("a.example.com")) is ctx  # installed: no wait now

    asyncio.run(run())
    assert issuer.calls == ["a.example.com"]


def test_issuer_failure_refuses_only_that_handshake(ca: CA, tmp_path: Path) -> None:
    store, _ = make_store([("app", "a.example.com", "acme")])
    tls = prepare_service_tls(
        "app", ServiceOptions(hosts=("a.example.com",), tls_enabled=True, acme_cache_path=str(tmp_path))
    )
    store.set_service(tls, name="app")
    store.issuer = FakeIssuer(store, ca, fail=True)

    async def run() -> ssl.SSLContext | None:
        waiting = store.select(hello("a.example.com"))
        assert waiting is not None and not isinstance(waiting, ssl.SSLContext)
        return await waiting

    assert asyncio.run(run()) is None


def test_prepare_refuses_wildcards_for_acme_and_unloadable_files(ca: CA, tmp_path: Path) -> None:
    with pytest.raises(TlsConfigError, match=NO_WILDCARDS):
        prepare_service_tls("w", ServiceOptions(hosts=("*.example.com",), tls_enabled=True))
    cert, _ = ca.write_leaf(tmp_path, "a.example.com", stem="one")
    _, other_key = ca.write_leaf(tmp_path, "a.example.com", stem="two")
    bad = ServiceOptions(
        hosts=("a.example.com",),
        tls_enabled=True,
        tls_certificate_path=str(cert),
        tls_private_key_path=str(other_key),
    )
    with pytest.raises(TlsConfigError, match=UNABLE_TO_LOAD_CERTIFICATE):
        prepare_service_tls("s", bad)
    assert prepare_service_tls("plain", ServiceOptions()) is None


def test_acme_cache_folder_is_named_by_the_directory_urls_sha256(tmp_path: Path) -> None:
    tls = prepare_service_tls(
        "app", ServiceOptions(hosts=("a.com",), tls_enabled=True, acme_cache_path=str(tmp_path))
    )
    assert tls is not None and tls.acme is not None
    assert tls.acme.cache_dir == tmp_path / "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"
