"""The HTTPS listener: accept, read the ClientHello without consuming it, pick the context, hand over.

The listening sockets are either bound here (``start``) or handed over ready (``adopt``: a worker's
sockets, opened and kept by the control process). Per connection: the socket is accepted here
(non-blocking, from the listening socket's reader callback), then watched until the kernel holds the whole ClientHello. ``recv(MSG_PEEK)`` reads it
while leaving the bytes in place for the TLS library; ``SO_RCVLOWAT`` is set to the number of
bytes still needed so a slow client does not wake the loop per segment. The hello's server name
and ALPN go to the certificate store, which answers with a context (or refuses, or makes only this
handshake wait for an ACME certificate). The socket then goes to
``loop.connect_accepted_socket(..., ssl=context)``: uvloop's own TLS does the handshake and the
same HTTP protocol as the plain listener serves the connection.

Bounds: the hello must arrive within ``hello_timeout`` and fit in ``MAX_HELLO_BYTES``; the rest of
the handshake has ``handshake_timeout``. Scanners' failures are DEBUG lines, never noise.
"""

from __future__ import annotations

import asyncio
import socket
import ssl
from collections.abc import Awaitable, Callable
from typing import Any

from proxy import defaults
from proxy.log import JsonLog
from proxy.tls import CertificateStore
from proxy.tls_hello import MAX_HELLO_BYTES, ClientHello, HelloError, Incomplete, parse_client_hello
from proxy.worker.acceptor import ACCEPT_PAUSE, OUT_OF_DESCRIPTORS

# A fatal unrecognized_name alert (RFC 6066), so a refused client sees why instead of a reset.
UNRECOGNIZED_NAME_ALERT = b"\x15\x03\x01\x00\x02\x02\x70"
ACCEPTS_PER_WAKEUP = 64
MAX_WAKEUPS = 64  # readiness events one connection may cause before its hello is complete


class TlsListener:
    def __init__(
        self,
        *,
        loop: asyncio.AbstractEventLoop,
        store: CertificateStore,
        protocol_factory: Callable[[], asyncio.Protocol],
        log: JsonLog,
        hello_timeout: float = defaults.TLS_HELLO_TIMEOUT,
        handshake_timeout: float = defaults.TLS_HANDSHAKE_TIMEOUT,
    ) -> None:
        self.loop = loop
        self.store = store
        self.protocol_factory = protocol_factory
        self.log = log
        self.hello_timeout = hello_timeout
        self.handshake_timeout = handshake_timeout
        self.port = 0
        self._socks: list[socket.socket] = []
        self._closed = False
        self._pending: set[_PendingHello] = set()
        self._tasks: set[asyncio.Task[Any]] = set()

    def start(self, *, host: str | None, port: int, backlog: int = 2048) -> int:
        """Bind and listen; the port actually bound is returned (and kept in ``port``)."""
        if host is None:  # all interfaces, as kamal-proxy
            if socket.has_dualstack_ipv6():
                sock = socket.create_server(
                    ("", port), family=socket.AF_INET6, dualstack_ipv6=True, backlog=backlog
                )
            else:
                sock = socket.create_server(("", port), backlog=backlog)
        else:
            family = socket.AF_INET6 if ":" in host else socket.AF_INET
            sock = socket.create_server((host, port), family=family, backlog=backlog)
        return self.adopt(sock)

    def adopt(self, sock: socket.socket) -> int:
        """Accept from ``sock``, a listening socket opened elsewhere; its port is returned."""
        sock.setblocking(False)
        self._socks.append(sock)
        self.port = sock.getsockname()[1]
        self.loop.add_reader(sock.fileno(), self._accept, sock)
        return self.port

    def close(self) -> None:
        """Stop accepting and close this process's listening sockets (a control process that
        handed them over keeps its own copies) and every connection not handed over yet."""
        self._closed = True
        socks, self._socks = self._socks, []
        for sock in socks:
            self.loop.remove_reader(sock.fileno())
            sock.close()
        for pending in list(self._pending):
            pending.close()
        for task in list(self._tasks):
            task.cancel()

    # ------------------------------------------------------------------ accept
    def _accept(self, sock: socket.socket) -> None:
        if self._closed:
            return
        for _ in range(ACCEPTS_PER_WAKEUP):
            try:
                conn, _addr = sock.accept()
            except (BlockingIOError, InterruptedError):
                return
            except OSError as exc:
                if exc.errno in OUT_OF_DESCRIPTORS:  # do not spin on a socket that stays readable
                    self.loop.remove_reader(sock.fileno())
                    self.loop.call_later(ACCEPT_PAUSE, self._resume, sock)
                    self.log.debug("Unable to accept TLS connection", error=str(exc))  # (the sweep logs it)
                return  # ECONNABORTED and the like: that client is gone
            conn.setblocking(False)
            conn.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            pending = _PendingHello(self, conn)
            self._pending.add(pending)
            pending.start()

    def _resume(self, sock: socket.socket) -> None:
        if not self._closed and sock in self._socks:
            self.loop.add_reader(sock.fileno(), self._accept, sock)

    # ------------------------------------------------------------------ hand-over
    def chosen(self, conn: socket.socket, hello: ClientHello, size: int) -> None:
        """The hello (``size`` bytes) is complete: ask the store, then start TLS (or refuse)."""
        choice = self.store.select(hello)
        if choice is None:
            refuse(conn, size)
        elif isinstance(choice, ssl.SSLContext):
            self._hand_over(conn, choice, hello)
        else:
            self._track(self.loop.create_task(self._after_issue(conn, choice, hello, size)))

    async def _after_issue(
        self, conn: socket.socket, choice: Awaitable[ssl.SSLContext | None], hello: ClientHello, size: int
    ) -> None:
        try:
            context = await choice
        except BaseException:
            conn.close()
            raise
        if context is None or self._closed:
            refuse(conn, size)
            return
        self._hand_over(conn, context, hello)

    def _hand_over(self, conn: socket.socket, context: ssl.SSLContext, hello: ClientHello) -> None:
        coro = self.loop.connect_accepted_socket(
            self.protocol_factory, conn, ssl=context, ssl_handshake_timeout=self.handshake_timeout
        )
        task = self.loop.create_task(coro)
        self._track(task)
        task.add_done_callback(lambda t: self._handshake_done(t, conn, hello))

    def _handshake_done(self, task: asyncio.Task[Any], conn: socket.socket, hello: ClientHello) -> None:
        if task.cancelled():
            conn.close()
            return
        exc = task.exception()
        if exc is not None:
            self.log.debug(
                "TLS handshake error", host=hello.server_name, error=str(exc) or type(exc).__name__
            )
            conn.close()

    def _track(self, task: asyncio.Task[Any]) -> None:
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    def refused(self, pending: _PendingHello, reason: str) -> None:
        self._pending.discard(pending)
        self.log.debug("TLS handshake refused", reason=reason)

    def forget(self, pending: _PendingHello) -> None:
        self._pending.discard(pending)


