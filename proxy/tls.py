"""The certificate store: which TLS context a handshake gets, chosen by SNI.

The data plane only asks this store. What it holds is pushed in from the control side: each TLS
service's settings (a static certificate loaded at deploy, or ACME settings) by the Router, and
certificates and challenge answers by the ACME issuer. In a multi-process proxy the store lives in
every worker and the issuer once, in the control process; nothing here calls the issuer except
through the ``Issuer`` protocol.

Choice per handshake (kamal-proxy's rules): the server name (or, when the client sent none, the
first host of a TLS service, with a WARN line) → the service owning that host at the root path
(exact → ``*.`` wildcard → catch-all, from the routing snapshot) → that service's TLS settings.
An unknown name, or a service without TLS, refuses the handshake. A client that offers only
``acme-tls/1`` gets the TLS-ALPN-01 challenge certificate of its name, if one is pending.
"""

from __future__ import annotations

import asyncio
import hashlib
import os
import ssl
import tempfile
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Protocol

from proxy import defaults
from proxy.log import JsonLog
from proxy.options import ServiceOptions
from proxy.tls_hello import ClientHello

if TYPE_CHECKING:
    from proxy.service import Service
    from proxy.service_map import ServiceMap

# ALPN is chosen here and only here: HTTP/2 first (the TLS listener serves it with H2Connection).
ALPN_PROTOCOLS: tuple[str, ...] = ("h2", "http/1.1")
ACME_TLS_ALPN = "acme-tls/1"
# TLS 1.2 suites with forward secrecy and AEAD only; TLS 1.3 suites are OpenSSL's defaults.
TLS12_CIPHERS = "ECDHE+AESGCM:ECDHE+CHACHA20"
LETS_ENCRYPT_DIRECTORY = "https://acme-v02.api.letsencrypt.org/directory"
LETS_ENCRYPT_STAGING_DIRECTORY = "https://acme-staging-v02.api.letsencrypt.org/directory"
ACME_CHALLENGE_PREFIX = "/.well-known/acme-challenge/"


class TlsConfigError(ValueError):
    """A service's TLS settings cannot be used; the message is kamal-proxy's."""


UNABLE_TO_LOAD_CERTIFICATE = "unable to load certificate"
NO_WILDCARDS = "automatic TLS does not support wildcards"


def server_context(
    *, certfile: str, keyfile: str | None = None, alpn: Iterable[str] = ALPN_PROTOCOLS
) -> ssl.SSLContext:
    """A server context: TLS 1.2+, forward-secret AEAD ciphers, session tickets on."""
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.minimum_version = ssl.TLSVersion.TLSv1_2
    ctx.set_ciphers(TLS12_CIPHERS)
    ctx.options |= ssl.OP_NO_COMPRESSION | ssl.OP_NO_RENEGOTIATION
    ctx.set_alpn_protocols(list(alpn))
    ctx.load_cert_chain(certfile, keyfile)
    return ctx


def context_from_pem(pem: bytes, *, alpn: Iterable[str] = ALPN_PROTOCOLS) -> ssl.SSLContext:
    """A server context from one PEM holding the private key and the certificate chain.

    OpenSSL loads keys from files only: the PEM goes to a temporary file created 0600 (mkstemp),
    which is removed before this returns, whether loading worked or not."""
    fd, path = tempfile.mkstemp(prefix="kamal-proxy-cert-", suffix=".pem")
    try:
        view = memoryview(pem)
        while view:
            view = view[os.write(fd, view) :]
        os.close(fd)
        fd = -1
        return server_context(certfile=path, alpn=alpn)
    finally:
        if fd >= 0:
            os.close(fd)
        os.unlink(path)


def read_static_pem(certificate_path: str, private_key_path: str) -> bytes:
    """A static certificate's key and chain as one PEM (read once, at deploy, by the control process)."""
    key = Path(private_key_path).read_bytes()
    chain = Path(certificate_path).read_bytes()
    return key.rstrip(b"\n") + b"\n" + chain


