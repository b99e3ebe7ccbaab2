"""A worker's certificate store: a copy of the control process's, and an issuer that asks it.

The control process's ``CertificateStore`` is the source of truth (the Router sets each service's
TLS settings at deploy, the ACME issuer installs certificates and TLS-ALPN-01 challenge
certificates); its mirror sends every change to every worker (``TlsService``, ``Certificate``,
``AlpnChallenge``), and a worker's store here is built from those messages only: a static
certificate arrives as the PEM the control process read at deploy, so no worker reads certificate
files and a later change of the files cannot make workers disagree.

When a handshake needs an ACME certificate this worker does not have, the store's issuer is
``obtain`` here: one ``Obtain`` per (service, host) at a time goes to the control process, which
issues once for all workers, sends the ``Certificate`` to every worker and then answers
(``Obtained``); the certificate is therefore in this store when the answer arrives. A wait never
outlasts ``ACME_HANDSHAKE_WAIT``: a later handshake asks again.
"""

from __future__ import annotations

import asyncio
import itertools
import ssl
from collections.abc import Callable

from proxy import defaults, ipc
from proxy.log import JsonLog
from proxy.service import Service
from proxy.service_map import ServiceMap
from proxy.tls import ACME_TLS_ALPN, CertificateStore, ServiceTls, context_from_pem

TlsMessage = ipc.TlsService | ipc.Certificate | ipc.AlpnChallenge | ipc.Obtained


class ObtainRefused(Exception):
    """The control process could not get the certificate; the message says why."""


def _context(pem: str, *, alpn: tuple[str, ...] | None = None) -> ssl.SSLContext:
    data = pem.encode("latin-1")  # the bytes the control process sent, one to one
    return context_from_pem(data) if alpn is None else context_from_pem(data, alpn=alpn)


class WorkerCertificates:
    def __init__(
        self,
        *,
        log: JsonLog,
        routes: Callable[[], ServiceMap[Service]],
        send: Callable[[ipc.ToControl], None],
        wait: float = defaults.ACME_HANDSHAKE_WAIT,
    ) -> None:
        self._log = log
        self._send = send
        self._wait = wait
        self.store = CertificateStore(log=log, routes=routes, issuer=self, issue_wait=wait)
        self._requests = itertools.count(1)
        self._answers: dict[int, asyncio.Future[str]] = {}  # request → the control process's answer
        self._asking: dict[tuple[str, str], asyncio.Task[None]] = {}  # (service, host) → its request

    # ------------------------------------------------------------------ messages from the control process
    def apply(self, message: TlsMessage) -> None:
        if isinstance(message, ipc.TlsService):
            self._service(message)
        elif isinstance(message, ipc.Certificate):
            try:
                context = _context(message.pem)
            except (OSError, ValueError) as exc:  # ssl.SSLError is an OSError
                self._log.error("Unable to load certificate", host=message.host, error=str(exc))
                return
            self.store.install(
                cache_dir=message.cache_dir, host=message.host, context=context, not_after=message.not_after
            )
        elif isinstance(message, ipc.AlpnChallenge):
            self._alpn_challenge(message)
        else:
            answer = self._answers.get(message.request)
            if answer is not None and not answer.done():
                answer.set_result(message.error)

    def _service(self, message: ipc.TlsService) -> None:
        if not message.enabled:
            self.store.remove_service(message.name)
            return
        acme = message.acme_settings()
        static = None
        if message.static_pem:
            try:
                static = _context(message.static_pem)
            except (OSError, ValueError) as exc:  # the control process loaded it: not expected
                self._log.error("Unable to load certificate", service=message.name, error=str(exc))
                self.store.remove_service(message.name)  # its handshakes are refused
                return
        elif acme is None:
            self._log.error("TLS settings without a certificate source", service=message.name)
            self.store.remove_service(message.name)
            return
        self.store.set_service(
            ServiceTls(
                service=message.name,
                hosts=message.hosts,
                static=static,
                acme=None if static is not None else acme,
                on_demand_url=message.on_demand_url,
                default_host=message.default_host,
            ),
            name=message.name,
        )

    def _alpn_challenge(self, message: ipc.AlpnChallenge) -> None:
        if not message.pem:
            self.store.remove_alpn_challenge(message.host)
            return
        try:
            context = _context(message.pem, alpn=(ACME_TLS_ALPN,))
        except (OSError, ValueError) as exc:
            self._log.error("Unable to load challenge certificate", host=message.host, error=str(exc))
            return
        self.store.add_alpn_challenge(message.host, context)

    # ------------------------------------------------------------------ the store's Issuer
    async def obtain(self, tls: ServiceTls, host: str) -> None:
        """Ask the control process for ``host``'s certificate (one request per host at a time)."""
        key = (tls.service, host)
        task = self._asking.get(key)
        if task is None:
            task = asyncio.get_running_loop().create_task(self._ask(tls.service, host))
            self._asking[key] = task
            task.add_done_callback(lambda t: self._asked(key, t))
        await asyncio.shield(task)

    def _asked(self, key: tuple[str, str], task: asyncio.Task[None]) -> None:
        if self._asking.get(key) is task:
            del self._asking[key]
        if not task.cancelled():
            task.exception()  # retrieved: the handshakes that waited got it

    async def _ask(self, service: str, host: str) -> None:
        request = next(self._requests)
        answer: asyncio.Future[str] = asyncio.get_running_loop().create_future()
        self._answers[request] = answer
        try:
            self._send(ipc.Obtain(request=request, service=service, host=host))
            error = await asyncio.wait_for(answer, self._wait)
        except TimeoutError:
            raise ObtainRefused("no answer from the control process in time") from None
        finally:
            del self._answers[request]
        if error:
            raise ObtainRefused(error)
