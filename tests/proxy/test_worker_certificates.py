"""A worker's certificate store, in-process: built only from the control process's messages, and an
issuer that asks the control process (Obtain) and serves what arrives before the answer."""

from __future__ import annotations

import asyncio
import os
import ssl
import stat
import tempfile
from pathlib import Path

import pytest
from cryptography import x509

from proxy import ipc, tls
from proxy.service_map import ServiceMap
from proxy.tls import ACME_TLS_ALPN, CertificateStore, ServiceTls, context_from_pem
from proxy.tls_hello import ClientHello
from proxy.worker.certificates import WorkerCertificates
from tests.proxy.certs import CA, cert_pem, key_pem
from tests.proxy.test_tls_store import FakeService, RecordingLog

HOST = "a.example.com"


@pytest.fixture(scope="module")
def ca() -> CA:
    return CA.create()


def leaf_pem(ca: CA, host: str = HOST) -> tuple[str, int]:
    """A key-and-chain PEM for ``host`` as text, and its certificate's serial number."""
    cert, key = ca.issue(host)
    return (key_pem(key) + cert_pem(cert) + cert_pem(ca.cert)).decode(), cert.serial_number


def served_serial(context: ssl.SSLContext, ca: CA, host: str = HOST) -> int:
    """Handshake in memory against ``context`` as a client trusting ``ca``: the serial it presents."""
    client_ctx = ssl.create_default_context(cadata=cert_pem(ca.cert).decode())
    c_in, c_out, s_in, s_out = (ssl.MemoryBIO() for _ in range(4))
    client = client_ctx.wrap_bio(c_in, c_out, server_hostname=host)
    server = context.wrap_bio(s_in, s_out, server_side=True)
    for _ in range(10):
        for side in (client, server):
            try:
                side.do_handshake()
            except ssl.SSLWantReadError:
                pass
        s_in.write(c_out.read())
        c_in.write(s_out.read())
    der = client.getpeercert(binary_form=True)
    assert der is not None
    return x509.load_der_x509_certificate(der).serial_number


class Worker:
    """A worker's certificates over a route map naming ``services`` (name, host); what it sends."""

    def __init__(self, *services: tuple[str, str], wait: float = 5.0) -> None:
        routes: ServiceMap[FakeService] = ServiceMap(
            (host, "/", FakeService(name)) for name, host in services
        )
        self.sent: list[ipc.ToControl] = []
        self.log = RecordingLog()
        self.certs = WorkerCertificates(
            log=self.log,
            routes=lambda: routes,  # type: ignore[arg-type,return-value]
            send=self.sent.append,
            wait=wait,
        )

    @property
    def store(self) -> CertificateStore:
        return self.certs.store


def hello(name: str = HOST, *alpn: str) -> ClientHello:
    return ClientHello(server_name=name, alpn=alpn)


ACME = ipc.TlsService(
    name="app", hosts=(HOST,), acme=True, acme_directory="https://ca.test/d", acme_cache_root="/certs"
)
CACHE_DIR = str(ACME.acme_settings().cache_dir)  # type: ignore[union-attr]


def test_a_static_certificate_is_served_from_the_pem_in_the_message(ca: CA) -> None:
    worker = Worker(("app", HOST))
    pem, serial = leaf_pem(ca)
    worker.certs.apply(ipc.TlsService(name="app", hosts=(HOST,), default_host=HOST, static_pem=pem))
    context = worker.store.select(hello())
    assert isinstance(context, ssl.SSLContext)
    assert served_serial(context, ca) == serial
    assert worker.store.select(hello("")) is context  # the default host

    newer, new_serial = leaf_pem(ca)
    worker.certs.apply(ipc.TlsService(name="app", hosts=(HOST,), static_pem=newer))
    context = worker.store.select(hello())
    assert isinstance(context, ssl.SSLContext) and served_serial(context, ca) == new_serial

    worker.certs.apply(ipc.TlsService(name="app", enabled=False))
    assert worker.store.select(hello()) is None


def test_a_static_pem_that_does_not_load_refuses_that_service_and_is_logged(ca: CA) -> None:
    worker = Worker(("app", HOST))
    pem, _ = leaf_pem(ca)
    worker.certs.apply(ipc.TlsService(name="app", hosts=(HOST,), static_pem=pem))
    broken = pem.split("-----BEGIN CERTIFICATE-----")[0]  # the key alone
    worker.certs.apply(ipc.TlsService(name="app", hosts=(HOST,), static_pem=broken))
    assert worker.store.select(hello()) is None
    assert [m for level, m, _ in worker.log.lines if level == "ERROR"] == ["Unable to load certificate"]


def test_an_acme_certificate_from_the_control_process_is_served_without_asking(ca: CA) -> None:
    worker = Worker(("app", HOST))
    worker.certs.apply(ACME)
    pem, serial = leaf_pem(ca)
    worker.certs.apply(ipc.Certificate(cache_dir=CACHE_DIR, host=HOST, pem=pem, not_after=2e9))
    context = worker.store.select(hello())
    assert isinstance(context, ssl.SSLContext) and served_serial(context, ca) == serial
    assert worker.sent == []


