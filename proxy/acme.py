"""The ACME issuer: obtains, caches and renews certificates, and pushes them into the certificate store.

It uses the ``acme`` package (JWS, nonces, orders) and ``cryptography`` (keys, CSRs, the
TLS-ALPN-01 certificate); everything blocking (key generation, signing, ACME I/O, cache files)
runs in a thread executor, never on the event loop.

- Cache (kamal-proxy's layout): ``<--tls-acme-cache-path>/<sha256 of the stored directory URL>/``
  holds ``acme_account+key`` (the account's P-256 key) and one file per host (its private key then
  its certificate chain, PEM). Files 0600, folders 0700. A restart serves cached certificates
  without a new order.
- One order per host at a time: concurrent handshakes for it share one task. Challenges are tried
  as autocert does: TLS-ALPN-01 first (its certificate is pushed into the store, served to
  clients offering only ``acme-tls/1``), then HTTP-01 (the token is pushed into the store,
  answered on the HTTP port) with a new order if the first failed.
- Failures are logged (ERROR, with the host) and remembered: no new order for that host before a
  backoff (ACME_RETRY_MIN doubling to ACME_RETRY_MAX) has passed.
- Renewal: a timer per certificate fires at 2/3 of its lifetime (at most ACME_RENEW_BEFORE
  before expiry); the old certificate keeps serving until the new one is installed.
- On-demand TLS: before ordering for a host not yet in the cache, ``OnDemand.approve`` asks.
- Trust: the ACME client verifies the CA's HTTPS with ``SSL_CERT_FILE`` when set.

The issuer talks to the store only through ``install`` / ``add_*_challenge`` / ``remove_*``, so it
can move to a control process later and push the same things over a pipe.
"""

from __future__ import annotations

import asyncio
import datetime
import hashlib
import os
import ssl
import threading
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from functools import partial
from pathlib import Path
from typing import Any, Protocol

from acme import challenges, client, crypto_util, errors, messages
from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec
from josepy.jwa import ES256
from josepy.jwk import JWK, JWKEC

from proxy import defaults
from proxy.log import JsonLog
from proxy.tls import ACME_TLS_ALPN, CertificateStore, ServiceTls, context_from_pem, server_context

ACCOUNT_KEY_FILE = "acme_account+key"
USER_AGENT = "kamal-proxy-py"
TLS_ALPN_01 = "tls-alpn-01"
HTTP_01 = "http-01"
CHALLENGE_ORDER = (TLS_ALPN_01, HTTP_01)
ID_PE_ACME_IDENTIFIER = x509.ObjectIdentifier("1.3.6.1.5.5.7.1.31")  # RFC 8737


class IssueError(Exception):
    """No certificate for this host now; the message says why."""


@challenges.ChallengeResponse.register
class TLSALPN01Response(challenges.KeyAuthorizationChallengeResponse):
    """The (empty) answer to a tls-alpn-01 challenge; the acme package dropped this type."""

    typ = TLS_ALPN_01


@challenges.Challenge.register
class TLSALPN01(challenges.KeyAuthorizationChallenge):
    response_cls = TLSALPN01Response
    typ = TLS_ALPN_01

    def validation(self, account_key: JWK, **unused: Any) -> str:
        return str(self.key_authorization(account_key))


def alpn_challenge_pem(host: str, key_authorization: str) -> bytes:
    """The self-signed certificate RFC 8737 asks for (key then certificate, PEM)."""
    key = ec.generate_private_key(ec.SECP256R1())
    digest = hashlib.sha256(key_authorization.encode()).digest()
    extension = x509.Extension(
        ID_PE_ACME_IDENTIFIER,
        critical=True,
        value=x509.UnrecognizedExtension(ID_PE_ACME_IDENTIFIER, b"\x04\x20" + digest),
    )
    cert = crypto_util.make_self_signed_cert(key, domains=[host], extensions=[extension])
    return _key_pem(key) + cert.public_bytes(serialization.Encoding.PEM)


def _key_pem(key: ec.EllipticCurvePrivateKey) -> bytes:
    return key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.TraditionalOpenSSL,
        serialization.NoEncryption(),
    )


def leaf_validity(pem: bytes) -> tuple[float, float]:
    """(not before, not after) of the first certificate in ``pem``, as unix times."""
    cert = x509.load_pem_x509_certificates(pem)[0]
    return cert.not_valid_before_utc.timestamp(), cert.not_valid_after_utc.timestamp()


