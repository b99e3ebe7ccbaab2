"""HTTPS through the real daemon: SNI, static certificates, redirects, forwarded headers, refusals."""

from __future__ import annotations

import json
import signal
import socket
import ssl
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest
from cryptography import x509

from tests.proxy.backend import Backend
from tests.proxy.certs import CA
from tests.proxy.conftest import ProxyProcess, clean_env, raw_request, read_response, status_of

HOST = "app.example.com"


@pytest.fixture(scope="module")
def ca() -> CA:
    return CA.create()


def client_context(ca: CA, tmp: Path, *, alpn: list[str] | None = None) -> ssl.SSLContext:
    ctx = ssl.create_default_context(cafile=str(ca.write_ca(tmp / "ca.pem")))
    if alpn:
        ctx.set_alpn_protocols(alpn)
    return ctx


def tls_connect(proxy: ProxyProcess, ctx: ssl.SSLContext, sni: str | None, **kwargs: Any) -> ssl.SSLSocket:
    raw = socket.create_connection(("127.0.0.1", proxy.https_port), timeout=10)
    try:
        return ctx.wrap_socket(raw, server_hostname=sni, **kwargs)
    except BaseException:
        raw.close()
        raise


def https_request(
    proxy: ProxyProcess,
    ctx: ssl.SSLContext,
    path: str = "/echo",
    *,
    sni: str | None = HOST,
    host: str = HOST,
    method: str = "GET",
) -> bytes:
    with tls_connect(proxy, ctx, sni) as sock:
        return raw_request(sock, f"{method} {path} HTTP/1.1\r\nHost: {host}\r\n\r\n".encode())


def body_json(response: bytes) -> dict[str, Any]:
    return dict(json.loads(response.partition(b"\r\n\r\n")[2]))


def headers_of(data: dict[str, Any]) -> dict[str, str]:
    return {str(n).lower(): str(v) for n, v in data["headers"]}


def response_header(response: bytes, name: str) -> str | None:
    for line in response.partition(b"\r\n\r\n")[0].split(b"\r\n")[1:]:
        key, _, value = line.partition(b":")
        if key.strip().lower() == name.lower().encode():
            return value.strip().decode()
    return None


def deploy_static(
    proxy: ProxyProcess,
    ca: CA,
    backend: Backend,
    *names: str,
    kind: str = "ecdsa",
    extra: tuple[str, ...] = (),
) -> tuple[Path, Path]:
    cert, key = ca.write_leaf(proxy.tmp, *names, kind=kind)
    hosts = tuple(f"--host={n}" for n in names)
    proxy.deploy(
        "app",
        backend.address,
        args=("--tls", f"--tls-certificate-path={cert}", f"--tls-private-key-path={key}", *hosts, *extra),
    )
    return cert, key


def served_serial(proxy: ProxyProcess, ca: CA, sni: str = HOST) -> int:
    with tls_connect(proxy, client_context(ca, proxy.tmp), sni) as sock:
        der = sock.getpeercert(binary_form=True)
    assert der is not None
    return x509.load_der_x509_certificate(der).serial_number


def handshake_refused(proxy: ProxyProcess, ca: CA, sni: str | None) -> bool:
    """The proxy refused this name with an unrecognized_name alert."""
    ctx = client_context(ca, proxy.tmp)
    ctx.check_hostname = sni is not None
    try:
        with tls_connect(proxy, ctx, sni):
            return False
    except ssl.SSLError as exc:
        assert "UNRECOGNIZED_NAME" in str(exc), exc
        return True


