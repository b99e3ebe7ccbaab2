"""One request and its response: route, mode gate, target, upstream connection, bodies both ways.

An ``Exchange`` is made by a client connection for each request head and driven by it (body
pieces, end of request, the client going away). It talks back to its client only through the
``ClientSide`` interface, so the HTTP/1 connection (plain or TLS) and, later, an HTTP/2 stream can
drive the same exchange. Its life is one state machine (``ExchangeState`` + ``TRANSITIONS``).

Per request: route (snapshot lookup) → service mode gate → target pick → upstream connection from
the target's pool (or a new one, within UPSTREAM_CONNECT_TIMEOUT) → head and body out → response
head, body and end back → the upstream connection returns to its pool; once finished, the exchange
is reported to the listener's observers (the access log) as an ``ExchangeRecord``.
"""

from __future__ import annotations

import asyncio
import time
from enum import IntEnum
from typing import TYPE_CHECKING, Final, Protocol, cast

from proxy import defaults
from proxy.http import headers as rules
from proxy.http import writer
from proxy.http.buffering import SpoolBuffer
from proxy.http.cookies import writer_affinity_cookie
from proxy.http.flow_control import CLIENT_FULL, CONNECTING, UPSTREAM_FULL
from proxy.http.pages import error_page
from proxy.http.parser import (
    Data,
    EndOfMessage,
    Headers,
    ParseError,
    RequestHead,
    ResponseEvent,
    ResponseHead,
    TunnelData,
)
from proxy.http.record import ExchangeRecord
from proxy.http.tls_rules import entry_answer
from proxy.http.upstream import UpstreamConnection
from proxy.lifecycle import IllegalTransition, ServiceMode, TargetState
from proxy.service_map import strip_port

if TYPE_CHECKING:
    from proxy.http.listener import Listener
    from proxy.metrics import RequestMetrics
    from proxy.service import Service
    from proxy.targets import Target

IDEMPOTENT: Final = frozenset({b"GET", b"HEAD", b"OPTIONS", b"TRACE", b"PUT", b"DELETE"})
EVENT_STREAM: Final = b"text/event-stream"


# ---------------------------------------------------------------------------------- the lifecycle
class ExchangeState(IntEnum):
    ROUTING = 0  # the head is in; routing, gate and target pick run now
    HELD = 1  # the service is paused: waiting for resume, stop or --max-pause
    BUFFERING = 2  # the request body is buffered before the head goes to the target
    WAITING = 3  # the request is going to the target (connecting, sending); no response head yet
    BUFFERING_RESPONSE = 4  # the response head is in; its body is buffered before the client gets it
    STREAMING = 5  # the response head went to the client; its body is flowing
    TUNNEL = 6  # 101 Switching Protocols: bytes both ways until either side closes
    ANSWERED = 7  # the whole response went out; the request body may still be arriving
    DONE = 8  # finished and reported


class ExchangeEvent(IntEnum):
    HOLD = 0
    BUFFER = 1  # buffer the request body
    SEND = 2  # the request head goes to the target
    BUFFER_RESPONSE = 3
    RESPONSE_HEAD = 4  # the response head goes to the client
    UPGRADE = 5
    ANSWER = 6  # the response is complete (the target's, or a page from the proxy)
    FINISH = 7  # over: the request is read (or the client is gone); report it


_S, _E = ExchangeState, ExchangeEvent

