"""The ACME issuer in-process, with the CA replaced by a stub order: sharing, backoff, cache, policy."""

from __future__ import annotations

import asyncio
import stat
from pathlib import Path

import pytest

from proxy import defaults
from proxy.acme import AcmeIssuer, IssueError, renew_at
from proxy.options import ServiceOptions
from proxy.service_map import ServiceMap
from proxy.tls import CertificateStore, ServiceTls, prepare_service_tls
from tests.proxy.certs import CA, cert_pem, key_pem
from tests.proxy.test_tls_store import FakeService, RecordingLog

HOST = "a.example.com"


class StubIssuer(AcmeIssuer):
    """Orders answered by a local CA (or failing), counted; the wall clock is the test's."""

    def __init__(self, *, ca: CA, fail: bool = False, **kwargs: object) -> None:
        super().__init__(**kwargs)  # type: ignore[arg-type]
        self.ca = ca
        self.fail = fail
        self.orders = 0

    def _order(self, tls: ServiceTls, host: str) -> bytes:
        self.orders += 1
        if self.fail:
            raise IssueError("tls-alpn-01: refused; http-01: refused")
        cert, key = self.ca.issue(host)
        return key_pem(key) + cert_pem(cert)


class Wall:
    def __init__(self) -> None:
        self.now = 1_000_000_000.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture(scope="module")
def ca() -> CA:
    return CA.create()


def setup(
    tmp_path: Path, ca: CA, *, fail: bool = False
) -> tuple[StubIssuer, CertificateStore, ServiceTls, RecordingLog, Wall]:
    loop = asyncio.get_running_loop()
    routes: ServiceMap[FakeService] = ServiceMap([(HOST, "/", FakeService("app"))])
    log = RecordingLog()
    store = CertificateStore(log=log, routes=lambda: routes)  # type: ignore[arg-type,return-value]
    tls = prepare_service_tls(
        "app", ServiceOptions(hosts=(HOST,), tls_enabled=True, acme_cache_path=str(tmp_path))
    )
    assert tls is not None
    store.set_service(tls, name="app")
    wall = Wall()
    issuer = StubIssuer(ca=ca, fail=fail, loop=loop, log=log, store=store, now=wall)
    store.issuer = issuer
    return issuer, store, tls, log, wall


def test_concurrent_requests_for_one_host_share_one_order_and_the_result_is_cached(
    tmp_path: Path, ca: CA
) -> None:
    async def run() -> None:
        issuer, store, tls, log, _ = setup(tmp_path, ca)
        await asyncio.gather(*(issuer.obtain(tls, HOST) for _ in range(5)))
        assert issuer.orders == 1
        assert tls.acme is not None and store.has_certificate(cache_dir=tls.acme.cache_dir, host=HOST)
        path = tls.acme.cache_dir / HOST
        assert stat.S_IMODE(path.stat().st_mode) == 0o600
        assert ("INFO", "Certificate obtained") in [(lvl, msg) for lvl, msg, _ in log.lines]
        issuer.close()

        restarted, store2, tls2, _, _ = setup(tmp_path, ca)  # a new process: the cache answers
        await restarted.obtain(tls2, HOST)
        assert restarted.orders == 0
        assert tls2.acme is not None and store2.has_certificate(cache_dir=tls2.acme.cache_dir, host=HOST)
        restarted.close()

    asyncio.run(run())


def test_failures_back_off_doubling_without_new_orders_in_between(tmp_path: Path, ca: CA) -> None:
    async def run() -> None:
        issuer, _, tls, log, wall = setup(tmp_path, ca, fail=True)
        with pytest.raises(IssueError):
            await issuer.obtain(tls, HOST)
        errors = [a for lvl, msg, a in log.lines if msg == "Certificate request failed"]
        assert errors == [
            {
                "host": HOST,
                "error": "tls-alpn-01: refused; http-01: refused",
                "retry_in": defaults.ACME_RETRY_MIN,
            }
        ]
        with pytest.raises(IssueError, match="waiting before retrying"):
            await issuer.obtain(tls, HOST)
        assert issuer.orders == 1
        wall.now += defaults.ACME_RETRY_MIN + 1
        with pytest.raises(IssueError):
            await issuer.obtain(tls, HOST)
        assert issuer.orders == 2
        assert [a["retry_in"] for lvl, msg, a in log.lines if msg == "Certificate request failed"][
            -1
        ] == 2 * defaults.ACME_RETRY_MIN
        issuer.fail = False
        wall.now += 2 * defaults.ACME_RETRY_MIN + 1
        await issuer.obtain(tls, HOST)  # the CA is back: issued, and the backoff forgotten
        assert issuer.orders == 3
        issuer.close()

    asyncio.run(run())


def test_hosts_outside_the_service_are_never_ordered(tmp_path: Path, ca: CA) -> None:
    async def run() -> None:
        issuer, _, tls, _, _ = setup(tmp_path, ca)
        with pytest.raises(IssueError, match="not a host"):
            await issuer.obtain(tls, "other.example.com")
        assert issuer.orders == 0
        issuer.close()

    asyncio.run(run())


def test_renewal_is_due_at_two_thirds_of_a_short_life_and_30_days_before_a_long_one() -> None:
    assert renew_at(0, 9) == 6
    day = 86400.0
    assert renew_at(0, 90 * day) == 60 * day
    assert renew_at(0, 365 * day) == 335 * day