@pytest.mark.parametrize("kind", ["ecdsa", "rsa"])
def test_static_certificate_serves_https_with_forwarded_proto_and_port(
    proxy: ProxyProcess, backend: Backend, ca: CA, kind: str
) -> None:
    deploy_static(proxy, ca, backend, HOST, kind=kind)
    ctx = client_context(ca, proxy.tmp, alpn=["http/1.1"])
    with tls_connect(proxy, ctx, HOST) as sock:
        assert sock.selected_alpn_protocol() == "http/1.1"
        assert sock.version() in ("TLSv1.2", "TLSv1.3")
        response = raw_request(sock, f"GET /echo?x=1 HTTP/1.1\r\nHost: {HOST}\r\n\r\n".encode())
        assert status_of(response) == 200
        headers = headers_of(body_json(response))
        # keep-alive on the TLS connection
        again = raw_request(sock, f"GET /echo HTTP/1.1\r\nHost: {HOST}\r\n\r\n".encode())
        assert status_of(again) == 200
    assert headers["x-forwarded-proto"] == "https"
    assert headers["x-forwarded-port"] == str(proxy.https_port)
    assert headers["host"] == HOST
    logged = proxy.wait_log(lambda e: e.get("msg") == "Request" and e.get("scheme") == "https")
    assert logged["port"] == proxy.https_port and logged["query"] == "x=1"


def test_plain_http_listener_sends_its_own_forwarded_port(proxy: ProxyProcess, backend: Backend) -> None:
    proxy.deploy("app", backend.address, args=("--forward-headers=false",))
    sock = proxy.connect()
    response = raw_request(sock, b"GET /echo HTTP/1.1\r\nHost: a\r\nX-Forwarded-Port: 1\r\n\r\n")
    sock.close()
    headers = [(n.lower(), v) for n, v in body_json(response)["headers"]]
    assert [v for n, v in headers if n == "x-forwarded-port"] == [str(proxy.port)]


def test_unknown_name_and_service_without_tls_refuse_the_handshake(
    proxy: ProxyProcess, backend: Backend, ca: CA
) -> None:
    deploy_static(proxy, ca, backend, HOST)
    proxy.deploy("plain", backend.address, args=("--host=plain.example.com",))
    assert handshake_refused(proxy, ca, "unknown.example.com")
    assert handshake_refused(proxy, ca, "plain.example.com")
    assert not handshake_refused(proxy, ca, HOST)
    assert not [e for e in proxy.logs() if e.get("level") in ("ERROR", "WARN") or "raw" in e]


def test_client_without_server_name_gets_the_default_tls_host_with_a_warning(
    proxy: ProxyProcess, backend: Backend, ca: CA
) -> None:
    assert handshake_refused(proxy, ca, None)  # no TLS service yet: nothing to default to
    deploy_static(proxy, ca, backend, HOST)
    ctx = client_context(ca, proxy.tmp)
    ctx.check_hostname = False
    with tls_connect(proxy, ctx, None) as sock:
        der = sock.getpeercert(binary_form=True)
        assert der is not None
        names = x509.load_der_x509_certificate(der).extensions.get_extension_for_class(
            x509.SubjectAlternativeName
        )
        assert names.value.get_values_for_type(x509.DNSName) == [HOST]
    entry = proxy.wait_log(lambda e: e.get("msg") == "No server name; using default TLS hostname")
    assert entry["level"] == "WARN" and entry["host"] == HOST


def test_wildcard_host_with_a_static_wildcard_certificate(
    proxy: ProxyProcess, backend: Backend, ca: CA
) -> None:
    deploy_static(proxy, ca, backend, "*.example.com")
    ctx = client_context(ca, proxy.tmp)
    response = https_request(proxy, ctx, sni="a.example.com", host="a.example.com")
    assert status_of(response) == 200
    assert handshake_refused(proxy, ca, "a.example.org")


def test_unloadable_certificate_fails_the_deploy_and_keeps_the_previous_one(
    proxy: ProxyProcess, backend: Backend, ca: CA
) -> None:
    deploy_static(proxy, ca, backend, HOST)
    serial = served_serial(proxy, ca)
    _, other_key = ca.write_leaf(proxy.tmp, HOST, stem="other")
    cert, _ = ca.write_leaf(proxy.tmp, HOST, stem="mismatch")
    for cert_path, key_path in ((cert, other_key), (proxy.tmp / "missing.crt", other_key)):
        result = proxy.ctl(
            "deploy",
            "app",
            f"--target={backend.address}",
            "--host",
            HOST,
            "--tls",
            f"--tls-certificate-path={cert_path}",
            f"--tls-private-key-path={key_path}",
            check=False,
        )
        assert result.returncode == 1
        assert result.stderr == "Error: unable to load certificate\n"
    assert served_serial(proxy, ca) == serial


