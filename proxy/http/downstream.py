"""The client side: one asyncio protocol per client connection, and the request/response exchange.

A connection handles one request at a time. Pipelined requests are parsed as they arrive but
queued until the current response is complete; past PIPELINE_MAX_BUFFERED queued bytes the
connection stops reading. Bodies stream both ways: each side stops reading while the other side's
write buffer is above its high-water mark (asyncio's pause_writing / resume_writing).

Per request: route (snapshot lookup) → service mode gate → target pick → upstream connection from
the target's pool (or a new one) → head and body out → response head, body and end back → the
upstream connection returns to its pool, one access-log line is written.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Mapping
from typing import cast

from proxy import defaults
from proxy.access_log import AccessLog
from proxy.http.buffering import SpoolBuffer
from proxy.http.headers import (
    COLON,
    CRLF,
    HOP_BY_HOP,
    LAST_CHUNK,
    chunk,
    connection_tokens,
    new_request_id,
)
from proxy.http.pages import error_page, response_bytes
from proxy.http.parser import (
    UNKNOWN_LENGTH,
    Data,
    EndOfMessage,
    ParseError,
    RequestEvent,
    RequestHead,
    RequestParser,
    ResponseEvent,
    ResponseHead,
    ResponseParser,
    TunnelData,
)
from proxy.http.tls_rules import entry_answer
from proxy.http.upstream import UpstreamConnection
from proxy.lifecycle import ServiceMode, TargetState
from proxy.log import JsonLog, quote
from proxy.service import Service
from proxy.service_map import ServiceMap
from proxy.targets import Target

# Reasons the client side is not being read (a bit each)
PAUSE_UPSTREAM = 1  # the upstream's write buffer is full
PAUSE_PIPELINE = 2  # too many pipelined bytes queued
PAUSE_CONNECTING = 4  # body bytes waiting for the upstream connection are above the mark

CONTENT_LENGTH = frozenset({b"content-length"})
IDEMPOTENT = frozenset({b"GET", b"HEAD", b"OPTIONS", b"TRACE", b"PUT", b"DELETE"})
EVENT_STREAM = b"text/event-stream"


class ProxyContext:
    """What every client connection of one listener shares. Read on the hot path, never awaited."""

    def __init__(
        self,
        *,
        loop: asyncio.AbstractEventLoop,
        log: JsonLog,
        access_log: AccessLog,
        routes: Callable[[], ServiceMap[Service]],
        request_parser: Callable[[], RequestParser],
        response_parser: Callable[[], ResponseParser],
        port: int,
        scheme: str,
        read_header_timeout: float = defaults.READ_HEADER_TIMEOUT,
        idle_timeout: float = defaults.IDLE_TIMEOUT,
        challenge_tokens: Mapping[str, str] | None = None,
    ) -> None:
        self.loop = loop
        self.log = log
        self.access_log = access_log
        self.routes = routes
        self.request_parser = request_parser
        self.response_parser = response_parser
        self._port = port
        self.scheme = scheme
        self.scheme_b = scheme.encode()
        self.is_tls = scheme == "https"
        self.challenge_tokens: Mapping[str, str] = challenge_tokens if challenge_tokens is not None else {}
        self.port_b = b"%d" % port
        self.read_header_timeout = read_header_timeout
        self.idle_timeout = idle_timeout
        self.connections: set[ClientConnection] = set()
        self.awaiting: set[ClientConnection] = set()  # requests waiting for response headers
        self.closing = False

    @property
    def port(self) -> int:
        """The listener's port as configured (as clients see it), for logs and X-Forwarded-Port."""
        return self._port

    @port.setter
    def port(self, port: int) -> None:
        self._port = port
        self.port_b = b"%d" % port

    def sweep_responses(self) -> None:
        """Answer 504 to requests whose target is past --target-timeout (called by the daemon)."""
        now = self.loop.time()
        for conn in [c for c in self.awaiting if c.response_deadline <= now]:
            conn.target_timed_out()

    def sweep_idle(self) -> None:
        """Close connections past their header-read or idle deadline (called by the daemon)."""
        now = self.loop.time()
        for conn in [c for c in self.connections if 0 < c.deadline <= now]:
            conn.idle_timed_out()