TRANSITIONS: dict[tuple[ExchangeState, ExchangeEvent], ExchangeState] = {
    (_S.ROUTING, _E.HOLD): _S.HELD,
    (_S.ROUTING, _E.BUFFER): _S.BUFFERING,
    (_S.ROUTING, _E.SEND): _S.WAITING,
    (_S.ROUTING, _E.ANSWER): _S.ANSWERED,  # 404, 503, a health check of a paused service
    (_S.HELD, _E.BUFFER): _S.BUFFERING,
    (_S.HELD, _E.SEND): _S.WAITING,
    (_S.HELD, _E.ANSWER): _S.ANSWERED,  # stopped meanwhile (503), --max-pause (504)
    (_S.HELD, _E.FINISH): _S.DONE,  # the client went away
    (_S.BUFFERING, _E.SEND): _S.WAITING,
    (_S.BUFFERING, _E.ANSWER): _S.ANSWERED,  # 413
    (_S.BUFFERING, _E.FINISH): _S.DONE,
    (_S.WAITING, _E.BUFFER_RESPONSE): _S.BUFFERING_RESPONSE,
    (_S.WAITING, _E.RESPONSE_HEAD): _S.STREAMING,
    (_S.WAITING, _E.UPGRADE): _S.TUNNEL,
    (_S.WAITING, _E.ANSWER): _S.ANSWERED,  # 502, 504
    (_S.WAITING, _E.FINISH): _S.DONE,
    (_S.BUFFERING_RESPONSE, _E.RESPONSE_HEAD): _S.STREAMING,  # the whole body is in
    (_S.BUFFERING_RESPONSE, _E.ANSWER): _S.ANSWERED,  # over --max-response-body (500), 502, 504
    (_S.BUFFERING_RESPONSE, _E.FINISH): _S.DONE,
    (_S.STREAMING, _E.ANSWER): _S.ANSWERED,
    (_S.STREAMING, _E.FINISH): _S.DONE,  # aborted mid-response, or the client went away
    (_S.TUNNEL, _E.FINISH): _S.DONE,
    (_S.ANSWERED, _E.FINISH): _S.DONE,
}


# Enum members as module constants: reading ``ExchangeState.X`` goes through the enum class each time,
# which costs more than the rest of a state check. The common path's moves are looked up inline in
# _MOVES, the same table indexed by state then event (an illegal move raises KeyError there).
_MOVES: Final[dict[ExchangeState, dict[ExchangeEvent, ExchangeState]]] = {state: {} for state in _S}
for (_state, _event), _next in TRANSITIONS.items():
    _MOVES[_state][_event] = _next

_SEND: Final = _E.SEND
_RESPONSE_HEAD: Final = _E.RESPONSE_HEAD
_ANSWER: Final = _E.ANSWER
_FINISH: Final = _E.FINISH
_ROUTING: Final = _S.ROUTING
_HELD: Final = _S.HELD
_BUFFERING: Final = _S.BUFFERING
_WAITING: Final = _S.WAITING
_STREAMING: Final = _S.STREAMING
_TUNNEL: Final = _S.TUNNEL
_ANSWERED: Final = _S.ANSWERED
_DONE: Final = _S.DONE
_RUNNING: Final = ServiceMode.RUNNING
_STOPPED: Final = ServiceMode.STOPPED
_DRAINING: Final = TargetState.DRAINING


def next_exchange_state(state: ExchangeState, event: ExchangeEvent) -> ExchangeState:
    try:
        return TRANSITIONS[(state, event)]
    except KeyError:
        raise IllegalTransition(f"exchange cannot go from {state.name} on {event.name}") from None


# ---------------------------------------------------------------------------------- the seams
class ClientSide(Protocol):
    """What an exchange needs from the client connection (HTTP/1 today, an HTTP/2 stream later)."""

    peer_ip: str
    peer_b: bytes
    client_json: str

    def respond(
        self, status: int, body: bytes, *, content_type: str, head_only: bool, location: str = ""
    ) -> None:
        """A whole response made by the proxy (an error page, or a redirect to ``location``, which
        ends the connection); the response is complete."""
        ...

    def send_continue(self) -> None: ...

    def send_interim(self, status: int, reason: bytes, headers: Headers) -> None: ...

    def send_head(self, status: int, reason: bytes, lines: list[bytes], *, length: int) -> None:
        """The response head (field lines, hop-by-hop removed). ``length``: its body's, or
        UNKNOWN_LENGTH. After a 101 the connection is a tunnel."""
        ...

    def send_body(self, data: bytes) -> None: ...

    def end(self) -> None:
        """The response is complete."""
        ...

    def end_with_trailers(self, trailers: Headers) -> None:
        """The response is complete, and these trailer fields (checked by ``rules.trailer_fields``)
        follow its body where the framing allows (chunked, HTTP/2); else they are dropped."""
        ...

    def abort(self) -> None:
        """The response cannot be completed: cut the connection."""
        ...

    def close(self) -> None:
        """End the connection after what was sent (a tunnel that ended, a drain)."""
        ...

    def cork(self) -> bool:
        """Collect what is sent until ``uncork``; False if already corked (the caller then must not uncork)."""
        ...

    def uncork(self) -> None: ...

    def pause_reading(self, reason: int) -> None: ...

    def resume_reading(self, reason: int) -> None: ...

    def unhold(self) -> None:
        """The request is no longer held: go on with what arrived behind its head."""
        ...