def refuse(conn: socket.socket, size: int) -> None:
    """Consume the hello (so the close is a FIN, not a reset that could discard the alert), say
    unrecognized_name, close. Never blocks: the hello is already in the kernel."""
    try:
        conn.recv(size)
        conn.send(UNRECOGNIZED_NAME_ALERT)
    except OSError:
        pass
    conn.close()


class _PendingHello:
    """One accepted connection until its ClientHello is complete."""

    __slots__ = ("conn", "fd", "listener", "lowat", "timer", "wakeups", "watching")

    def __init__(self, listener: TlsListener, conn: socket.socket) -> None:
        self.listener = listener
        self.conn = conn
        self.fd = conn.fileno()
        self.wakeups = 0
        self.lowat = False  # SO_RCVLOWAT raised while waiting for the rest of the hello
        self.watching = False  # a reader and a timer are registered
        self.timer: asyncio.TimerHandle | None = None

    def start(self) -> None:
        if self._peek():  # the hello has usually arrived with the connection: no reader, no timer
            return
        loop = self.listener.loop
        self.timer = loop.call_later(self.listener.hello_timeout, self._timed_out)
        loop.add_reader(self.fd, self._readable)
        self.watching = True

    def _readable(self) -> None:
        self.wakeups += 1
        self._peek()

    def _peek(self) -> bool:
        """Look at what the kernel holds; True once the connection was handed over or refused."""
        try:
            data = self.conn.recv(MAX_HELLO_BYTES, socket.MSG_PEEK)
        except (BlockingIOError, InterruptedError):
            return False
        except OSError as exc:
            return self._fail(f"read error: {exc}")
        if not data:
            return self._fail("closed before the ClientHello")
        try:
            result = parse_client_hello(data)
        except HelloError as exc:
            return self._fail(str(exc))
        if isinstance(result, Incomplete):
            if result.need > MAX_HELLO_BYTES or self.wakeups > MAX_WAKEUPS:
                return self._fail("ClientHello too large or too slow")
            # wake up only once the kernel holds what is still missing
            self.conn.setsockopt(socket.SOL_SOCKET, socket.SO_RCVLOWAT, result.need)
            self.lowat = True
            return False
        self._stop_watching()
        if self.lowat:
            self.conn.setsockopt(socket.SOL_SOCKET, socket.SO_RCVLOWAT, 1)
        self.listener.forget(self)
        self.listener.chosen(self.conn, result, len(data))
        return True

    def _timed_out(self) -> None:
        self.timer = None
        self._fail("ClientHello timeout")

    def _stop_watching(self) -> None:
        if self.watching:
            self.watching = False
            self.listener.loop.remove_reader(self.fd)
        if self.timer is not None:
            self.timer.cancel()
            self.timer = None

    def _fail(self, reason: str) -> bool:
        self._stop_watching()
        self.conn.close()
        self.listener.refused(self, reason)
        return True

    def close(self) -> None:
        self._stop_watching()
        self.conn.close()