class ClientConnection(asyncio.Protocol):
    __slots__ = (
        "busy",
        "chunk_out",
        "corked",
        "ctx",
        "deadline",
        "head",
        "held",
        "host",
        "keep_alive",
        "loop",
        "method",
        "parser",
        "path",
        "paused",
        "peer_b",
        "peer_ip",
        "peer_json",
        "peer_port",
        "pending",
        "pending_bytes",
        "query",
        "queue",
        "queued_bytes",
        "receiving",
        "remote_addr",
        "req_content_type",
        "request_buffer",
        "request_id",
        "request_id_json",
        "request_sent",
        "resp_bytes",
        "resp_content_type",
        "response_buffer",
        "response_deadline",
        "response_head",
        "response_lines",
        "response_started",
        "retried",
        "service",
        "started",
        "status",
        "target",
        "transport",
        "tunnel",
        "upstream",
        "upstream_head",
        "user_agent",
        "xfport",
    )

    def __init__(self, ctx: ProxyContext) -> None:
        self.ctx = ctx
        self.loop = ctx.loop
        self.parser = ctx.request_parser()
        self.transport: asyncio.Transport | None = None
        self.peer_ip = ""
        self.peer_b = b""
        self.peer_json = '"client_addr":"","client_port":"0"'
        self.peer_port = 0
        self.queue: list[RequestEvent] = []
        self.queued_bytes = 0
        self.busy = False  # an exchange is in progress
        self.receiving = False  # the current request's body is still arriving
        self.keep_alive = True
        self.paused = 0
        self.deadline = 0.0  # header-read or idle deadline (loop time), 0 = none
        self.response_deadline = 0.0
        self.corked: list[bytes] | None = None  # client-bound bytes collected while handling one read
        self._reset_exchange()

    def _reset_exchange(self) -> None:
        self.head: RequestHead | None = None
        self.service: Service | None = None
        self.target: Target | None = None
        self.upstream: UpstreamConnection | None = None
        self.upstream_head = b""
        self.pending: list[bytes] | None = None  # bytes for the upstream while it connects
        self.pending_bytes = 0
        self.request_sent = False  # the whole request went upstream
        self.response_started = False  # the response head went to the client
        self.response_head: ResponseHead | None = None
        self.response_lines: list[bytes] = []  # a buffered response's head, until its end
        self.request_buffer: SpoolBuffer | None = None
        self.response_buffer: SpoolBuffer | None = None
        self.chunk_out = False
        self.held: tuple[list[bytes], bytes, bytes, bytes, bytes, bytes, bytes, bytes] | None = None
        self.tunnel = False
        self.retried = False
        self.status = 0
        self.resp_bytes = 0
        self.method = b""
        self.path = ""
        self.query = ""
        self.host = ""
        self.request_id = ""
        self.request_id_json = ""  # set when the proxy made the ID: no escaping needed
        self.remote_addr = ""
        self.user_agent = ""
        self.req_content_type = ""
        self.resp_content_type = ""
        self.xfport = b""
        self.started = 0.0

    # ------------------------------------------------------------------ asyncio callbacks
    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = tcp = cast(asyncio.Transport, transport)  # uvloop's are not subclasses
        tcp.set_write_buffer_limits(high=defaults.WRITE_HIGH_WATER, low=defaults.WRITE_LOW_WATER)
        peer = transport.get_extra_info("peername")
        if peer:
            self.peer_ip, self.peer_port = peer[0], peer[1]
            self.peer_b = self.peer_ip.encode()
            self.peer_json = f'"client_addr":{quote(self.peer_ip)},"client_port":"{self.peer_port}"'
        self.ctx.connections.add(self)
        self.deadline = self.loop.time() + self.ctx.read_header_timeout

    def data_received(self, data: bytes) -> None:
        if not self.busy and not self.queue:
            self.deadline = self.loop.time() + self.ctx.read_header_timeout
        events = self.parser.feed(data)
        if self.queue or self.held is not None:
            self._enqueue(events, 0)
        else:
            self._dispatch(events)

    def eof_received(self) -> bool:
        if self.tunnel and self.upstream is not None and self.upstream.transport is not None:
            if self.upstream.transport.can_write_eof():
                self.upstream.transport.write_eof()
            return True  # half-close: the tunnel's other direction may still flow
        # As Go's server: a client that closes while its request is in flight has cancelled it
        # (logged 499); connection_lost follows and cleans up.
        events = self.parser.feed_eof()
        if events and not self.busy and not self.queue:
            self._dispatch(events)
        return False

    def connection_lost(self, exc: Exception | None) -> None:
        ctx = self.ctx
        ctx.connections.discard(self)
        ctx.awaiting.discard(self)
        self.queue = []
        if self.held is not None and self.service is not None:
            self.service.held.discard(self)
            self.held = None
        if self.busy:
            upstream = self.upstream
            self.upstream = None
            if upstream is not None:
                upstream.close()
            if not self.tunnel:
                self.status = 499  # the client went away before its response was complete
            self._finish_exchange()
        self._drop_buffers()
        self.transport = None

    def pause_writing(self) -> None:
        upstream = self.upstream
        if upstream is not None:
            upstream.pause_reading()

    def resume_writing(self) -> None:
        upstream = self.upstream
        if upstream is not None:
            upstream.resume_reading()

    # ------------------------------------------------------------------ request events
    def _dispatch(self, events: list[RequestEvent]) -> None:
        i = 0
        n = len(events)
        while i < n:
            event = events[i]
            kind = type(event)
            if kind is Data:
                self._request_body(event.data)  # type: ignore[union-attr]
            elif kind is EndOfMessage:
                self._request_end()
            elif kind is RequestHead:
                if self.busy:  # the next pipelined request: wait for this response
                    self._enqueue(events, i)
                    return
                self._request_head(event)  # type: ignore[arg-type]
                if self.held is not None:  # its body and what follows wait for the resume
                    self._enqueue(events, i + 1)
                    return
            elif kind is TunnelData:
                self._tunnel_in(event.data)  # type: ignore[union-attr]
            elif kind is ParseError:
                if self.busy and not self.receiving:
                    self._enqueue(events, i)
                    return
                self._malformed(event)  # type: ignore[arg-type]
                return
            if self.transport is None:
                return
            i += 1

    def _enqueue(self, events: list[RequestEvent], start: int) -> None:
        queue = self.queue
        for event in events[start:] if start else events:
            queue.append(event)
            if type(event) is Data or type(event) is TunnelData:
                self.queued_bytes += len(event.data)
        if self.queued_bytes > defaults.PIPELINE_MAX_BUFFERED:
            self._pause(PAUSE_PIPELINE)

    def _drain_queue(self) -> None:
        queue = self.queue
        self.queue = []
        self.queued_bytes = 0
        self._resume(PAUSE_PIPELINE)
        if queue:
            self._dispatch(queue)

    def _request_head(self, head: RequestHead) -> None:
        ctx = self.ctx
        self.busy = True
        self.receiving = True
        self.deadline = 0.0
        self.started = time.time()
        self.head = head
        self.method = head.method
        self.keep_alive = head.keep_alive and not ctx.closing

        target_b = head.target
        q = target_b.find(b"?")
        if q >= 0:
            raw_path = target_b[:q]
            raw_query = target_b[q:]
            self.query = target_b[q + 1 :].decode("latin-1")
        else:
            raw_path = target_b
            raw_query = b""
        if raw_path[:1] != b"/":
            raw_path = _origin_path(raw_path)
        path = self.path = raw_path.decode("latin-1")

        # One pass over the headers: keep what goes upstream (as field lines without their CRLF),
        # note what routing and logging need.
        kept: list[bytes] = []
        append = kept.append
        host = b""
        xff = xfh = xfp = kamal_target = b""
        request_id = b""
        has_request_start = False
        drop: set[bytes] | None = None
        for name, value in head.headers:
            lname = name.lower()
            if lname in HOP_BY_HOP:
                if lname == b"connection":
                    tokens = connection_tokens(value)
                    if tokens:
                        drop = tokens if drop is None else drop | tokens
                continue
            if lname[:2] == b"x-":
                if lname == b"x-forwarded-for":
                    xff = value if not xff else xff + b", " + value
                    continue
                if lname == b"x-forwarded-host":
                    xfh = value
                    continue
                if lname == b"x-forwarded-proto":
                    xfp = value
                    continue
                if lname == b"x-forwarded-port":
                    self.xfport = value
                    continue
                if lname == b"x-kamal-target":
                    kamal_target = value
                    continue
                if lname == b"x-request-id":
                    request_id = value
                elif lname == b"x-request-start":
                    has_request_start = True
            elif lname == b"host":
                host = value
            elif lname == b"user-agent":
                self.user_agent = value.decode("latin-1")
            elif lname == b"content-type":
                self.req_content_type = value.decode("latin-1")
            append(name + COLON + value)
        if drop:
            kept = _without(kept, drop)
            append = kept.append

        self.host = host_s = host.decode("latin-1")
        self.remote_addr = xff.decode("latin-1") if xff else self.peer_ip

        if request_id:
            self.request_id = request_id.decode("latin-1")
        else:
            self.request_id = rid = new_request_id()
            self.request_id_json = '"' + rid + '"'
            append(b"X-Request-Id: " + rid.encode())
        if not has_request_start:
            append(b"X-Request-Start: t=%d" % int(self.started * 1000))
        if head.upgrade:
            append(b"Connection: Upgrade\r\nUpgrade: " + _header(head, b"upgrade"))

        found = ctx.routes().lookup(host_s, path)
        if found is None:
            self._respond_error(404)
            return
        service, prefix = found
        self.service = service
        if self._answered_for_tls(service, host_s, raw_path, raw_query):
            return
        if prefix != "/" and service.strip_prefix:
            raw_path = raw_path[len(prefix) :] or b"/"
        if service.mode is not ServiceMode.RUNNING:
            self._gate(service, (kept, raw_path, raw_query, host, xff, xfh, xfp, kamal_target))
            return
        self._admit(service, kept, raw_path, raw_query, host, xff, xfh, xfp, kamal_target)

    def _gate(
        self,
        service: Service,
        forwarding: tuple[list[bytes], bytes, bytes, bytes, bytes, bytes, bytes, bytes],
    ) -> None:
        """A paused or stopped service: answer health checks, refuse (stopped) or hold (paused)."""
        head = self.head
        assert head is not None
        if (head.method == b"GET" or head.method == b"HEAD") and forwarding[1] == service.health_path:
            self._respond(200, b"", content_type="")  # load balancers keep the host in rotation
            return
        if service.mode is ServiceMode.STOPPED:
            self._respond_error(503, message=service.stop_message)
            return
        self.held = forwarding
        service.held.add(self)
        self.response_deadline = self.loop.time() + service.pause_timeout
        self.ctx.awaiting.add(self)

    def release(self) -> None:
        """The paused service runs again or stopped: go on with the held request."""
        forwarding = self.held
        self.held = None
        service = self.service
        if forwarding is None or service is None or self.transport is None:
            return
        self.ctx.awaiting.discard(self)
        if service.mode is ServiceMode.STOPPED:
            self._respond_error(503, message=service.stop_message)
        else:
            self._admit(service, *forwarding)
        if self.queue and self.transport is not None:
            self._drain_queue()  # the held request's body, and what was pipelined behind it

    def _admit(
        self,
        service: Service,
        kept: list[bytes],
        raw_path: bytes,
        raw_query: bytes,
        host: bytes,
        xff: bytes,
        xfh: bytes,
        xfp: bytes,
        kamal_target: bytes,
    ) -> None:
        """Pick a target and send the request head (or start buffering the body)."""
        head = self.head
        assert head is not None
        ctx = self.ctx
        target = service.active.pick()
        if target is None or target.state is TargetState.DRAINING:
            self._respond_error(503)
            return
        self.target = target
        target.inflight.add(self)

        # Headers the proxy adds.
        append = kept.append
        peer = self.peer_b
        if service.forward_headers:
            append(b"X-Forwarded-For: " + (xff + b", " + peer if xff else peer))
            append(b"X-Forwarded-Host: " + (xfh or host))
            append(b"X-Forwarded-Proto: " + (xfp or ctx.scheme_b))
            append(b"X-Forwarded-Port: " + (self.xfport or ctx.port_b))
            append(
                b"X-Kamal-Target: "
                + (kamal_target + b", " + target.header_value if kamal_target else target.header_value)
            )
        else:
            append(b"X-Forwarded-For: " + peer)
            append(b"X-Forwarded-Host: " + host)
            append(b"X-Forwarded-Proto: " + ctx.scheme_b)
            append(b"X-Forwarded-Port: " + ctx.port_b)
            append(b"X-Kamal-Target: " + target.header_value)

        if service.buffer_requests and not head.upgrade:
            if head.expect_continue:
                self._write(b"HTTP/1.1 100 Continue\r\n\r\n")
            self.request_buffer = SpoolBuffer(memory=service.buffer_memory, limit=service.max_request_body)
            # the head is finished once the body's size is known
            kept = _without(kept, CONTENT_LENGTH)
            kept.append(b"")  # the Content-Length line and the blank line follow at the end
            self.upstream_head = b"%b %b%b HTTP/1.1\r\n%b" % (
                head.method,
                raw_path,
                raw_query,
                CRLF.join(kept),
            )
            return
        if head.chunked:
            append(b"Transfer-Encoding: chunked")
        self.upstream_head = b"%b %b%b HTTP/1.1\r\n%b\r\n\r\n" % (
            head.method,
            raw_path,
            raw_query,
            CRLF.join(kept),
        )
        self._send_head()

    def _request_body(self, data: bytes) -> None:
        if not data:
            return
        if self.request_buffer is not None:
            if not self.request_buffer.write(data):
                self.receiving = False  # stop here: the rest of the body is not read
                self.keep_alive = False
                self._respond_error(413)
            return
        if self.target is None:
            return  # answered already (error page); the body is read and dropped
        assert self.head is not None
        self._to_upstream(chunk(data) if self.head.chunked else data)

    def _request_end(self) -> None:
        self.receiving = False
        head = self.head
        if head is None:
            return
        buffer = self.request_buffer
        if buffer is not None and self.target is not None and self.status == 0:
            self.upstream_head += b"Content-Length: %d\r\n\r\n" % buffer.size
            self._send_head()
            for piece in buffer.chunks():
                self._to_upstream(piece)
        elif head.chunked and self.target is not None:
            self._to_upstream(LAST_CHUNK)
        self.request_sent = True
        if self.status and not self.busy_with_upstream():
            self._exchange_done()

    def busy_with_upstream(self) -> bool:
        return self.upstream is not None or self.pending is not None

    def _tunnel_in(self, data: bytes) -> None:
        if self.tunnel:
            self._to_upstream(data)
        # bytes after an upgrade request that the target refused: the connection is closing anyway

    def _malformed(self, error: ParseError) -> None:
        self.ctx.log.info("Malformed request", client_addr=self.peer_ip, error=error.message)
        self.keep_alive = False
        self.receiving = False
        if self.busy and self.response_started:
            self._abort()
            return
        if self.busy:
            self._respond_error(error.status)
            return
        self._write(response_bytes(error.status, body=error_page(error.status), keep_alive=False))
        self._close()

    # ------------------------------------------------------------------ to the upstream
    def _send_head(self) -> None:
        target = self.target
        assert target is not None and self.head is not None
        timeout = self.service.response_timeout if self.service is not None else defaults.TARGET_TIMEOUT
        self.response_deadline = self.loop.time() + timeout
        self.ctx.awaiting.add(self)
        conn = target.take_idle()
        if conn is not None:
            self._use(conn)
            conn.write(self.upstream_head)
        else:
            self.pending = [self.upstream_head]
            self.pending_bytes = 0
            self._connect(target, self.pending)

    def _use(self, conn: UpstreamConnection) -> None:
        assert self.head is not None
        self.upstream = conn
        conn.bind(self, method=self.head.method, upgrade=self.head.upgrade)

    def _connect(self, target: Target, pending: list[bytes]) -> None:
        loop = self.loop
        ctx = self.ctx

        def factory() -> UpstreamConnection:
            return UpstreamConnection(target=target, parser=ctx.response_parser())

        def connected(task: asyncio.Task[tuple[asyncio.Transport, UpstreamConnection]]) -> None:
            self._connected(task, pending)

        task = loop.create_task(loop.create_connection(factory, target.connect_host, target.port))
        task.add_done_callback(connected)

    def _connected(
        self, task: asyncio.Task[tuple[asyncio.Transport, UpstreamConnection]], pending: list[bytes]
    ) -> None:
        exc = None if task.cancelled() else task.exception()
        if self.pending is not pending or self.transport is None:  # that exchange is over
            if exc is None and not task.cancelled():
                task.result()[1].release()  # still a good connection: keep it for the next request
            return
        if exc is not None or task.cancelled():
            self.pending = None
            if self.target is not None:
                self.target.forget_address()
            self._upstream_error(str(exc) if exc else "connect cancelled")
            return
        transport, conn = task.result()
        if self.target is not None:
            self.target.remember_address(transport.get_extra_info("peername"))
        transport.set_write_buffer_limits(high=defaults.WRITE_HIGH_WATER, low=defaults.WRITE_LOW_WATER)
        self.pending = None
        self._use(conn)
        transport.writelines(pending)
        self._resume(PAUSE_CONNECTING)

    def _to_upstream(self, data: bytes) -> None:
        upstream = self.upstream
        if upstream is not None:
            upstream.write(data)
        elif self.pending is not None:
            self.pending.append(data)
            self.pending_bytes += len(data)
            if self.pending_bytes > defaults.WRITE_HIGH_WATER:
                self._pause(PAUSE_CONNECTING)

    def upstream_pause_writing(self) -> None:
        self._pause(PAUSE_UPSTREAM)

    def upstream_resume_writing(self) -> None:
        self._resume(PAUSE_UPSTREAM)

    # ------------------------------------------------------------------ from the upstream
    def upstream_events(self, events: list[ResponseEvent]) -> None:
        # Everything one read from the target produces goes to the client in one write.
        if self.corked is not None:
            self._forward(events)
            return
        self.corked = []
        try:
            self._forward(events)
        finally:
            self._uncork()

    def _forward(self, events: list[ResponseEvent]) -> None:
        for event in events:
            kind = type(event)
            if kind is Data:
                self._response_body(event.data)  # type: ignore[union-attr]
            elif kind is ResponseHead:
                self._response_head(event)  # type: ignore[arg-type]
            elif kind is EndOfMessage:
                if self.response_head is None:
                    continue  # the end of an interim (1xx) response: the final one follows
                self._response_end()
                return  # one response per request; the next exchange may already own the connection
            elif kind is TunnelData:
                self._write(event.data)  # type: ignore[union-attr]
            elif kind is ParseError:
                self._upstream_error(f"malformed response: {event.message}")  # type: ignore[union-attr]
                return
            if self.upstream is None and not self.tunnel:
                return

    def upstream_lost(self, conn: UpstreamConnection, events: list[ResponseEvent]) -> None:
        if conn is not self.upstream:
            return
        if self.tunnel:
            self.upstream = None
            self._close()
            return
        if events:
            self.upstream_events(events)
            if self.upstream is None:
                return
        self.upstream = None
        head = self.head
        if (
            not self.response_started
            and self.response_head is None
            and conn.reused
            and not self.retried
            and head is not None
            and head.method in IDEMPOTENT
            and head.content_length == 0
            and not head.chunked
            and self.target is not None
        ):
            # A pooled connection the target had closed: safe to try once on a fresh one.
            self.retried = True
            self.pending = [self.upstream_head]
            self._connect(self.target, self.pending)
            return
        self._upstream_error("connection closed by target")

    def _response_head(self, head: ResponseHead) -> None:
        status = head.status
        if status < 200 and status != 101:
            if self.head is not None and self.head.version == b"1.1":
                self._write(_interim(head))
            return
        self.ctx.awaiting.discard(self)
        self.status = status
        self.response_head = head
        service = self.service
        headers = head.headers
        # field lines without their CRLF, the status line first
        out: list[bytes] = [b"HTTP/1.1 %d %b" % (status, head.reason)]
        append = out.append
        content_type = b""
        drop: set[bytes] | None = None
        if status == 101:
            for name, value in headers:
                append(name + COLON + value)
            append(b"\r\n")
            self.tunnel = True
            self.response_started = True
            self._write(CRLF.join(out))
            return
        for name, value in headers:
            lname = name.lower()
            if lname in HOP_BY_HOP:
                if lname == b"connection":
                    tokens = connection_tokens(value)
                    if tokens:
                        drop = tokens if drop is None else drop | tokens
                continue
            if lname == b"content-type":
                content_type = value
            append(name + COLON + value)
        if drop:
            out = _without(out, drop)
        if content_type:
            self.resp_content_type = content_type.decode("latin-1")
        if service is not None and service.buffer_responses and not content_type.startswith(EVENT_STREAM):
            self.response_buffer = SpoolBuffer(memory=service.buffer_memory, limit=service.max_response_body)
            self.response_lines = out  # held until the whole body is here
            return
        self._start_response(out, head)

    def _start_response(self, out: list[bytes], head: ResponseHead) -> None:
        append = out.append
        assert self.head is not None
        if self.head.upgrade:  # refused upgrade: the client may already be sending tunnel bytes
            self.keep_alive = False
        if head.content_length == UNKNOWN_LENGTH and self.head.method != b"HEAD":
            if self.head.version == b"1.1":
                append(b"Transfer-Encoding: chunked")
                self.chunk_out = True
            else:
                self.keep_alive = False
        if self.ctx.closing:
            self.keep_alive = False
        if not self.keep_alive:
            append(b"Connection: close")
        elif self.head.version == b"1.0":
            append(b"Connection: keep-alive")
        append(b"\r\n")
        self.response_started = True
        self._write(CRLF.join(out))

    def _response_body(self, data: bytes) -> None:
        if not data:
            return
        buffer = self.response_buffer
        if buffer is not None:
            if not buffer.write(data):
                self._upstream_failed_response(500)
            return
        self.resp_bytes += len(data)
        self._write(chunk(data) if self.chunk_out else data)

    def _response_end(self) -> None:
        buffer = self.response_buffer
        if buffer is not None:
            assert self.response_head is not None
            out = _without(self.response_lines, CONTENT_LENGTH)
            out.append(b"Content-Length: %d" % buffer.size)
            self.response_lines = []
            self.response_buffer = None
            self._start_response(out, _with_length(self.response_head))
            for piece in buffer.chunks():
                self.resp_bytes += len(piece)
                self._write(piece)
            buffer.close()
        elif self.chunk_out:
            self._write(LAST_CHUNK)
        upstream = self.upstream
        self.upstream = None
        if upstream is not None:
            if self.request_sent and self.response_head is not None and self.response_head.keep_alive:
                upstream.release()
            else:
                upstream.close()
        if self.receiving:
            # The target answered before the whole request body arrived: that body cannot be
            # skipped reliably, so this client connection ends with the response.
            self.keep_alive = False
        self._exchange_done()

    # ------------------------------------------------------------------ errors and timeouts
    def _upstream_error(self, reason: str) -> None:
        if self.service is not None:
            self.ctx.log.error(
                "Error while proxying",
                target=self.target.address if self.target else "",
                path=self.path,
                error=reason,
            )
        self._upstream_failed_response(502)

    def _upstream_failed_response(self, status: int) -> None:
        upstream = self.upstream
        self.upstream = None
        self.pending = None
        if upstream is not None:
            upstream.close()
        if self.response_started:
            self._abort()
            return
        self._drop_buffers()
        self._respond_error(status)

    def target_timed_out(self) -> None:
        self.ctx.awaiting.discard(self)
        if self.held is not None:
            self.held = None
            if self.service is not None:
                self.service.held.discard(self)
            self.ctx.log.warn("Rejecting request due to expired pause", path=self.path)
            self._respond_error(504)
            return
        if self.response_head is None and self.busy:
            self._upstream_failed_response(504)

    def idle_timed_out(self) -> None:
        if not self.busy:
            self._close()

    @property
    def is_tunnel(self) -> bool:
        return self.tunnel

    def cancel_for_drain(self) -> None:
        if self.tunnel:
            self._close()
            return
        self.ctx.log.info("Request cancelled due to draining", path=self.path)
        self._upstream_failed_response(504)

    def _respond_error(self, status: int, *, message: str = "") -> None:
        """Answer with a proxy error page; the exchange ends once the request is read."""
        self._respond(status, error_page(status, message=message))

    def _answered_for_tls(self, service: Service, host: str, raw_path: bytes, raw_query: bytes) -> bool:
        """ACME HTTP-01 answers, 503 for https to a service without TLS, redirects (proxy/http/tls_rules.py)."""
        ctx = self.ctx
        if service.entry is None and not ctx.is_tls:
            return False
        answer = entry_answer(
            service.entry,
            is_tls=ctx.is_tls,
            method=self.method,
            host=host,
            path=raw_path,
            query=raw_query,
            tokens=ctx.challenge_tokens,
        )
        if answer is None:
            return False
        if answer.error_page:
            self._respond_error(answer.status)
            return True
        if answer.location:
            self.keep_alive = False  # kamal-proxy's redirects say Connection: close
        self._respond(answer.status, answer.body, content_type=answer.content_type, location=answer.location)
        return True

    def _respond(
        self, status: int, body: bytes, *, content_type: str = "text/html; charset=utf-8", location: str = ""
    ) -> None:
        """Answer from the proxy itself; the exchange ends once the request is read."""
        self.ctx.awaiting.discard(self)
        self.status = status
        if self.receiving and (self.head is None or self.head.content_length != 0 or self.head.chunked):
            # Unread body: answer now, close after (kamal-proxy's net/http does the same).
            self.keep_alive = False
        if self.ctx.closing:
            self.keep_alive = False
        is_head = self.method == b"HEAD"
        self.resp_bytes = 0 if is_head else len(body)
        self.resp_content_type = content_type
        self.response_started = True
        self._write(
            response_bytes(
                status,
                body=body,
                keep_alive=self.keep_alive,
                head=is_head,
                content_type=content_type,
                location=location,
            )
        )
        target = self.target
        if target is not None:
            target.request_done(self)
            self.target = None
        self._exchange_done()

    def _exchange_done(self) -> None:
        if not self.keep_alive:
            self._finish_exchange()
            self._close()
            return
        if self.receiving:
            return  # the rest of this request's body is read (and dropped) before the next request
        self._finish_exchange()
        self.deadline = self.loop.time() + self.ctx.idle_timeout
        if self.queue:
            self._drain_queue()

    def _finish_exchange(self) -> None:
        """The exchange is over: log it and forget it."""
        if not self.busy:
            return
        self.busy = False
        self.ctx.awaiting.discard(self)
        target = self.target
        if target is not None:
            target.request_done(self)
        self.ctx.access_log.request(self)
        if self.paused & (PAUSE_UPSTREAM | PAUSE_CONNECTING):
            # paused for this exchange's upstream, which will not say resume_writing any more
            self._resume(PAUSE_UPSTREAM | PAUSE_CONNECTING)
        self._drop_buffers()
        self._reset_exchange()

    def _drop_buffers(self) -> None:
        if self.request_buffer is not None:
            self.request_buffer.close()
            self.request_buffer = None
        if self.response_buffer is not None:
            self.response_buffer.close()
            self.response_buffer = None

    # ------------------------------------------------------------------ transport helpers
    def _write(self, data: bytes) -> None:
        corked = self.corked
        if corked is not None:
            corked.append(data)
            return
        transport = self.transport
        if transport is not None:
            transport.write(data)

    def _uncork(self) -> None:
        corked = self.corked
        self.corked = None
        if corked and self.transport is not None:
            self.transport.write(corked[0] if len(corked) == 1 else b"".join(corked))

    def _pause(self, reason: int) -> None:
        was = self.paused
        self.paused = was | reason
        if not was and self.transport is not None:
            self.transport.pause_reading()

    def _resume(self, reason: int) -> None:
        was = self.paused
        if not was & reason:
            return
        self.paused = now = was & ~reason
        if not now and self.transport is not None:
            self.transport.resume_reading()

    def _close(self) -> None:
        self._uncork()
        transport = self.transport
        if transport is not None:
            transport.close()
        upstream = self.upstream
        if upstream is not None and self.tunnel:
            self.upstream = None
            upstream.close()

    def _abort(self) -> None:
        self.corked = None
        self.keep_alive = False
        transport = self.transport
        if transport is not None:
            transport.abort()


