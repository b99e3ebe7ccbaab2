"""HTTPS from the worker processes, through the real daemon with ``--workers 2``: every worker serves
HTTP/1.1 and HTTP/2 over TLS with the current certificates (static ones after a redeploy, ACME ones
from Pebble), a replaced worker serves the current certificates with no connection refused meanwhile
(the ones deployed, even if the files changed since),
and a TLS-ALPN-01 validation passes whichever worker the CA's connection reaches."""

from __future__ import annotations

import os
import signal
import socket
import ssl
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from cryptography import x509

from tests.proxy.backend import Backend
from tests.proxy.certs import CA
from tests.proxy.conftest import ProxyProcess, raw_request, status_of
from tests.proxy.h2_client import RawH2
from tests.proxy.pebble import CHALLTESTSRV, PEBBLE, Pebble, free_port
from tests.proxy.test_acme import deploy_acme
from tests.proxy.test_tls import HOST, client_context, deploy_static
from tests.proxy.test_workers import CONNECTIONS, kill_under_load, owner, workers_of


@pytest.fixture(scope="module")
def ca() -> CA:
    return CA.create()


@pytest.fixture
def two_workers(tmp_path: Path) -> Iterator[ProxyProcess]:
    p = ProxyProcess(tmp=tmp_path, workers=2).start()
    yield p
    p.stop(signal.SIGKILL)


def serial_of(sock: ssl.SSLSocket) -> int:
    der = sock.getpeercert(binary_form=True)
    assert der is not None
    return x509.load_der_x509_certificate(der).serial_number


def https_served_by(
    proxy: ProxyProcess, ctx: ssl.SSLContext, host: str = HOST, count: int = CONNECTIONS
) -> dict[int, set[int]]:
    """``count`` HTTP/1.1 requests over TLS, each on a new connection: the serial of the certificate
    served → the workers that served it (each request answered 200)."""
    pids = workers_of(proxy)
    seen: dict[int, set[int]] = {}
    for _ in range(count):
        raw = socket.create_connection(("127.0.0.1", proxy.https_port), timeout=30)
        with ctx.wrap_socket(raw, server_hostname=host) as sock:
            response = raw_request(sock, f"GET /echo HTTP/1.1\r\nHost: {host}\r\n\r\n".encode(), timeout=30)
            assert status_of(response) == 200, response
            pid = owner(sock, proxy.https_port, pids)
            assert pid is not None
            seen.setdefault(serial_of(sock), set()).add(pid)
    return seen


def h2_served_by(proxy: ProxyProcess, ca: CA, count: int = CONNECTIONS) -> set[int]:
    """``count`` HTTP/2 connections with two streams each, all answered 200: the workers that served them."""
    pids = workers_of(proxy)
    served = set()
    for _ in range(count):
        client = RawH2(proxy, ca)
        try:
            for sid in (client.request("/echo"), client.request("/echo")):
                status, _, _ = client.response(sid)
                assert status == 200
            pid = owner(client.sock, proxy.https_port, pids)
            assert pid is not None
            served.add(pid)
        finally:
            client.close()
    return served


def test_https_and_http2_are_served_by_every_worker(
    two_workers: ProxyProcess, backend: Backend, ca: CA
) -> None:
    deploy_static(two_workers, ca, backend, HOST)
    workers = set(workers_of(two_workers))
    assert len(workers) == 2
    seen = https_served_by(two_workers, client_context(ca, two_workers.tmp))
    assert list(seen.values()) == [workers]  # one certificate, served by both
    assert h2_served_by(two_workers, ca) == workers
    logged = logged_https(two_workers, CONNECTIONS * 3)  # the access log: one line per request
    assert {e["proto"] for e in logged} == {"HTTP/1.1", "HTTP/2.0"}


def logged_https(proxy: ProxyProcess, want: int, timeout: float = 5.0) -> list[dict[str, object]]:
    """The https requests in the access log, once there are ``want`` (the log is written by a thread)."""
    deadline = time.monotonic() + timeout
    while True:
        logged = [e for e in proxy.requests_logged() if e.get("scheme") == "https"]
        if len(logged) >= want or time.monotonic() > deadline:
            assert len(logged) == want
            return logged
        time.sleep(0.02)


def test_a_redeploy_with_a_new_certificate_is_served_by_every_worker_once_it_returns(
    two_workers: ProxyProcess, backend: Backend, ca: CA
) -> None:
    ctx = client_context(ca, two_workers.tmp)
    deploy_static(two_workers, ca, backend, HOST)
    first = https_served_by(two_workers, ctx)
    deploy_static(two_workers, ca, backend, HOST)  # new key and certificate, same file names
    second = https_served_by(two_workers, ctx)
    assert len(second) == 1 and second.keys() != first.keys()
    assert list(second.values()) == [set(workers_of(two_workers))]