@dataclass(frozen=True, kw_only=True)
class AcmeSettings:
    """Where a service's certificates come from and are cached."""

    directory: str  # as stored ("" = Let's Encrypt production)
    cache_root: str  # --tls-acme-cache-path
    eab_kid: str = ""
    eab_hmac_key: str = ""

    @property
    def directory_url(self) -> str:
        return self.directory or LETS_ENCRYPT_DIRECTORY

    @property
    def cache_dir(self) -> Path:
        """kamal-proxy's layout: one folder per directory URL, named by the SHA-256 of the stored string."""
        return Path(self.cache_root) / hashlib.sha256(self.directory.encode()).hexdigest()


@dataclass(frozen=True, kw_only=True)
class ServiceTls:
    """One TLS service's settings, as the store needs them."""

    service: str
    hosts: tuple[str, ...]
    static: ssl.SSLContext | None = None
    static_pem: bytes = b""  # the key and chain ``static`` was loaded from (what workers load)
    acme: AcmeSettings | None = None
    on_demand_url: str = ""
    default_host: str = ""  # the host used for clients that send no server name


def prepare_service_tls(name: str, options: ServiceOptions) -> ServiceTls | None:
    """Validate and load a service's TLS settings (reads files: run it off the event loop)."""
    if not options.tls_enabled:
        return None
    hosts = tuple(h for h in options.hosts if h)
    first = options.hosts[0] if options.hosts else ""
    default_host = "" if options.tls_on_demand_url else first
    if options.tls_certificate_path and options.tls_private_key_path:
        try:
            pem = read_static_pem(options.tls_certificate_path, options.tls_private_key_path)
            static = context_from_pem(pem)
        except (OSError, ssl.SSLError, ValueError):
            raise TlsConfigError(UNABLE_TO_LOAD_CERTIFICATE) from None
        return ServiceTls(service=name, hosts=hosts, static=static, static_pem=pem, default_host=default_host)
    if any("*" in h for h in options.hosts):
        raise TlsConfigError(NO_WILDCARDS)
    cache_root = options.acme_cache_path or str(
        Path(os.environ.get("HOME", "/tmp")) / defaults.STATE_DIR / defaults.ACME_CACHE_DIR
    )
    acme = AcmeSettings(
        directory=options.acme_directory,
        cache_root=cache_root,
        eab_kid=options.acme_eab_kid,
        eab_hmac_key=options.acme_eab_hmac_key,
    )
    return ServiceTls(
        service=name,
        hosts=hosts,
        acme=acme,
        on_demand_url=options.tls_on_demand_url,
        default_host=default_host,
    )


class Issuer(Protocol):
    """The ACME side, as the store sees it: make sure ``host`` has a certificate, pushing it into
    the store (``install``) before returning; raise when it cannot."""

    def obtain(self, tls: ServiceTls, host: str) -> Awaitable[None]: ...


class StoreMirror(Protocol):
    """Told every change of the control process's store, to copy it into the workers' stores."""

    def service_tls(self, name: str, tls: ServiceTls | None) -> None: ...

    def certificate(self, *, cache_dir: str, host: str, pem: bytes, not_after: float) -> None: ...

    def alpn_challenge(self, host: str, pem: bytes | None) -> None: ...

    async def synced(self) -> None:
        """Return once every copy has what was told so far (bounded in time)."""


@dataclass
class _Installed:
    context: ssl.SSLContext
    not_after: float  # unix time