def test_redeploy_reloads_the_certificate_files(proxy: ProxyProcess, backend: Backend, ca: CA) -> None:
    cert, key = deploy_static(proxy, ca, backend, HOST)
    first = served_serial(proxy, ca)
    new_cert, new_key = ca.write_leaf(proxy.tmp, HOST, stem="renewed")
    cert.write_bytes(new_cert.read_bytes())
    key.write_bytes(new_key.read_bytes())
    assert served_serial(proxy, ca) == first  # loaded once, at deploy
    proxy.deploy(
        "app",
        backend.address,
        args=("--tls", f"--tls-certificate-path={cert}", f"--tls-private-key-path={key}", f"--host={HOST}"),
    )
    assert served_serial(proxy, ca) != first


def test_automatic_tls_refuses_wildcard_hosts(proxy: ProxyProcess, backend: Backend) -> None:
    result = proxy.ctl(
        "deploy", "app", f"--target={backend.address}", "--host=*.example.com", "--tls", check=False
    )
    assert result.returncode == 1
    assert result.stderr == "Error: automatic TLS does not support wildcards\n"


def test_plain_http_to_a_tls_service_is_redirected_keeping_path_and_query(
    proxy: ProxyProcess, backend: Backend, ca: CA
) -> None:
    deploy_static(proxy, ca, backend, HOST)
    sock = proxy.connect()
    response = raw_request(sock, f"GET /a/b?c=d&e HTTP/1.1\r\nHost: {HOST}:{proxy.port}\r\n\r\n".encode())
    assert status_of(response) == 301
    assert response_header(response, "Location") == f"https://{HOST}/a/b?c=d&e"
    assert response_header(response, "Connection") == "close"
    assert response.endswith(f'<a href="https://{HOST}/a/b?c=d&amp;e">Moved Permanently</a>.\n\n'.encode())
    assert sock.recv(10) == b""  # closed after the redirect
    sock.close()
    post = raw_request(
        proxy.connect(), f"POST /form HTTP/1.1\r\nHost: {HOST}\r\nContent-Length: 0\r\n\r\n".encode()
    )
    assert status_of(post) == 301 and post.endswith(b"\r\n\r\n")


def test_tls_redirect_false_serves_both_schemes(proxy: ProxyProcess, backend: Backend, ca: CA) -> None:
    deploy_static(proxy, ca, backend, HOST, extra=("--tls-redirect=false",))
    sock = proxy.connect()
    plain = raw_request(sock, f"GET /echo HTTP/1.1\r\nHost: {HOST}\r\n\r\n".encode())
    assert status_of(plain) == 200
    assert headers_of(body_json(plain))["x-forwarded-proto"] == "http"
    secure = https_request(proxy, client_context(ca, proxy.tmp))
    assert status_of(secure) == 200


def test_canonical_host_and_scheme_change_in_one_redirect(
    proxy: ProxyProcess, backend: Backend, ca: CA
) -> None:
    deploy_static(proxy, ca, backend, HOST, "www.example.com", extra=("--canonical-host=www.example.com",))
    plain = raw_request(proxy.connect(), f"GET /x?y HTTP/1.1\r\nHost: {HOST}\r\n\r\n".encode())
    assert response_header(plain, "Location") == "https://www.example.com/x?y"
    secure = https_request(proxy, client_context(ca, proxy.tmp), "/x", sni=HOST, host=HOST)
    assert status_of(secure) == 301
    assert response_header(secure, "Location") == "https://www.example.com/x"
    canonical = https_request(
        proxy, client_context(ca, proxy.tmp), "/echo", sni="www.example.com", host="www.example.com"
    )
    assert status_of(canonical) == 200


def test_https_request_routed_to_a_service_without_tls_is_503(
    proxy: ProxyProcess, backend: Backend, ca: CA
) -> None:
    deploy_static(proxy, ca, backend, HOST)
    proxy.deploy("plain", backend.address, args=("--host=plain.example.com",))
    response = https_request(proxy, client_context(ca, proxy.tmp), sni=HOST, host="plain.example.com")
    assert status_of(response) == 503


