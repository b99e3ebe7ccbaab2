"""What a routed request gets before its service sees it, because of TLS: pure functions.

kamal-proxy's order (spec §3.1, steps 6 and 6a-b), for a request already routed to a service:
1. ACME HTTP-01: ``/.well-known/acme-challenge/<token>`` of a service with automatic TLS is
   answered from the certificate store's tokens (unknown token → plain-text 404), before any
   redirect, on either scheme.
2. An https request to a service without TLS → 503.
3. Redirects: plain HTTP to a TLS service with ``--tls-redirect`` → scheme https; a
   ``--canonical-host`` different from the request's host (port stripped) → that host. Either →
   one 301 to ``<scheme>://<host><path?query>`` (the request's port dropped), with
   ``Connection: close``; an HTML link body for GET only (Go's ``http.Redirect``).

``EntryRules`` is what a service carries for this (None when nothing here can apply: no TLS and
no canonical host), so the hot path pays one attribute test for plain services. Path-prefixed
services take ``tls`` and ``redirect`` from the root service of their first host, as kamal-proxy
(``sync_entry_rules``).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Protocol, TypeVar

from proxy.options import ServiceOptions
from proxy.service_map import strip_port

if TYPE_CHECKING:
    from proxy.service_map import ServiceMap

CHALLENGE_PREFIX = b"/.well-known/acme-challenge/"
TEXT_PLAIN = "text/plain; charset=utf-8"
HTML = "text/html; charset=utf-8"


@dataclass(frozen=True, slots=True)
class EntryRules:
    tls: bool  # the service (or the root service of its host) has TLS
    redirect: bool  # ... and redirects plain HTTP to https
    acme: bool  # ... with automatic certificates (HTTP-01 answered here)
    canonical_host: str


@dataclass(frozen=True, slots=True)
class Answer:
    """The proxy answers itself; ``location`` set means a 301 with ``Connection: close``."""

    status: int
    body: bytes = b""
    content_type: str = ""
    location: str = ""
    error_page: bool = False  # the built-in error page for ``status``


SERVICE_UNAVAILABLE = Answer(status=503, error_page=True)
# Go's net/http htmlEscape (used by http.Redirect)
_GO_HTML_ESCAPES = str.maketrans({"&": "&amp;", "<": "&lt;", ">": "&gt;", '"': "&#34;", "'": "&#39;"})


def rules_for(options: ServiceOptions) -> EntryRules | None:
    acme = options.tls_enabled and not (options.tls_certificate_path and options.tls_private_key_path)
    if not options.tls_enabled and not options.canonical_host:
        return None
    return EntryRules(
        tls=options.tls_enabled,
        redirect=options.tls_enabled and options.tls_redirect,
        acme=acme,
        canonical_host=options.canonical_host,
    )


class _HasRules(Protocol):
    name: str
    options: ServiceOptions
    entry: EntryRules | None


S = TypeVar("S", bound=_HasRules)


def sync_entry_rules(services: Iterable[S], routes: ServiceMap[S]) -> None:
    """Give every service its rules; path-prefixed ones follow the root service of their first host."""
    for service in services:
        own = rules_for(service.options)
        if service.options.path_prefixes == ("/",) or "/" in service.options.path_prefixes:
            service.entry = own
            continue
        found = routes.lookup(service.options.hosts[0] if service.options.hosts else "", "/")
        root = rules_for(found[0].options) if found is not None else None
        tls = root.tls if root is not None else False
        redirect = root.redirect if root is not None else False
        acme = root.acme if root is not None else False
        canonical = own.canonical_host if own is not None else ""
        service.entry = (
            EntryRules(tls=tls, redirect=redirect, acme=acme, canonical_host=canonical)
            if tls or canonical
            else None
        )


def entry_answer(
    rules: EntryRules | None,
    *,
    is_tls: bool,
    method: bytes,
    host: str,
    path: bytes,
    query: bytes,
    tokens: Mapping[str, str],
) -> Answer | None:
    """The proxy's own answer for this request, or None: the service handles it."""
    if rules is None:
        return SERVICE_UNAVAILABLE if is_tls else None
    if rules.acme and path.startswith(CHALLENGE_PREFIX):
        token = path[len(CHALLENGE_PREFIX) :].decode("latin-1")
        key_authorization = tokens.get(token)
        if key_authorization is None:
            return Answer(
                status=404, body=b"acme/autocert: certificate cache miss\n", content_type=TEXT_PLAIN
            )
        return Answer(status=200, body=key_authorization.encode(), content_type=TEXT_PLAIN)
    if is_tls and not rules.tls:
        return SERVICE_UNAVAILABLE
    name = strip_port(host)
    scheme = "https" if is_tls or rules.redirect else "http"
    target_host = rules.canonical_host or name
    if target_host == name and scheme == ("https" if is_tls else "http"):
        return None
    location = f"{scheme}://{target_host}{path.decode('latin-1')}{query.decode('latin-1')}"
    return redirect(location, method=method)


def redirect(location: str, *, method: bytes) -> Answer:
    """Go's ``http.Redirect`` with 301: an HTML link for GET, nothing for other methods."""
    if method == b"GET":
        body = f'<a href="{location.translate(_GO_HTML_ESCAPES)}">Moved Permanently</a>.\n\n'.encode()
        return Answer(status=301, body=body, content_type=HTML, location=location)
    if method == b"HEAD":
        return Answer(status=301, content_type=HTML, location=location)
    return Answer(status=301, location=location)