class CertificateStore:
    """Per-handshake context choice; fed by the Router (service settings) and the issuer."""

    def __init__(
        self,
        *,
        log: JsonLog,
        routes: Callable[[], ServiceMap[Service]],
        issuer: Issuer | None = None,
        issue_wait: float = defaults.ACME_HANDSHAKE_WAIT,
    ) -> None:
        self._log = log
        self._routes = routes
        self.issuer = issuer
        self._issue_wait = issue_wait
        self._services: dict[str, ServiceTls] = {}
        self._certs: dict[tuple[str, str], _Installed] = {}  # (cache dir, host) → certificate
        self._alpn_challenges: dict[str, ssl.SSLContext] = {}  # host → challenge certificate
        self.http_challenges: dict[str, str] = {}  # token → key authorization
        # told the whole token table after each change (the control process sends it to its workers)
        self.on_http_challenges: Callable[[dict[str, str]], None] | None = None
        # told every other change (the control process's store: the workers' stores follow it)
        self.mirror: StoreMirror | None = None

    # ------------------------------------------------------------------ fed by the control side
    def set_service(self, tls: ServiceTls | None, *, name: str) -> None:
        if tls is None:
            self._services.pop(name, None)
        else:
            self._services[name] = tls
        if self.mirror is not None:
            self.mirror.service_tls(name, tls)

    def remove_service(self, name: str) -> None:
        self.set_service(None, name=name)

    def service(self, name: str) -> ServiceTls | None:
        return self._services.get(name)

    def services(self) -> list[ServiceTls]:
        return list(self._services.values())

    def install(
        self, *, cache_dir: Path | str, host: str, context: ssl.SSLContext, not_after: float, pem: bytes = b""
    ) -> None:
        """A certificate for ``host``; ``pem`` (key and chain) is what the mirror passes on."""
        self._certs[(str(cache_dir), host)] = _Installed(context=context, not_after=not_after)
        if self.mirror is not None:
            self.mirror.certificate(cache_dir=str(cache_dir), host=host, pem=pem, not_after=not_after)

    def has_certificate(self, *, cache_dir: Path, host: str) -> bool:
        return (str(cache_dir), host) in self._certs

    def add_alpn_challenge(self, host: str, context: ssl.SSLContext, pem: bytes = b"") -> None:
        self._alpn_challenges[host] = context
        if self.mirror is not None:
            self.mirror.alpn_challenge(host, pem)

    def remove_alpn_challenge(self, host: str) -> None:
        self._alpn_challenges.pop(host, None)
        if self.mirror is not None:
            self.mirror.alpn_challenge(host, None)

    def add_http_challenge(self, token: str, key_authorization: str) -> None:
        self.http_challenges[token] = key_authorization
        if self.on_http_challenges is not None:
            self.on_http_challenges(dict(self.http_challenges))

    def remove_http_challenge(self, token: str) -> None:
        self.http_challenges.pop(token, None)
        if self.on_http_challenges is not None:
            self.on_http_challenges(dict(self.http_challenges))

    async def synced(self) -> None:
        """Return once every copy of this store (the workers') has the changes made so far."""
        if self.mirror is not None:
            await self.mirror.synced()

    # ------------------------------------------------------------------ asked by the data plane
    def default_host(self) -> str:
        for tls in self._services.values():
            if tls.default_host:
                return tls.default_host
        return ""

    def select(self, hello: ClientHello) -> ssl.SSLContext | Awaitable[ssl.SSLContext | None] | None:
        """The context for this handshake, None to refuse it, or an awaitable when a certificate
        must be obtained first (only that handshake waits)."""
        name = hello.server_name
        if not name:
            name = self.default_host()
            if not name:
                self._log.debug("TLS handshake refused", reason="no server name")
                return None
            self._log.warn("No server name; using default TLS hostname", host=name)
        if hello.alpn == (ACME_TLS_ALPN,):
            challenge = self._alpn_challenges.get(name)
            if challenge is None:
                self._log.debug("TLS handshake refused", host=name, reason="no pending TLS-ALPN-01 challenge")
            return challenge
        found = self._routes().lookup(name, "/")
        tls = self._services.get(found[0].name) if found is not None else None
        if tls is None:
            self._log.debug("TLS handshake refused", host=name, reason="unknown server name")
            return None
        if tls.static is not None:
            return tls.static
        assert tls.acme is not None
        installed = self._certs.get((str(tls.acme.cache_dir), name))
        if installed is not None:
            return installed.context
        if self.issuer is None:
            return None
        return self._obtain(tls, name)

    async def _obtain(self, tls: ServiceTls, host: str) -> ssl.SSLContext | None:
        assert self.issuer is not None and tls.acme is not None
        try:
            await asyncio.wait_for(asyncio.shield(self.issuer.obtain(tls, host)), self._issue_wait)
        except Exception as exc:  # the issuer logged the cause; this handshake is refused
            self._log.debug("TLS handshake refused", host=host, reason=str(exc) or type(exc).__name__)
            return None
        installed = self._certs.get((str(tls.acme.cache_dir), host))
        return installed.context if installed is not None else None
