"""Automatic certificates end to end: the real daemon against a real Pebble (ACME test CA)."""

from __future__ import annotations

import signal
import socket
import ssl
import stat
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from cryptography import x509

from tests.proxy.backend import Backend
from tests.proxy.certs import CA
from tests.proxy.conftest import ProxyProcess, raw_request, status_of
from tests.proxy.pebble import CHALLTESTSRV, PEBBLE, Pebble, free_port

pytestmark = pytest.mark.skipif(
    not (PEBBLE and CHALLTESTSRV), reason="pebble not installed (make install-system)"
)

HOST = "app.example.com"


@pytest.fixture
def pebble(tmp_path: Path) -> Iterator[Pebble]:
    p = Pebble(tmp_path / "pebble")
    yield p
    p.stop()


@pytest.fixture
def acme_proxy(tmp_path: Path, pebble: Pebble) -> Iterator[ProxyProcess]:
    p = ProxyProcess(tmp=tmp_path)
    p.env["SSL_CERT_FILE"] = str(pebble.ca_file)
    p.start()
    yield p
    p.stop(signal.SIGKILL)


def deploy_acme(
    proxy: ProxyProcess, pebble: Pebble, backend: Backend, *hosts: str, extra: tuple[str, ...] = ()
) -> None:
    proxy.deploy(
        "app",
        backend.address,
        args=(
            "--tls",
            *(f"--host={h}" for h in hosts),
            f"--tls-acme-directory={pebble.directory}",
            f"--tls-acme-cache-path={proxy.tmp / 'certs'}",
            *extra,
        ),
    )


def fetch(
    proxy: ProxyProcess, pebble: Pebble, host: str = HOST, timeout: float = 60
) -> tuple[int, x509.Certificate]:
    """One https request verified against Pebble's root; (status, certificate served)."""
    ctx = ssl.create_default_context(cadata=pebble.root_pem().decode())
    raw = socket.create_connection(("127.0.0.1", proxy.https_port), timeout=timeout)
    with ctx.wrap_socket(raw, server_hostname=host) as sock:
        der = sock.getpeercert(binary_form=True)
        response = raw_request(sock, f"GET /echo HTTP/1.1\r\nHost: {host}\r\n\r\n".encode(), timeout=timeout)
    assert der is not None
    return status_of(response), x509.load_der_x509_certificate(der)


def refused(proxy: ProxyProcess, host: str) -> bool:
    ctx = ssl.create_default_context()
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE
    raw = socket.create_connection(("127.0.0.1", proxy.https_port), timeout=60)
    try:
        with ctx.wrap_socket(raw, server_hostname=host):
            return False
    except (ssl.SSLError, OSError):
        return True


def test_certificate_obtained_through_http01(
    acme_proxy: ProxyProcess, pebble: Pebble, backend: Backend
) -> None:
    pebble.start(http_port=acme_proxy.port, tls_port=free_port())  # TLS-ALPN-01 cannot succeed
    deploy_acme(acme_proxy, pebble, backend, HOST)
    status, cert = fetch(acme_proxy, pebble)
    assert status == 200
    assert cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value.get_values_for_type(
        x509.DNSName
    ) == [HOST]
    assert "Attempting to validate w/ HTTP" in pebble.log_text()
    entry = acme_proxy.wait_log(lambda e: e.get("msg") == "Certificate obtained")
    assert entry["host"] == HOST and entry["level"] == "INFO"
    cache = list((acme_proxy.tmp / "certs").iterdir())
    assert len(cache) == 1 and len(cache[0].name) == 64  # sha256 of the directory URL
    for path in (cache[0] / HOST, cache[0] / "acme_account+key"):
        assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert stat.S_IMODE(cache[0].stat().st_mode) == 0o700


def test_certificate_obtained_through_tls_alpn01_then_served_from_cache_after_restart(
    acme_proxy: ProxyProcess, pebble: Pebble, backend: Backend
) -> None:
    pebble.start(http_port=free_port(), tls_port=acme_proxy.https_port)  # HTTP-01 cannot succeed
    deploy_acme(acme_proxy, pebble, backend, HOST)
    status, first = fetch(acme_proxy, pebble)
    assert status == 200
    assert "Attempting to validate w/ HTTP" not in pebble.log_text()
    assert pebble.orders() == 1
    status, again = fetch(acme_proxy, pebble)
    assert again.serial_number == first.serial_number and pebble.orders() == 1

    acme_proxy.stop()
    acme_proxy.start()  # new ports; state and cache restored
    status, restarted = fetch(acme_proxy, pebble)
    assert status == 200 and restarted.serial_number == first.serial_number
    assert pebble.orders() == 1