def test_path_prefixed_service_follows_the_tls_of_its_hosts_root_service(
    proxy: ProxyProcess, backend: Backend, backend2: Backend, ca: CA
) -> None:
    deploy_static(proxy, ca, backend, HOST)
    proxy.deploy("api", backend2.address, args=(f"--host={HOST}", "--path-prefix=/api"))
    secure = https_request(proxy, client_context(ca, proxy.tmp), "/api/echo")
    assert status_of(secure) == 200
    assert response_header(secure, "X-Backend") == "two"
    plain = raw_request(proxy.connect(), f"GET /api/echo HTTP/1.1\r\nHost: {HOST}\r\n\r\n".encode())
    assert response_header(plain, "Location") == f"https://{HOST}/api/echo"


def test_sessions_resume_with_tickets(proxy: ProxyProcess, backend: Backend, ca: CA) -> None:
    deploy_static(proxy, ca, backend, HOST)
    for version in (ssl.TLSVersion.TLSv1_2, ssl.TLSVersion.TLSv1_3):
        ctx = client_context(ca, proxy.tmp)
        ctx.maximum_version = version
        with tls_connect(proxy, ctx, HOST) as first:
            raw_request(first, f"GET /echo HTTP/1.1\r\nHost: {HOST}\r\n\r\n".encode())
            session = first.session
        with tls_connect(proxy, ctx, HOST, session=session) as second:
            assert second.session_reused, version


@pytest.mark.filterwarnings("ignore::DeprecationWarning")
def test_old_protocol_versions_are_refused(proxy: ProxyProcess, backend: Backend, ca: CA) -> None:
    deploy_static(proxy, ca, backend, HOST)
    ctx = client_context(ca, proxy.tmp)
    ctx.minimum_version = ssl.TLSVersion.TLSv1
    ctx.maximum_version = ssl.TLSVersion.TLSv1_1
    try:
        ctx.set_ciphers("ALL:@SECLEVEL=0")
    except ssl.SSLError:
        pytest.skip("this OpenSSL cannot speak TLS 1.1 at all")
    assert handshake_refused_with(proxy, ctx)


def handshake_refused_with(proxy: ProxyProcess, ctx: ssl.SSLContext) -> bool:
    try:
        with tls_connect(proxy, ctx, HOST):
            return False
    except (ssl.SSLError, OSError):
        return True


def test_openssl_s_client_sees_the_chain_and_alpn(proxy: ProxyProcess, backend: Backend, ca: CA) -> None:
    deploy_static(proxy, ca, backend, HOST)
    ca_file = ca.write_ca(proxy.tmp / "ca.pem")
    result = subprocess.run(
        [
            "openssl",
            "s_client",
            "-connect",
            f"127.0.0.1:{proxy.https_port}",
            "-servername",
            HOST,
            "-alpn",
            "h2,http/1.1",
            "-CAfile",
            str(ca_file),
            "-verify_return_error",
        ],
        input=b"",
        capture_output=True,
        timeout=20,
    )
    out = result.stdout.decode()
    assert "ALPN protocol: h2" in out
    assert "Verify return code: 0 (ok)" in out


def test_slow_and_split_client_hello_is_waited_for(proxy: ProxyProcess, backend: Backend, ca: CA) -> None:
    deploy_static(proxy, ca, backend, HOST)
    ctx = client_context(ca, proxy.tmp)
    incoming, outgoing = ssl.MemoryBIO(), ssl.MemoryBIO()
    obj = ctx.wrap_bio(incoming, outgoing, server_hostname=HOST)
    with pytest.raises(ssl.SSLWantReadError):
        obj.do_handshake()
    hello = outgoing.read()
    sock = socket.create_connection(("127.0.0.1", proxy.https_port), timeout=10)
    for piece in (hello[:3], hello[3:50], hello[50:]):
        sock.sendall(piece)
        time.sleep(0.05)
    while True:  # finish the handshake by hand
        data = sock.recv(65536)
        assert data
        incoming.write(data)
        try:
            obj.do_handshake()
            break
        except ssl.SSLWantReadError:
            sock.sendall(outgoing.read())
    sock.sendall(outgoing.read())
    assert obj.selected_alpn_protocol() is None and obj.version() is not None
    sock.close()