def test_a_missing_acme_certificate_is_asked_for_once_and_served_when_it_arrives(ca: CA) -> None:
    worker = Worker(("app", HOST))
    worker.certs.apply(ACME)
    pem, serial = leaf_pem(ca)

    async def run() -> list[ssl.SSLContext | None]:
        waits = [worker.store.select(hello()) for _ in range(3)]
        assert all(w is not None and not isinstance(w, ssl.SSLContext) for w in waits)
        handshakes = [asyncio.ensure_future(w) for w in waits]  # type: ignore[arg-type]
        for _ in range(5):
            await asyncio.sleep(0)
        assert worker.sent == [ipc.Obtain(request=1, service="app", host=HOST)]  # one for all three
        worker.certs.apply(ipc.Certificate(cache_dir=CACHE_DIR, host=HOST, pem=pem, not_after=2e9))
        worker.certs.apply(ipc.Obtained(request=1))
        return list(await asyncio.gather(*handshakes))

    contexts = asyncio.run(run())
    assert all(isinstance(c, ssl.SSLContext) and served_serial(c, ca) == serial for c in contexts)


def test_a_refused_obtain_refuses_the_handshake_and_the_next_one_asks_again() -> None:
    worker = Worker(("app", HOST))
    worker.certs.apply(ACME)

    async def attempt(request: int) -> ssl.SSLContext | None:
        waiting = worker.store.select(hello())
        handshake = asyncio.ensure_future(waiting)  # type: ignore[arg-type]
        for _ in range(5):
            await asyncio.sleep(0)
        worker.certs.apply(ipc.Obtained(request=request, error="rate limited"))
        return await handshake

    async def run() -> list[ssl.SSLContext | None]:
        return [await attempt(1), await attempt(2)]

    assert asyncio.run(run()) == [None, None]
    assert [m.request for m in worker.sent if isinstance(m, ipc.Obtain)] == [1, 2]
    assert ("DEBUG", "TLS handshake refused", {"host": HOST, "reason": "rate limited"}) in worker.log.lines


def test_an_unanswered_obtain_gives_up_after_the_wait_and_forgets_the_request() -> None:
    worker = Worker(("app", HOST), wait=0.05)
    worker.certs.apply(ACME)

    async def run() -> ssl.SSLContext | None:
        handshake = asyncio.ensure_future(worker.store.select(hello()))  # type: ignore[arg-type]
        for _ in range(5):
            await asyncio.sleep(0)
        asking = list(worker.certs._asking.values())
        assert len(asking) == 1
        result = await handshake
        await asyncio.gather(*asking, return_exceptions=True)  # the request's own wait ends too
        return result

    assert asyncio.run(run()) is None
    assert worker.certs._answers == {} and worker.certs._asking == {}


def test_tls_alpn_challenge_certificates_come_and_go(ca: CA) -> None:
    worker = Worker(("app", HOST))
    worker.certs.apply(ACME)
    pem, serial = leaf_pem(ca)
    worker.certs.apply(ipc.AlpnChallenge(host=HOST, pem=pem))
    challenge = worker.store.select(hello(HOST, ACME_TLS_ALPN))
    assert isinstance(challenge, ssl.SSLContext) and served_serial(challenge, ca) == serial
    worker.certs.apply(ipc.AlpnChallenge(host=HOST, pem=""))
    assert worker.store.select(hello(HOST, ACME_TLS_ALPN)) is None


def test_the_control_store_tells_its_mirror_every_change(ca: CA, tmp_path: Path) -> None:
    seen: list[tuple[str, object]] = []

    class Mirror:
        def service_tls(self, name: str, tls: ServiceTls | None) -> None:
            seen.append(("service", (name, tls is not None)))

        def certificate(self, *, cache_dir: str, host: str, pem: bytes, not_after: float) -> None:
            seen.append(("certificate", (cache_dir, host, pem, not_after)))

        def alpn_challenge(self, host: str, pem: bytes | None) -> None:
            seen.append(("alpn", (host, pem)))

        async def synced(self) -> None:
            seen.append(("synced", None))

    store = CertificateStore(log=RecordingLog(), routes=ServiceMap)
    store.mirror = Mirror()
    pem, _ = leaf_pem(ca)
    context = context_from_pem(pem.encode())
    store.set_service(ServiceTls(service="app", hosts=(HOST,), static=context), name="app")
    store.install(cache_dir=tmp_path, host=HOST, context=context, not_after=5.0, pem=pem.encode())
    store.add_alpn_challenge(HOST, context, pem.encode())
    asyncio.run(store.synced())
    store.remove_alpn_challenge(HOST)
    store.remove_service("app")
    assert seen == [
        ("service", ("app", True)),
        ("certificate", (str(tmp_path), HOST, pem.encode(), 5.0)),
        ("alpn", (HOST, pem.encode())),
        ("synced", None),
        ("alpn", (HOST, None)),
        ("service", ("app", False)),
    ]


def test_a_pem_is_loaded_from_a_private_file_removed_even_when_loading_fails(
    ca: CA, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path))
    modes: list[int] = []
    real = tls.server_context

    def spy(*, certfile: str, **kwargs: object) -> ssl.SSLContext:
        modes.append(stat.S_IMODE(os.stat(certfile).st_mode))
        return real(certfile=certfile, **kwargs)  # type: ignore[arg-type]

    monkeypatch.setattr(tls, "server_context", spy)
    pem, _ = leaf_pem(ca)
    context_from_pem(pem.encode())
    with pytest.raises(ssl.SSLError):
        context_from_pem(b"-----BEGIN CERTIFICATE-----\nnot base64\n-----END CERTIFICATE-----\n")
    assert modes == [0o600, 0o600]
    assert list(tmp_path.iterdir()) == []