def test_concurrent_first_handshakes_share_one_order(
    acme_proxy: ProxyProcess, pebble: Pebble, backend: Backend
) -> None:
    import threading

    pebble.start(http_port=acme_proxy.port, tls_port=acme_proxy.https_port)
    deploy_acme(acme_proxy, pebble, backend, HOST)
    results: list[int] = []
    threads = [
        threading.Thread(target=lambda: results.append(fetch(acme_proxy, pebble)[0])) for _ in range(4)
    ]
    for t in threads:
        t.start()
    for t in threads:
        t.join(90)
    assert results == [200] * 4
    assert pebble.orders() == 1


def test_short_lived_certificate_is_renewed_in_the_background(tmp_path: Path, backend: Backend) -> None:
    pebble = Pebble(tmp_path / "pebble", validity=9)
    proxy = ProxyProcess(tmp=tmp_path)
    proxy.env["SSL_CERT_FILE"] = str(pebble.ca_file)
    proxy.start()
    try:
        pebble.start(http_port=proxy.port, tls_port=proxy.https_port)
        deploy_acme(proxy, pebble, backend, HOST)
        _, first = fetch(proxy, pebble)
        entry = proxy.wait_log(lambda e: e.get("msg") == "Certificate renewed", timeout=30)
        assert entry["host"] == HOST
        _, renewed = fetch(proxy, pebble)
        assert renewed.serial_number != first.serial_number
        assert pebble.orders() >= 2
    finally:
        proxy.stop(signal.SIGKILL)
        pebble.stop()


def test_refused_order_is_logged_and_other_hosts_keep_serving(
    acme_proxy: ProxyProcess, pebble: Pebble, backend: Backend, backend2: Backend
) -> None:
    pebble.start(http_port=acme_proxy.port, tls_port=acme_proxy.https_port)
    deploy_acme(acme_proxy, pebble, backend, HOST)
    acme_proxy.deploy(
        "blocked",
        backend2.address,
        args=(
            "--tls",
            "--host=blocked.example.com",
            f"--tls-acme-directory={pebble.directory}",
            f"--tls-acme-cache-path={acme_proxy.tmp / 'certs'}",
        ),
    )
    assert refused(acme_proxy, "blocked.example.com")
    entry = acme_proxy.wait_log(lambda e: e.get("msg") == "Certificate request failed")
    assert entry["level"] == "ERROR" and entry["host"] == "blocked.example.com"
    orders = pebble.orders()
    assert refused(acme_proxy, "blocked.example.com")  # within the backoff: no new order
    assert pebble.orders() == orders
    assert fetch(acme_proxy, pebble)[0] == 200


def test_ca_down_then_up_is_retried_later(
    acme_proxy: ProxyProcess, pebble: Pebble, backend: Backend, tmp_path: Path
) -> None:
    ca = CA.create()
    cert, key = ca.write_leaf(tmp_path, "static.example.com")
    acme_proxy.deploy(
        "static",
        backend.address,
        args=(
            "--tls",
            "--host=static.example.com",
            f"--tls-certificate-path={cert}",
            f"--tls-private-key-path={key}",
        ),
    )
    deploy_acme(acme_proxy, pebble, backend, HOST)  # Pebble not started yet
    assert refused(acme_proxy, HOST)
    entry = acme_proxy.wait_log(lambda e: e.get("msg") == "Certificate request failed")
    assert entry["host"] == HOST
    assert not refused(acme_proxy, "static.example.com")
    pebble.start(http_port=acme_proxy.port, tls_port=acme_proxy.https_port)
    deadline = time.monotonic() + 40
    while time.monotonic() < deadline:
        if not refused(acme_proxy, HOST):
            break
        time.sleep(0.5)
    assert fetch(acme_proxy, pebble)[0] == 200


EAB_KID = "kid-1"
EAB_KEY = "zWNDZM6eQGHWpSRTPal5eIUYFTu7EajVIoguysqZ9wG44nMEtx3MUAsUDkMTQ12W"


def test_external_account_binding_is_sent_when_the_ca_requires_it(tmp_path: Path, backend: Backend) -> None:
    pebble = Pebble(tmp_path / "pebble", eab={EAB_KID: EAB_KEY})
    proxy = ProxyProcess(tmp=tmp_path)
    proxy.env["SSL_CERT_FILE"] = str(pebble.ca_file)
    proxy.start()
    try:
        pebble.start(http_port=proxy.port, tls_port=proxy.https_port)
        deploy_acme(proxy, pebble, backend, "unbound.example.com")
        assert refused(proxy, "unbound.example.com")  # no binding: the CA refuses the account
        proxy.deploy(
            "bound",
            backend.address,
            args=(
                "--tls",
                f"--host={HOST}",
                f"--tls-acme-directory={pebble.directory}",
                f"--tls-acme-cache-path={proxy.tmp / 'eab-certs'}",
                f"--tls-acme-eab-kid={EAB_KID}",
                f"--tls-acme-eab-hmac-key={EAB_KEY}",
            ),
        )
        assert fetch(proxy, pebble)[0] == 200
        assert f'Successful newAccount Binding with CA using kid "{EAB_KID}"' in pebble.log_text()
    finally:
        proxy.stop(signal.SIGKILL)
        pebble.stop()