def test_garbage_and_plain_http_on_the_tls_port_are_closed_quietly(
    proxy: ProxyProcess, backend: Backend, ca: CA
) -> None:
    deploy_static(proxy, ca, backend, HOST)
    for junk in (b"GET / HTTP/1.1\r\nHost: x\r\n\r\n", b"\x16\x03\x01\x00\x00", b"\x00" * 100):
        sock = socket.create_connection(("127.0.0.1", proxy.https_port), timeout=5)
        sock.sendall(junk)
        try:
            assert read_response(sock, until_close=True) == b""
        except ConnectionResetError:
            pass  # closed with the junk unread
        sock.close()
    # a real hello for a served name, then the client gives up mid-handshake
    ctx = client_context(ca, proxy.tmp)
    incoming, outgoing = ssl.MemoryBIO(), ssl.MemoryBIO()
    obj = ctx.wrap_bio(incoming, outgoing, server_hostname=HOST)
    with pytest.raises(ssl.SSLWantReadError):
        obj.do_handshake()
    sock = socket.create_connection(("127.0.0.1", proxy.https_port), timeout=5)
    sock.sendall(outgoing.read())
    assert sock.recv(100)  # the server's flight
    sock.sendall(b"\x15\x03\x03\x00\x02\x02\x28")  # a fatal alert instead of the rest
    sock.close()
    assert status_of(https_request(proxy, client_context(ca, proxy.tmp))) == 200
    assert not [e for e in proxy.logs() if e.get("level") in ("ERROR", "WARN") or "raw" in e]
    assert not [e for e in proxy.logs() if e.get("level") == "INFO" and "TLS" in str(e.get("msg"))]


def test_client_hello_must_arrive_within_the_header_timeout(tmp_path: Path, ca: CA, backend: Backend) -> None:
    proxy = ProxyProcess(tmp=tmp_path, args=("--read-header-timeout", "1s", "--debug")).start()
    try:
        deploy_static(proxy, ca, backend, HOST)
        sock = socket.create_connection(("127.0.0.1", proxy.https_port), timeout=5)
        sock.sendall(b"\x16\x03\x01")  # a hello that never completes
        started = time.monotonic()
        try:
            assert sock.recv(10) == b""
        except ConnectionResetError:
            pass  # closed with the partial hello unread
        assert 0.5 < time.monotonic() - started < 4
        sock.close()
        entry = proxy.wait_log(
            lambda e: e.get("msg") == "TLS handshake refused" and "timeout" in str(e.get("reason"))
        )
        assert entry["level"] == "DEBUG"
    finally:
        proxy.stop(signal.SIGKILL)


def listed_options(proxy: ProxyProcess, name: str) -> dict[str, Any]:
    services = json.loads(proxy.ctl("list", "--json").stdout)
    return dict(services[name]["options"])


def test_acme_directory_flags_are_stored(control_proxy: ProxyProcess, backend: Backend) -> None:
    base = ("deploy", "app", f"--target={backend.address}", "--host=a.example.com", "--tls")
    control_proxy.ctl(*base, "--tls-staging")
    assert listed_options(control_proxy, "app")["acme_directory"] == (
        "https://acme-staging-v02.api.letsencrypt.org/directory"
    )
    control_proxy.ctl(
        *base,
        "--tls-acme-directory=https://ca.example/dir",
        "--tls-acme-eab-kid=k",
        "--tls-acme-eab-hmac-key=aGk",
    )
    options = listed_options(control_proxy, "app")
    assert options["acme_directory"] == "https://ca.example/dir"
    assert (options["acme_eab_kid"], options["acme_eab_hmac_key"]) == ("k", "aGk")
    both = control_proxy.ctl(
        *base, "--tls-staging", "--tls-acme-directory=https://ca.example/dir", check=False
    )
    assert both.returncode == 1 and "cannot be used together" in both.stderr
    half = control_proxy.ctl(*base, "--tls-acme-eab-kid=k", check=False)
    assert half.returncode == 1 and "must be set together" in half.stderr