def _origin_path(raw: bytes) -> bytes:
    """The path of an absolute-form request-target (`http://host/path`); `*` and others as `/`."""
    scheme_end = raw.find(b"://")
    if scheme_end < 0:
        return b"/"
    slash = raw.find(b"/", scheme_end + 3)
    return raw[slash:] if slash >= 0 else b"/"


def _without(lines: list[bytes], names: set[bytes] | frozenset[bytes]) -> list[bytes]:
    """Field lines (`Name: value`, no CRLF) whose lower-cased name is not in ``names``.

    A start line (it has no colon before its first space) is kept as it is.
    """
    out = []
    for line in lines:
        colon = line.find(b":")
        if colon < 0 or line[:colon].lower() not in names or b" " in line[:colon]:
            out.append(line)
    return out


def _header(head: RequestHead, lname: bytes) -> bytes:
    for name, value in head.headers:
        if name.lower() == lname:
            return value
    return b""


def _interim(head: ResponseHead) -> bytes:
    lines = [b"HTTP/1.1 %d %b\r\n" % (head.status, head.reason)]
    for name, value in head.headers:
        lines.append(name + COLON + value + CRLF)
    lines.append(CRLF)
    return b"".join(lines)


def _with_length(head: ResponseHead) -> ResponseHead:
    """A buffered response's head: its length is known now, so no chunking is needed."""
    return ResponseHead(
        status=head.status,
        reason=head.reason,
        version=head.version,
        headers=head.headers,
        keep_alive=head.keep_alive,
        content_length=0,
        chunked=False,
    )