def test_a_killed_worker_is_replaced_and_serves_https_with_the_current_certificate_and_no_refusal(
    two_workers: ProxyProcess, backend: Backend, ca: CA
) -> None:
    ctx = client_context(ca, two_workers.tmp)
    deploy_static(two_workers, ca, backend, HOST)
    deploy_static(two_workers, ca, backend, HOST)  # the current certificate is not the first one
    [current] = https_served_by(two_workers, ctx, count=4).keys()
    victim, survivor = workers_of(two_workers)

    def one_request() -> int:
        raw = socket.create_connection(("127.0.0.1", two_workers.https_port), timeout=10)
        with ctx.wrap_socket(raw, server_hostname=HOST) as sock:
            request = f"GET /echo HTTP/1.1\r\nHost: {HOST}\r\n\r\n".encode()
            return status_of(raw_request(sock, request, timeout=10))

    outcomes, replaced = kill_under_load(two_workers, victim, one_request, limit=2000)
    assert "refused" not in outcomes
    assert outcomes.count("reset") <= 2  # at most what the victim had accepted when it died
    assert outcomes.count(200) > 10
    assert sorted(workers_of(two_workers)) == sorted([survivor, replaced["pid"]])
    assert https_served_by(two_workers, ctx) == {current: {survivor, replaced["pid"]}}


def test_a_replacement_serves_the_certificate_deployed_not_the_files_changed_since(
    two_workers: ProxyProcess, backend: Backend, ca: CA
) -> None:
    """Workers never read certificate files: the PEM read at deploy is what every worker serves, so
    files renewed on disk without a redeploy cannot make a replaced worker disagree with the others."""
    ctx = client_context(ca, two_workers.tmp)
    deploy_static(two_workers, ca, backend, HOST)
    [deployed] = https_served_by(two_workers, ctx, count=4).keys()
    ca.write_leaf(two_workers.tmp, HOST)  # new files in place, no redeploy
    victim, survivor = workers_of(two_workers)
    os.kill(victim, signal.SIGKILL)
    replaced = two_workers.wait_log(lambda e: e.get("msg") == "Worker replaced", timeout=15)
    assert https_served_by(two_workers, ctx) == {deployed: {survivor, replaced["pid"]}}


ACME_HOSTS = tuple(f"h{i}.example.com" for i in range(6))


@pytest.fixture
def pebble(tmp_path: Path) -> Iterator[Pebble]:
    if not (PEBBLE and CHALLTESTSRV):
        pytest.skip("pebble not installed (make install-system)")
    p = Pebble(tmp_path / "pebble")
    yield p
    p.stop()


@pytest.fixture
def acme_workers(tmp_path: Path, pebble: Pebble) -> Iterator[ProxyProcess]:
    p = ProxyProcess(tmp=tmp_path, workers=2)
    p.env["SSL_CERT_FILE"] = str(pebble.ca_file)
    p.start()
    yield p
    p.stop(signal.SIGKILL)


def test_acme_certificates_validated_by_tls_alpn01_on_any_worker_are_served_by_both(
    acme_workers: ProxyProcess, pebble: Pebble, backend: Backend
) -> None:
    """Six hosts, one order each, validated by TLS-ALPN-01 only: the CA's connection reaches one
    worker or the other (the kernel's choice), and every one passes; then both workers serve each
    host's certificate. (If a challenge reached only one worker, all six would pass 1 time in 64.)"""
    pebble.start(http_port=free_port(), tls_port=acme_workers.https_port)  # HTTP-01 cannot succeed
    deploy_acme(acme_workers, pebble, backend, *ACME_HOSTS)
    ctx = ssl.create_default_context(cadata=pebble.root_pem().decode())
    for host in ACME_HOSTS:  # the first handshake waits for the order
        assert len(https_served_by(acme_workers, ctx, host, count=1)) == 1
    assert pebble.orders() == len(ACME_HOSTS)  # one per host, not one per worker
    assert "Attempting to validate w/ HTTP" not in pebble.log_text()
    workers = set(workers_of(acme_workers))
    for host in ACME_HOSTS:
        served = https_served_by(acme_workers, ctx, host, count=12)
        assert list(served.values()) == [workers], host
    obtained = [e for e in acme_workers.logs() if e.get("msg") == "Certificate obtained"]
    assert sorted(e["host"] for e in obtained) == sorted(ACME_HOSTS)


def test_a_replaced_worker_gets_the_acme_certificates_already_issued(
    acme_workers: ProxyProcess, pebble: Pebble, backend: Backend
) -> None:
    pebble.start(http_port=acme_workers.port, tls_port=acme_workers.https_port)
    deploy_acme(acme_workers, pebble, backend, HOST)
    ctx = ssl.create_default_context(cadata=pebble.root_pem().decode())
    [serial] = https_served_by(acme_workers, ctx, count=1).keys()
    victim, survivor = workers_of(acme_workers)
    os.kill(victim, signal.SIGKILL)
    replaced = acme_workers.wait_log(lambda e: e.get("msg") == "Worker replaced", timeout=15)
    assert https_served_by(acme_workers, ctx) == {serial: {survivor, replaced["pid"]}}
    assert pebble.orders() == 1