def test_acme_settings_default_to_the_environment_kamal_passes_to_the_proxy_container(
    control_proxy: ProxyProcess, backend: Backend, monkeypatch: pytest.MonkeyPatch
) -> None:
    # `docker exec kamal-proxy kamal-proxy deploy` inherits the container's env (proxy.run.options.env)
    monkeypatch.setattr(
        control_proxy,
        "env",
        {
            **control_proxy.env,
            "KAMAL_PROXY_TLS_ACME_DIRECTORY": "https://ca.example/dir",
            "TLS_ACME_DIRECTORY": "https://loses.example/dir",  # the prefixed name wins
            "TLS_ACME_EAB_KID": "k",
            "TLS_ACME_EAB_HMAC_KEY": "aGk",
        },
    )
    base = ("deploy", "app", f"--target={backend.address}", "--host=a.example.com", "--tls")
    control_proxy.ctl(*base)
    options = listed_options(control_proxy, "app")
    assert options["acme_directory"] == "https://ca.example/dir"
    assert (options["acme_eab_kid"], options["acme_eab_hmac_key"]) == ("k", "aGk")
    # flags win over the environment; an explicit --tls-staging too (no conflict with an env default)
    control_proxy.ctl(*base, "--tls-acme-directory=https://flag.example/dir")
    assert listed_options(control_proxy, "app")["acme_directory"] == "https://flag.example/dir"
    control_proxy.ctl(*base, "--tls-staging")
    assert listed_options(control_proxy, "app")["acme_directory"] == (
        "https://acme-staging-v02.api.letsencrypt.org/directory"
    )


def test_list_shows_tls_per_service(control_proxy: ProxyProcess, backend: Backend) -> None:
    control_proxy.ctl("deploy", "secure", f"--target={backend.address}", "--host=a.example.com", "--tls")
    control_proxy.ctl("deploy", "plain", f"--target={backend.address}", "--host=b.example.com")
    services = json.loads(control_proxy.ctl("list", "--json").stdout)
    assert (services["secure"]["tls"], services["plain"]["tls"]) == (True, False)
    table = control_proxy.ctl("list").stdout
    rows = {line.split()[0]: line.split()[-1] for line in table.splitlines()[1:]}
    assert rows == {"plain": "no", "secure": "yes"}


def test_static_certificate_is_served_again_after_a_restart(
    proxy: ProxyProcess, backend: Backend, ca: CA
) -> None:
    deploy_static(proxy, ca, backend, HOST)
    serial = served_serial(proxy, ca)
    proxy.stop()
    proxy.start()
    assert served_serial(proxy, ca) == serial
    assert status_of(https_request(proxy, client_context(ca, proxy.tmp))) == 200


def test_https_port_in_use_stops_the_start_with_exit_1(tmp_path: Path) -> None:
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        env = clean_env(HOME=str(tmp_path), KAMAL_PROXY_SOCKET=str(tmp_path / "s.sock"))
        result = subprocess.run(
            [sys.executable, "-m", "proxy.cli.main", "run", "--bind", "127.0.0.1", "--http-port", "0",
             "--https-port", str(port)],
            env=env, capture_output=True, text=True, timeout=20, cwd=tmp_path,
        )  # fmt: skip
    assert result.returncode == 1
    assert "Unable to start server" in result.stdout


def test_httpx_client_gets_the_page_and_a_redirect_over_both_schemes(
    proxy: ProxyProcess, backend: Backend, ca: CA
) -> None:
    import httpx

    deploy_static(proxy, ca, backend, HOST)
    ctx = client_context(ca, proxy.tmp)
    with httpx.Client(verify=ctx, follow_redirects=False) as client:
        secure = client.get(
            f"https://127.0.0.1:{proxy.https_port}/echo",
            headers={"Host": HOST},
            extensions={"sni_hostname": HOST},
        )
        assert secure.status_code == 200 and secure.headers["x-backend"] == "one"
        plain = client.get(f"http://127.0.0.1:{proxy.port}/a?b", headers={"Host": HOST})
        assert plain.status_code == 301 and plain.headers["location"] == f"https://{HOST}/a?b"