def renew_at(not_before: float, not_after: float) -> float:
    lifetime = max(0.0, not_after - not_before)
    return not_after - min(defaults.ACME_RENEW_BEFORE, lifetime / 3)


def write_private(path: Path, data: bytes) -> None:
    """Write a 0600 file atomically (temp file + rename) in a 0700 folder."""
    path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.{threading.get_ident()}")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


class _Account:
    def __init__(self, *, acme: client.ClientV2, key: JWK) -> None:
        self.acme = acme
        self.key = key


class OnDemandApproval(Protocol):
    async def approve(self, service: str, url: str, host: str) -> None:
        """Return when ``host`` may get a certificate; raise when it may not (the reason is logged)."""


class AcmeIssuer:
    def __init__(
        self,
        *,
        loop: asyncio.AbstractEventLoop,
        log: JsonLog,
        store: CertificateStore,
        on_demand: OnDemandApproval | None = None,
        now: Callable[[], float] = time.time,
    ) -> None:
        self._loop = loop
        self._log = log
        self._store = store
        self._on_demand = on_demand
        self._now = now  # wall-clock seconds: certificates expire in calendar time
        self._executor = ThreadPoolExecutor(max_workers=2, thread_name_prefix="acme")
        self._accounts: dict[tuple[str, str], _Account] = {}
        self._accounts_lock = threading.Lock()
        self._tasks: dict[tuple[str, str], asyncio.Task[None]] = {}
        self._failures: dict[tuple[str, str], tuple[float, float]] = {}  # key → (retry at, delay)
        self._timers: dict[tuple[str, str], asyncio.TimerHandle] = {}

    def close(self) -> None:
        for timer in self._timers.values():
            timer.cancel()
        for task in self._tasks.values():
            task.cancel()
        self._executor.shutdown(wait=False, cancel_futures=True)

    # ------------------------------------------------------------------ the store's side
    async def obtain(self, tls: ServiceTls, host: str) -> None:
        assert tls.acme is not None
        key = (str(tls.acme.cache_dir), host)
        task = self._tasks.get(key)
        if task is None:
            failed = self._failures.get(key)
            if failed is not None and self._now() < failed[0]:
                raise IssueError("waiting before retrying a failed certificate request")
            task = self._start(key, tls, host, renewal=False)
        await asyncio.shield(task)

    def _start(
        self, key: tuple[str, str], tls: ServiceTls, host: str, *, renewal: bool
    ) -> asyncio.Task[None]:
        task = self._loop.create_task(self._issue(tls, host, renewal=renewal))
        self._tasks[key] = task
        task.add_done_callback(lambda t: self._done(key, t))
        return task

    def _done(self, key: tuple[str, str], task: asyncio.Task[None]) -> None:
        if self._tasks.get(key) is task:
            del self._tasks[key]
        if not task.cancelled():
            task.exception()  # retrieved: waiters got it, the log has it

    # ------------------------------------------------------------------ issuing
    async def _issue(self, tls: ServiceTls, host: str, *, renewal: bool) -> None:
        acme = tls.acme
        assert acme is not None
        key = (str(acme.cache_dir), host)
        if not tls.on_demand_url and host not in tls.hosts:
            raise IssueError(f"{host} is not a host of service {tls.service}")
        path = acme.cache_dir / host
        if not renewal:
            cached = await self._loop.run_in_executor(self._executor, _read_cached, path)
            if cached is not None and cached[2] > self._now():
                self._install(tls, host, *cached)
                self._log.debug("Certificate loaded from cache", host=host)
                return
            if tls.on_demand_url:
                if self._on_demand is None:
                    raise IssueError("on-demand TLS is not available")
                try:
                    await self._on_demand.approve(tls.service, tls.on_demand_url, host)
                except Exception as exc:  # denied: asked again on the next handshake, as kamal-proxy
                    raise IssueError(str(exc)) from None
        try:
            pem = await self._loop.run_in_executor(self._executor, self._order, tls, host)
            context, not_before, not_after, pem = await self._loop.run_in_executor(
                self._executor, _save_and_load, path, pem
            )
        except Exception as exc:
            self._failed(key, host, exc)
            raise IssueError(str(exc)) from None
        self._failures.pop(key, None)
        self._install(tls, host, context, not_before, not_after, pem)
        self._log.info(
            "Certificate renewed" if renewal else "Certificate obtained", host=host, expires=int(not_after)
        )

    def _failed(self, key: tuple[str, str], host: str, exc: Exception) -> None:
        previous = self._failures.get(key)
        delay = defaults.ACME_RETRY_MIN if previous is None else min(previous[1] * 2, defaults.ACME_RETRY_MAX)
        self._failures[key] = (self._now() + delay, delay)
        self._log.error(
            "Certificate request failed", host=host, error=str(exc) or type(exc).__name__, retry_in=delay
        )

    def _install(
        self,
        tls: ServiceTls,
        host: str,
        context: ssl.SSLContext,
        not_before: float,
        not_after: float,
        pem: bytes,
    ) -> None:
        acme = tls.acme
        assert acme is not None
        self._store.install(
            cache_dir=acme.cache_dir, host=host, context=context, not_after=not_after, pem=pem
        )
        self._schedule_renewal(tls, host, renew_at(not_before, not_after))

    def _schedule_renewal(self, tls: ServiceTls, host: str, at: float) -> None:
        assert tls.acme is not None
        key = (str(tls.acme.cache_dir), host)
        old = self._timers.pop(key, None)
        if old is not None:
            old.cancel()
        delay = min(max(0.0, at - self._now()), defaults.ACME_RENEW_CHECK_MAX)
        self._timers[key] = self._loop.call_later(delay, self._renew_due, tls, host, at)

    def _renew_due(self, tls: ServiceTls, host: str, at: float) -> None:
        assert tls.acme is not None
        key = (str(tls.acme.cache_dir), host)
        self._timers.pop(key, None)
        current = self._store.service(tls.service)
        if current is None or current.acme != tls.acme:
            return  # the service went away or changed its ACME settings
        if self._now() < at:
            self._schedule_renewal(tls, host, at)
            return
        if key in self._tasks:
            return
        task = self._start(key, tls, host, renewal=True)

        def retry_later(t: asyncio.Task[None]) -> None:
            if t.cancelled() or t.exception() is not None:
                retry = self._failures.get(key, (self._now() + defaults.ACME_RETRY_MIN, 0.0))[0]
                self._schedule_renewal(tls, host, retry)

        task.add_done_callback(retry_later)

    # ------------------------------------------------------------------ in the executor
    def _order(self, tls: ServiceTls, host: str) -> bytes:
        """One certificate, trying each challenge type with its own order (blocking)."""
        acme = tls.acme
        assert acme is not None
        account = self._account(tls)
        key_pem = _key_pem(ec.generate_private_key(ec.SECP256R1()))
        csr = crypto_util.make_csr(key_pem, [host])
        problems = []
        for kind in CHALLENGE_ORDER:
            try:
                fullchain = self._order_with(account, csr, host, kind)
            except Exception as exc:  # the CA's answer, the network, a malformed reply: try the next type
                problems.append(f"{kind}: {_describe(exc)}")
                continue
            return key_pem + fullchain.encode()
        with self._accounts_lock:  # the CA may have forgotten the account (a test CA restarting)
            self._accounts.pop((str(acme.cache_dir), acme.directory_url), None)
        raise IssueError("; ".join(problems))

    def _order_with(self, account: _Account, csr: bytes, host: str, kind: str) -> str:
        order = account.acme.new_order(csr)
        cleanup: list[Callable[[], None]] = []
        try:
            for authz in order.authorizations:
                if authz.body.status == messages.STATUS_VALID:
                    continue
                challb = next((c for c in authz.body.challenges if c.chall.typ == kind), None)
                if challb is None:
                    raise IssueError("challenge type not offered")
                chall = challb.chall
                key_authorization = chall.key_authorization(account.key)
                if kind == HTTP_01:
                    token = chall.encode("token")
                    self._on_loop(self._store.add_http_challenge, token, key_authorization)
                    cleanup.append(partial(self._store.remove_http_challenge, token))
                else:
                    pem = alpn_challenge_pem(host, key_authorization)
                    context = context_from_pem(pem, alpn=[ACME_TLS_ALPN])
                    self._on_loop(self._store.add_alpn_challenge, host, context, pem)
                    cleanup.append(partial(self._store.remove_alpn_challenge, host))
                self._synced()  # the CA may connect at once, to any worker
                account.acme.answer_challenge(challb, chall.response(account.key))
            deadline = datetime.datetime.now() + datetime.timedelta(seconds=defaults.ACME_ORDER_TIMEOUT)
            done = account.acme.poll_and_finalize(order, deadline)
            return str(done.fullchain_pem)
        finally:
            for undo in cleanup:
                self._loop.call_soon_threadsafe(undo)

    def _on_loop(self, fn: Callable[..., None], *args: Any) -> None:
        """Run ``fn`` on the event loop and wait until it ran (the store is the loop's)."""
        ran = threading.Event()

        def call() -> None:
            try:
                fn(*args)
            finally:
                ran.set()

        self._loop.call_soon_threadsafe(call)
        if not ran.wait(10):
            raise IssueError("event loop did not take the challenge")

    def _synced(self) -> None:
        """Wait (in the executor) until every copy of the store has the challenge just added."""
        done = asyncio.run_coroutine_threadsafe(self._store.synced(), self._loop)
        try:
            done.result(defaults.WORKER_ACK_TIMEOUT + 1)
        except TimeoutError:
            done.cancel()  # answer anyway: the workers that have it can still pass the validation

    def _account(self, tls: ServiceTls) -> _Account:
        acme = tls.acme
        assert acme is not None
        cache_key = (str(acme.cache_dir), acme.directory_url)
        with self._accounts_lock:
            account = self._accounts.get(cache_key)
            if account is not None:
                return account
            account = self._register(tls)
            self._accounts[cache_key] = account
            return account

    @staticmethod
    def _register(tls: ServiceTls) -> _Account:
        acme = tls.acme
        assert acme is not None
        key_path = acme.cache_dir / ACCOUNT_KEY_FILE
        try:
            private = serialization.load_pem_private_key(key_path.read_bytes(), password=None)
        except FileNotFoundError:
            private = ec.generate_private_key(ec.SECP256R1())
            write_private(key_path, _key_pem(private))
        if not isinstance(private, ec.EllipticCurvePrivateKey):
            raise IssueError("the cached ACME account key is not an ECDSA key")
        jwk = JWKEC(key=private)
        net = client.ClientNetwork(jwk, alg=ES256, user_agent=USER_AGENT, verify_ssl=True)
        ca_file = os.environ.get("SSL_CERT_FILE")
        if ca_file:  # requests takes a CA bundle path where the acme package types a bool
            setattr(net, "verify_ssl", ca_file)  # noqa: B010
        directory = client.ClientV2.get_directory(acme.directory_url, net)
        acme_client = client.ClientV2(directory, net)
        eab = None
        if acme.eab_kid:
            eab = messages.ExternalAccountBinding.from_data(
                account_public_key=jwk.public_key(),
                kid=acme.eab_kid,
                hmac_key=acme.eab_hmac_key,
                directory=directory,
            )
        registration = messages.NewRegistration.from_data(
            terms_of_service_agreed=True, external_account_binding=eab
        )
        try:
            acme_client.new_account(registration)
        except errors.ConflictError as exc:  # the key already has an account
            acme_client.net.account = messages.RegistrationResource(
                uri=exc.location, body=messages.Registration()
            )
        return _Account(acme=acme_client, key=jwk)


def _read_cached(path: Path) -> tuple[ssl.SSLContext, float, float, bytes] | None:
    """A cached certificate (key and chain in one file, autocert's layout) as a context (blocking)."""
    try:
        pem = path.read_bytes()
        not_before, not_after = leaf_validity(pem)
        return context_from_pem(pem), not_before, not_after, pem
    except (OSError, ValueError, IndexError):  # ssl.SSLError is an OSError
        return None


def _save_and_load(path: Path, pem: bytes) -> tuple[ssl.SSLContext, float, float, bytes]:
    """Write a new certificate to the cache and load it from there (blocking)."""
    not_before, not_after = leaf_validity(pem)
    write_private(path, pem)
    return server_context(certfile=str(path)), not_before, not_after, pem


def _describe(exc: BaseException) -> str:
    if isinstance(exc, errors.ValidationError):
        details = []
        for authz in exc.failed_authzrs:
            for chall in authz.body.challenges:
                if chall.error is not None:
                    details.append(str(chall.error))
        return "validation failed: " + "; ".join(details)
    return str(exc) or type(exc).__name__