class Connecting:
    """A new upstream connection on its way, and what waits for it."""

    __slots__ = ("deadline", "pending", "pending_bytes", "response_deadline", "task")

    def __init__(
        self,
        *,
        task: asyncio.Future[tuple[asyncio.BaseTransport, UpstreamConnection]],
        pending: list[bytes],
        deadline: float,
        response_deadline: float,
    ) -> None:
        self.task = task
        self.pending = pending  # bytes for the upstream (the head first), written once connected
        self.pending_bytes = 0  # body bytes among them: past the high-water mark the client is paused
        self.deadline = deadline  # the connect timeout
        self.response_deadline = response_deadline  # --target-timeout, which applies once connected


# ---------------------------------------------------------------------------------- the exchange
class Exchange(ExchangeRecord):
    __slots__ = (
        "affinity",
        "blocked",
        "client",
        "connecting",
        "deadline",
        "fields",
        "listener",
        "prefix",
        "raw_path",
        "raw_query",
        "request_buffer",
        "request_complete",
        "response_buffer",
        "response_lines",
        "retried",
        "state",
        "upstream",
        "upstream_head",
    )

    def __init__(self, listener: Listener, client: ClientSide, head: RequestHead) -> None:
        # Positional (one is made per request, and a keyword call of a class builds a dict); every
        # field of the record and of the exchange is set here once, without a super().__init__ call.
        self.head = head
        self.method = head.method
        self.client_json = client.client_json
        self.port = listener.client_port
        self.scheme = listener.scheme
        self.started = time.time()
        self.path = self.query = self.host = self.request_id = self.request_id_json = ""
        self.remote_addr = self.user_agent = self.req_content_type = self.resp_content_type = ""
        self.service: Service | None = None
        self.target: Target | None = None
        self.status = 0
        self.response_head: ResponseHead | None = None
        self.resp_bytes = 0
        self.metered = False

        self.listener = listener
        self.client = client
        self.state = _ROUTING
        self.fields: rules.RequestFields | None = None
        self.raw_path = self.raw_query = self.upstream_head = b""
        self.prefix = ""  # the matched path prefix, when it was stripped
        self.affinity = False  # the response gets the writer-affinity cookie
        self.upstream: UpstreamConnection | None = None
        self.connecting: Connecting | None = None  # a new upstream connection on its way
        self.request_complete = False  # the whole request went upstream
        self.response_lines: list[bytes] = []  # a buffered response's head, until its end
        self.request_buffer: SpoolBuffer | None = None
        self.response_buffer: SpoolBuffer | None = None
        self.retried = False
        self.deadline = 0.0  # while in listener.awaiting: when timed_out is due (clock time)
        self.blocked = 0  # CLIENT_FULL / UPSTREAM_FULL: that side's write buffer is above its mark

    def _to(self, event: ExchangeEvent) -> None:
        self.state = next_exchange_state(self.state, event)

    # ------------------------------------------------------------------ from the client
    def start(self) -> None:
        """Route the request and send it on (or hold it, or answer it)."""
        head = self.head
        target_b = head.target
        q = target_b.find(b"?")
        if q >= 0:
            raw_path = target_b[:q]
            self.raw_query = target_b[q:]
            self.query = target_b[q + 1 :].decode("latin-1")
        else:
            raw_path = target_b
        if raw_path[:1] != b"/":
            raw_path = origin_path(raw_path)
        path = self.path = raw_path.decode("latin-1")

        self.fields = fields = rules.scan_request(head.headers)
        if fields.user_agent:
            self.user_agent = fields.user_agent.decode("latin-1")
        if fields.content_type:
            self.req_content_type = fields.content_type.decode("latin-1")
        self.host = host = fields.host.decode("latin-1")
        self.remote_addr = fields.xff.decode("latin-1") if fields.xff else self.client.peer_ip
        rid = rules.add_request_id(fields)
        if rid:
            self.request_id = rid
            self.request_id_json = '"' + rid + '"'
        else:
            self.request_id = fields.request_id.decode("latin-1")
        rules.add_request_start(fields, self.started)
        if head.upgrade:
            rules.add_upgrade(fields)

        routes = self.listener.routes()
        found = routes.lookup(host, path)
        if found is None:
            self._not_found(routes.host_owner(host))
            return
        service, prefix = found
        self.service = service
        if prefix != "/" and service.strip_prefix:
            self.raw_path = raw_path[len(prefix) :] or b"/"
            self.prefix = prefix
        else:
            self.raw_path = raw_path
        # kamal-proxy's order: in flight for the metrics, the client-IP header, then the TLS rules
        metrics = self.listener.metrics
        if metrics is not None:
            self._meter(metrics, service)
        if service.client_ip_header:
            self._client_ip(service.client_ip_header, fields)
        # (ACME challenges see the unstripped path)
        if (service.entry is not None or self.listener.is_tls) and self._answered_for_tls(service, raw_path):
            return
        if service.mode is not _RUNNING:
            self._gate(service)
            return
        self._admit(service)

    def _not_found(self, owner: Service | None) -> None:
        """No service for the request: 404, with the page of a service bound under its host if any."""
        pages = owner.error_pages if owner is not None else None
        body = pages.render(404) if pages is not None else None
        self._respond(404, body if body is not None else error_page(404))

    def _meter(self, metrics: RequestMetrics, service: Service) -> None:
        """In flight for the metrics, unless its (stripped) path is excluded (--exclude-metrics-path)."""
        excluded = service.excluded_metrics_paths
        if not excluded or self.raw_path.decode("latin-1") not in excluded:
            metrics.started(service.name)
            self.metered = True

    def _client_ip(self, header: bytes, fields: rules.RequestFields) -> None:
        """--client-ip-header: that header's value, when sent, replaces the client's X-Forwarded-For."""
        for name, value in self.head.headers:
            if name.lower() == header:
                if value:
                    fields.xff = value
                    self.remote_addr = value.decode("latin-1")
                return

    def request_body(self, data: bytes) -> None:
        if not data:
            return
        if self.request_buffer is not None:
            if not self.request_buffer.write(data):
                self.respond_error(413)  # the rest of the body is not read: the connection closes
            return
        if self.target is None or self.state is _ANSWERED:
            return  # answered already (error page); the body is read and dropped
        self._to_upstream(writer.chunk(data) if self.head.chunked else data)

    def request_end(self, trailers: Headers | None) -> None:
        """The whole request body is in; ``trailers``: the trailer fields that ended it, if any.

        They follow the last chunk of a chunked request (as Go's transport sends ``req.Trailer``);
        a buffered body goes with a Content-Length, so its trailer fields are dropped.
        """
        buffer = self.request_buffer
        if buffer is not None and self.target is not None and self.state is _BUFFERING:
            self.upstream_head = writer.close_head(self.upstream_head, buffer.size)
            self._send_head()
            if self.upstream is not None:  # else it goes once connected
                self._send_buffered_request()
            return  # the request is complete once the buffer went out
        if self.head.chunked and self.target is not None:
            if trailers is None:
                self._to_upstream(writer.LAST_CHUNK)
            else:
                self._to_upstream(writer.last_chunk(rules.trailer_fields(trailers)))
        self.request_complete = True

    def tunnel_in(self, data: bytes) -> None:
        if self.state is _TUNNEL:
            self._to_upstream(data)
        # bytes after an upgrade request that the target refused: the connection is closing anyway

    def client_eof(self) -> bool:
        """The client closed its sending side. True: a tunnel's other direction goes on."""
        if self.state is not _TUNNEL:
            return False
        upstream = self.upstream
        if upstream is not None and upstream.transport is not None and upstream.transport.can_write_eof():
            upstream.transport.write_eof()
        return True

    def client_lost(self) -> None:
        """The client connection is gone before the exchange finished."""
        if self.state is _HELD and self.service is not None:
            self.service.held.discard(self)
        self._drop_upstream()
        if self.state is not _TUNNEL:
            self.status = 499  # the client went away before its response was complete

    def client_write_paused(self) -> None:
        self.blocked |= CLIENT_FULL
        upstream = self.upstream
        if upstream is not None:
            upstream.pause_reading()

    def client_write_resumed(self) -> None:
        self.blocked &= ~CLIENT_FULL
        upstream = self.upstream
        if upstream is not None:
            upstream.resume_reading()
        if self.response_buffer is not None and self.state is _STREAMING:
            self._send_buffered_response()

    def finish(self) -> None:
        """Over: report it to the observers and let go of everything it held."""
        self.state = _MOVES[self.state][_FINISH]
        self.listener.awaiting.discard(self)
        target = self.target
        if target is not None:
            target.request_done(self)
        for observer in self.listener.observers:
            observer.exchange_finished(self)
        if self.request_buffer is not None or self.response_buffer is not None:
            self._drop_buffers()
        self.fields = None

    # ------------------------------------------------------------------ mode gate
    def _gate(self, service: Service) -> None:
        """A paused or stopped service: answer health checks, refuse (stopped) or hold (paused)."""
        method = self.head.method
        if (method == b"GET" or method == b"HEAD") and self.raw_path == service.health_path:
            self._respond(200, b"", content_type="")  # load balancers keep the host in rotation
            return
        if service.mode is _STOPPED:
            self.respond_error(503, message=service.stop_message)
            return
        self._to(ExchangeEvent.HOLD)
        service.held.add(self)
        self.deadline = self.listener.now() + service.pause_timeout
        self.listener.awaiting.add(self)

    def release(self) -> None:
        """The paused service runs again or stopped: go on with the held request."""
        service = self.service
        if self.state is not _HELD or service is None:
            return
        self.listener.awaiting.discard(self)
        if service.mode is _STOPPED:
            self.respond_error(503, message=service.stop_message)
        else:
            self._admit(service)
        self.client.unhold()  # the held request's body, and what was pipelined behind it

    # ------------------------------------------------------------------ to the upstream
    def _admit(self, service: Service) -> None:
        """Pick a target and send the request head (or start buffering the body)."""
        if service.plain:
            target = service.active.pick()
        else:
            target, self.affinity = service.choose(self.head, self.started)
        if target is None or target.state is _DRAINING:
            self.respond_error(503)
            return
        self.target = target
        target.inflight.add(self)
        fields = self.fields
        assert fields is not None
        trust = service.forward_headers
        listener = self.listener
        rules.add_forwarded(
            fields,
            peer=self.client.peer_b,
            scheme=listener.scheme_b,
            port=listener.port_b,
            trust_client=trust,
        )
        rules.add_kamal_target(fields, target.header_value, trust_client=trust)
        head = self.head
        if service.buffer_requests and not head.upgrade:
            self._to(ExchangeEvent.BUFFER)
            if head.expect_continue:
                self.client.send_continue()
            self.request_buffer = SpoolBuffer(memory=service.buffer_memory, limit=service.max_request_body)
            # the head is finished once the body's size is known
            lines = rules.without(fields.lines, rules.BUFFERED_BODY_DROPS)
            self.upstream_head = writer.request_head_open(head.method, self.raw_path, self.raw_query, lines)
            return
        if head.chunked:
            fields.lines.append(b"Transfer-Encoding: chunked")
        self.upstream_head = writer.request_head(head.method, self.raw_path, self.raw_query, fields.lines)
        self._send_head()

    def _send_head(self) -> None:
        target = self.target
        assert target is not None
        self.state = _MOVES[self.state][_SEND]
        listener = self.listener
        timeout = self.service.response_timeout if self.service is not None else defaults.TARGET_TIMEOUT
        self.deadline = listener.now() + timeout
        listener.awaiting.add(self)
        conn = target.take_idle()
        if conn is not None:
            self.upstream = conn
            conn.bind(self, method=self.head.method, upgrade=self.head.upgrade)
            conn.write(self.upstream_head)
        else:
            self._connect(target)

    def _use(self, conn: UpstreamConnection) -> None:
        self.upstream = conn
        conn.bind(self, method=self.head.method, upgrade=self.head.upgrade)

    def _connect(self, target: Target) -> None:
        """Open a new connection to ``target``; the request head (and body) wait in ``pending``."""
        listener = self.listener

        def factory() -> UpstreamConnection:
            return UpstreamConnection(target=target, parser=listener.response_parser())

        def connected(task: asyncio.Future[tuple[asyncio.BaseTransport, UpstreamConnection]]) -> None:
            self._connected(task, connecting)

        task = asyncio.ensure_future(
            listener.connect(factory, target.connect_host, target.port), loop=listener.loop
        )
        connecting = self.connecting = Connecting(
            task=task,
            pending=[self.upstream_head],
            deadline=listener.now() + listener.connect_timeout,
            response_deadline=self.deadline,
        )
        if connecting.deadline < self.deadline:
            self.deadline = connecting.deadline
        task.add_done_callback(connected)

    def _connected(
        self, task: asyncio.Future[tuple[asyncio.BaseTransport, UpstreamConnection]], connecting: Connecting
    ) -> None:
        if self.connecting is not connecting:  # that exchange is over, or timed out
            if not task.cancelled() and task.exception() is None:
                task.result()[1].release()  # still a good connection: keep it for the next request
            return
        self.connecting = None
        exc = None if task.cancelled() else task.exception()
        target = self.target
        if exc is not None or task.cancelled():
            if target is not None:
                target.forget_address()
            self._count_connect_error()
            self._upstream_error(str(exc) if exc else "connect cancelled")
            return
        transport, conn = task.result()
        if target is not None:
            target.remember_address(transport.get_extra_info("peername"))
        self.deadline = connecting.response_deadline  # the connect deadline no longer applies
        self._use(conn)
        conn.write_lines(connecting.pending)
        self.client.resume_reading(CONNECTING)
        if self.request_buffer is not None:
            self._send_buffered_request()

    def _to_upstream(self, data: bytes) -> None:
        upstream = self.upstream
        if upstream is not None:
            upstream.write(data)
            return
        connecting = self.connecting
        if connecting is not None:
            connecting.pending.append(data)
            connecting.pending_bytes += len(data)
            if connecting.pending_bytes > defaults.WRITE_HIGH_WATER:
                self.client.pause_reading(CONNECTING)

    def upstream_pause_writing(self) -> None:
        self.blocked |= UPSTREAM_FULL
        self.client.pause_reading(UPSTREAM_FULL)

    def upstream_resume_writing(self) -> None:
        self.blocked &= ~UPSTREAM_FULL
        self.client.resume_reading(UPSTREAM_FULL)
        if self.request_buffer is not None and self.upstream is not None:
            self._send_buffered_request()

    def _send_buffered_request(self) -> None:
        """The buffered body goes to the target one slice at a time, while its socket takes it
        (``upstream_resume_writing`` goes on), so a spilled body is never read back whole."""
        buffer = self.request_buffer
        upstream = self.upstream
        assert buffer is not None
        while upstream is not None and upstream is self.upstream and not self.blocked & UPSTREAM_FULL:
            piece = buffer.read()
            if not piece:
                self.request_buffer = None
                buffer.close()
                self.request_complete = True
                return
            upstream.write(piece)

    # ------------------------------------------------------------------ from the upstream
    def upstream_events(self, events: list[ResponseEvent]) -> None:
        # Everything one read from the target produces goes to the client in one write.
        client = self.client
        if not client.cork():
            self._forward(events)
            return
        try:
            self._forward(events)
        finally:
            client.uncork()

    def _forward(self, events: list[ResponseEvent]) -> None:
        for event in events:
            kind = type(event)
            if kind is Data:
                self._response_body(cast(Data, event).data)  # (compiled: a native read)
            elif kind is ResponseHead:
                self._response_head(event)  # type: ignore[arg-type]
            elif kind is EndOfMessage:
                if self.response_head is None:
                    continue  # the end of an interim (1xx) response: the final one follows
                self._response_end(cast(EndOfMessage, event).trailers)  # (compiled: a native read)
                return  # one response per request; the next exchange may already own the connection
            elif kind is TunnelData:
                self.client.send_body(cast(TunnelData, event).data)
            elif kind is ParseError:
                self._upstream_error(f"malformed response: {event.message}")  # type: ignore[union-attr]
                return
            if self.upstream is None and self.state is not _TUNNEL:
                return

    def upstream_lost(self, conn: UpstreamConnection, events: list[ResponseEvent]) -> None:
        if not self._uses(conn):
            return
        if self.state is _TUNNEL:
            self.upstream = None
            self.client.close()
            return
        if events:
            self.upstream_events(events)
            if self.upstream is None:
                return
        self.upstream = None
        if self._retryable(conn):
            # A pooled connection the target had closed: safe to try once on a fresh one.
            assert self.target is not None
            self.retried = True
            self._connect(self.target)
            return
        self._upstream_error("connection closed by target")

    def _uses(self, conn: UpstreamConnection) -> bool:
        # A call, not ``conn is not self.upstream`` inline: that would narrow ``self.upstream`` for
        # the type checker across the calls below, which can clear it (compiled by mypyc, the
        # narrowed read then raises TypeError on None).
        return conn is self.upstream

    def _retryable(self, conn: UpstreamConnection) -> bool:
        head = self.head
        return (
            self.state is _WAITING
            and conn.reused
            and not self.retried
            and head.method in IDEMPOTENT
            and head.content_length == 0
            and not head.chunked
            and self.target is not None
        )

    def _response_head(self, head: ResponseHead) -> None:
        status = head.status
        if status < 200 and status != 101:
            self.client.send_interim(status, head.reason, head.headers)
            return
        self.listener.awaiting.discard(self)
        self.status = status
        self.response_head = head
        if status == 101:
            self._to(ExchangeEvent.UPGRADE)
            self.client.send_head(101, head.reason, rules.all_lines(head.headers), length=0)
            return
        lines, content_type = rules.scan_response(head.headers)
        if content_type:
            self.resp_content_type = content_type.decode("latin-1")
        service = self.service
        if service is not None and service.rewrites_response:
            lines = self._rewrite_response(lines, service)
        if service is not None and service.buffer_responses and not content_type.startswith(EVENT_STREAM):
            self._to(ExchangeEvent.BUFFER_RESPONSE)
            self.response_buffer = SpoolBuffer(memory=service.buffer_memory, limit=service.max_response_body)
            self.response_lines = lines  # held until the whole body is here
            return
        self.state = _MOVES[self.state][_RESPONSE_HEAD]
        self.client.send_head(status, head.reason, lines, length=head.content_length)

    def _rewrite_response(self, lines: list[bytes], service: Service) -> list[bytes]:
        """--scope-cookie-paths, and writer affinity for a service with readers."""
        if service.scope_cookie_paths and self.prefix:
            host = self.host
            lines = rules.scope_cookie_paths(lines, prefix=self.prefix, host=strip_port(host))
        if service.affinity_enabled:
            cookie = (
                writer_affinity_cookie(now=time.time(), timeout=service.affinity_timeout)
                if self.affinity
                else None
            )
            lines = rules.writer_affinity(lines, cookie)
        return lines

    def _response_body(self, data: bytes) -> None:
        if not data:
            return
        buffer = self.response_buffer
        if buffer is not None:
            if not buffer.write(data):
                self._upstream_failed_response(500)
            return
        self.resp_bytes += len(data)
        self.client.send_body(data)

    def _response_end(self, trailers: Headers | None) -> None:
        buffer = self.response_buffer
        client = self.client
        upstream = self.upstream
        self.upstream = None
        if upstream is not None:
            head = self.response_head
            if self.request_complete and head is not None and head.keep_alive:
                upstream.release()
            else:
                upstream.close()
        if buffer is not None:
            head = self.response_head
            assert head is not None
            # (sent with its length: the trailer fields, if any, are dropped with their announcement)
            lines = rules.without(self.response_lines, rules.BUFFERED_BODY_DROPS)
            lines.append(b"Content-Length: %d" % buffer.size)
            self.response_lines = []
            # self.response_buffer stays until the body went out
            self._to(ExchangeEvent.RESPONSE_HEAD)
            client.send_head(head.status, head.reason, lines, length=buffer.size)
            self._send_buffered_response()
            return
        self.state = _MOVES[self.state][_ANSWER]
        if trailers is None:
            client.end()
        else:
            client.end_with_trailers(rules.trailer_fields(trailers))

    def _send_buffered_response(self) -> None:
        """The buffered body goes to the client one slice at a time, while it takes it
        (``client_write_resumed`` goes on); then the response ends."""
        buffer = self.response_buffer
        client = self.client
        assert buffer is not None
        client.uncork()  # the pace is the client's write buffer, which corking would hide
        while self.state is _STREAMING and not self.blocked & CLIENT_FULL:
            piece = buffer.read()
            if not piece:
                self.response_buffer = None
                buffer.close()
                self.state = _MOVES[self.state][_ANSWER]
                client.end()
                return
            self.resp_bytes += len(piece)
            client.send_body(piece)

    # ------------------------------------------------------------------ errors and timeouts
    def _upstream_error(self, reason: str) -> None:
        if self.service is not None:
            self.listener.log.error(
                "Error while proxying",
                target=self.target.address if self.target else "",
                path=self.path,
                error=reason,
            )
        self._upstream_failed_response(502)

    def _upstream_failed_response(self, status: int) -> None:
        if self.state is _ANSWERED or self.state is _DONE:
            return
        self._drop_upstream()
        if self.state is _STREAMING or self.state is _TUNNEL:
            self.client.abort()
            return
        self._drop_buffers()
        self.respond_error(status)

    def _drop_upstream(self) -> None:
        upstream = self.upstream
        self.upstream = None
        connecting = self.connecting
        if connecting is not None:
            self.connecting = None
            connecting.task.cancel()
        if upstream is not None:
            upstream.close()

    def timed_out(self, now: float) -> None:
        """Past --max-pause (held), the connect timeout, or --target-timeout."""
        self.listener.awaiting.discard(self)
        state = self.state
        if state is _HELD:
            if self.service is not None:
                self.service.held.discard(self)
            self.listener.log.warn("Rejecting request due to expired pause", path=self.path)
            self.respond_error(504)
            self.client.unhold()
            return
        if state is not _WAITING:
            return
        if self.connecting is not None and self.connecting.deadline <= now and self.target is not None:
            self.target.forget_address()  # the next connect looks the name up again
            self._count_connect_error()
        self._upstream_failed_response(504)

    def _count_connect_error(self) -> None:
        metrics = self.listener.metrics
        if metrics is not None and self.service is not None:
            metrics.connect_failed(self.service.name)

    @property
    def is_tunnel(self) -> bool:
        return self.state is _TUNNEL

    def cancel_for_drain(self) -> None:
        if self.state is _TUNNEL:
            self.client.close()
            self._drop_upstream()
            return
        self.listener.log.info("Request cancelled due to draining", path=self.path)
        self._upstream_failed_response(504)

    def reject(self, status: int) -> None:
        """The client's bytes are bad (a malformed body): answer ``status`` if nothing went out yet."""
        if self.state is _HELD and self.service is not None:
            self.service.held.discard(self)
        self._upstream_failed_response(status)

    def _answered_for_tls(self, service: Service, raw_path: bytes) -> bool:
        """ACME HTTP-01 answers, 503 for https to a service without TLS, redirects (``tls_rules``).

        Called only when TLS matters: on the TLS listener, or for a service with TLS settings.
        """
        listener = self.listener
        answer = entry_answer(
            service.entry,
            is_tls=listener.is_tls,
            method=self.method,
            host=self.host,
            path=raw_path,
            query=self.raw_query,
            tokens=listener.challenge_tokens,
        )
        if answer is None:
            return False
        if answer.error_page:
            self.respond_error(answer.status)
        else:
            self._respond(
                answer.status, answer.body, content_type=answer.content_type, location=answer.location
            )
        return True

    def respond_error(self, status: int, *, message: str = "") -> None:
        """Answer with a proxy error page: the service's own (--error-pages) if it has one for
        ``status``, else the built-in one."""
        service = self.service
        pages = service.error_pages if service is not None else None
        body = pages.render(status, message=message) if pages is not None else None
        self._respond(status, body if body is not None else error_page(status, message=message))

    def _respond(
        self, status: int, body: bytes, *, content_type: str = "text/html; charset=utf-8", location: str = ""
    ) -> None:
        """Answer from the proxy itself: the response is complete."""
        self.listener.awaiting.discard(self)
        self._drop_buffers()
        self._to(ExchangeEvent.ANSWER)
        self.status = status
        is_head = self.head.method == b"HEAD"
        self.resp_bytes = 0 if is_head else len(body)
        self.resp_content_type = content_type
        target = self.target
        if target is not None:
            target.request_done(self)  # still named in the access log: it was picked
        self.client.respond(status, body, content_type=content_type, head_only=is_head, location=location)

    def _drop_buffers(self) -> None:
        if self.request_buffer is not None:
            self.request_buffer.close()
            self.request_buffer = None
        if self.response_buffer is not None:
            self.response_buffer.close()
            self.response_buffer = None


def origin_path(raw: bytes) -> bytes:
    """The path of an absolute-form request-target (`http://host/path`); `*` and others as `/`."""
    scheme_end = raw.find(b"://")
    if scheme_end < 0:
        return b"/"
    slash = raw.find(b"/", scheme_end + 3)
    return raw[slash:] if slash >= 0 else b"/"
