"""On-demand TLS: the proxy asks before ordering a certificate for a host it has never seen."""

from __future__ import annotations

import signal
from collections.abc import Iterator
from pathlib import Path

import pytest

from proxy.on_demand import OnDemandUrlError, check_on_demand_url, check_url
from tests.proxy.backend import Backend
from tests.proxy.conftest import ProxyProcess
from tests.proxy.pebble import CHALLTESTSRV, PEBBLE, Pebble
from tests.proxy.test_acme import fetch, refused

CUSTOMER = "customer.example.com"


def test_check_url_sets_host_and_keeps_other_parameters() -> None:
    assert (
        check_url("https://auth.example/ok?b=2&host=evil&a=1", "x.com")
        == "https://auth.example/ok?a=1&b=2&host=x.com"
    )
    assert check_url("/allowed", "x.com") == "/allowed?host=x.com"


@pytest.mark.parametrize(
    ("url", "message"),
    [
        ("//x.example/ok", "tls-on-demand-url must be a path or an absolute http(s) URL"),
        ("ftp://x.example/ok", 'unsupported scheme "ftp" in tls-on-demand-url'),
        ("http:///ok", "missing host in tls-on-demand-url"),
        ("x.example/ok", 'unable to parse tls-on-demand-url: parse "x.example/ok": invalid URI for request'),
        ("/ok%zz", 'unable to parse tls-on-demand-url: parse "/ok%zz": invalid URL escape "%zz"'),
    ],
)
def test_unusable_urls_are_refused_with_kamal_proxys_messages(url: str, message: str) -> None:
    with pytest.raises(OnDemandUrlError) as info:
        check_on_demand_url(url)
    assert str(info.value) == message


def test_paths_and_absolute_urls_are_accepted() -> None:
    assert check_on_demand_url("/tls/allowed") is True
    assert check_on_demand_url("https://auth.example:8443/ok?x=1") is False


def test_deploy_with_a_bad_url_fails_with_the_message(control_proxy: ProxyProcess, backend: Backend) -> None:
    result = control_proxy.ctl(
        "deploy", "app", f"--target={backend.address}", "--tls", "--tls-on-demand-url=ftp://x/y", check=False
    )
    assert result.returncode == 1
    assert result.stderr == 'Error: service options invalid: unsupported scheme "ftp" in tls-on-demand-url\n'


needs_pebble = pytest.mark.skipif(
    not (PEBBLE and CHALLTESTSRV), reason="pebble not installed (make install-system)"
)


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
    pebble.start(http_port=p.port, tls_port=p.https_port)
    yield p
    p.stop(signal.SIGKILL)


def deploy_on_demand(proxy: ProxyProcess, pebble: Pebble, backend: Backend, url: str) -> None:
    proxy.deploy(
        "app",
        backend.address,
        args=(
            "--tls",
            f"--tls-on-demand-url={url}",
            f"--tls-acme-directory={pebble.directory}",
            f"--tls-acme-cache-path={proxy.tmp / 'certs'}",
        ),
    )


def asked(backend: Backend, path: str) -> list[dict[str, object]]:
    return [r for r in backend.seen if str(r["target"]).startswith(path)]


@needs_pebble
def test_external_endpoint_approves_with_200_and_is_asked_once(
    acme_proxy: ProxyProcess, pebble: Pebble, backend: Backend, backend2: Backend
) -> None:
    deploy_on_demand(acme_proxy, pebble, backend, f"http://127.0.0.1:{backend2.port}/status/200?team=a")
    status, _ = fetch(acme_proxy, pebble, CUSTOMER)
    assert status == 200
    checks = asked(backend2, "/status/200")
    assert [c["target"] for c in checks] == [f"/status/200?host={CUSTOMER}&team=a"]
    assert fetch(acme_proxy, pebble, CUSTOMER)[0] == 200
    assert len(asked(backend2, "/status/200")) == 1  # cached: no second ask
    assert pebble.orders() == 1


@needs_pebble
def test_external_endpoint_denial_refuses_the_handshake_without_an_order(
    acme_proxy: ProxyProcess, pebble: Pebble, backend: Backend, backend2: Backend
) -> None:
    deploy_on_demand(acme_proxy, pebble, backend, f"http://127.0.0.1:{backend2.port}/status/403")
    assert refused(acme_proxy, CUSTOMER)
    entry = acme_proxy.wait_log(lambda e: e.get("msg") == "TLS on-demand check denied host")
    assert entry["level"] == "WARN" and entry["host"] == CUSTOMER
    assert entry["status"] == 403 and entry["body"] == "status 403"
    assert pebble.orders() == 0


@needs_pebble
def test_path_endpoint_is_asked_of_the_service_itself_with_the_host(
    acme_proxy: ProxyProcess, pebble: Pebble, backend: Backend
) -> None:
    deploy_on_demand(acme_proxy, pebble, backend, "/status/200")
    assert fetch(acme_proxy, pebble, CUSTOMER)[0] == 200
    checks = asked(backend, "/status/200")
    assert len(checks) == 1
    headers = {str(k).lower(): str(v) for k, v in checks[0]["headers"]}  # type: ignore[attr-defined]
    assert headers["host"] == CUSTOMER and headers["x-forwarded-proto"] == "http"
    acme_proxy.ctl("stop", "app")
    assert refused(acme_proxy, "other.example.com")  # a stopped service denies (503)
