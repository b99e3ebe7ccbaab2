"""A real HTTP/1.1 backend for the tests: an asyncio server on 127.0.0.1 (port 0) in its own thread.

Behaviour by path (query parameters in brackets):
  /up                      200 "OK" (500 while ``healthy`` is False)
  /echo                    200, JSON of method, path, query, headers, body, trailers (and the
                           backend name)
  /slow [ms]               waits ms before answering
  /status/N                answers status N with body "status N"
  /big [size]              a Content-Length body of size bytes ("x" repeated)
  /chunked [n, ms, trailer] n chunks of "chunk i\n", ms apart; ``trailer`` ("Name: value") is
                           announced in ``Trailer`` and sent after the last chunk
  /sse [n, ms]             text/event-stream, n events ms apart
  /close [size]            a close-delimited body
  /ws                      101 Switching Protocols, then echoes every byte back
  /sink                    reads the body at [rate] bytes per 10 ms, answers its size
  /headers [name=value…]   200 "headers", each query parameter a response header (repeats kept)
Every response carries `X-Backend: <name>`. ``connections`` counts accepted TCP connections and
``requests`` the requests seen, so the tests can check keep-alive reuse.
"""

from __future__ import annotations

import asyncio
import json
import threading
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any, ClassVar
from urllib.parse import parse_qs, parse_qsl, urlsplit


@dataclass
class _Request:
    method: str
    target: str
    version: str
    headers: list[tuple[str, str]]
    lower: dict[str, str]
    path: str
    raw_query: str
    query: dict[str, str]
    keep_alive: bool
    body: bytes = b""
    trailers: list[tuple[str, str]] = field(default_factory=list)  # of a chunked body

    @classmethod
    def parse(cls, head: bytes) -> _Request:
        lines = head.decode("latin-1").split("\r\n")
        method, target, version = lines[0].split(" ", 2)
        headers: list[tuple[str, str]] = []
        for line in lines[1:]:
            if line:
                name, _, value = line.partition(":")
                headers.append((name, value.strip()))
        lower = {n.lower(): v for n, v in headers}
        url = urlsplit(target)
        return cls(
            method=method,
            target=target,
            version=version,
            headers=headers,
            lower=lower,
            path=url.path,
            raw_query=url.query,
            query={k: v[0] for k, v in parse_qs(url.query).items()},
            keep_alive=lower.get("connection", "").lower() != "close" and version == "HTTP/1.1",
        )


class Backend:
    def __init__(self, name: str = "backend") -> None:
        self.name = name
        self.healthy = True
        self.connections = 0  # TCP connections that carried a request other than a health check
        self._proxy_connections: set[int] = set()
        self.requests = 0
        self.health_checks = 0
        self.last_headers: dict[str, str] = {}
        self.health_headers: dict[str, str] = {}
        self.seen: list[dict[str, Any]] = []
        self._loop = asyncio.new_event_loop()
        self._server: asyncio.Server | None = None
        self._writers: set[asyncio.StreamWriter] = set()
        ready = threading.Event()
        self._thread = threading.Thread(target=self._run, args=(ready,), daemon=True)
        self._thread.start()
        ready.wait(5)
        self.port = self._listening_port()
        self.address = f"127.0.0.1:{self.port}"

    def _listening_port(self) -> int:
        # A method of its own: mypy narrows ``self._server`` to None right after __init__ set it.
        assert self._server is not None, "backend did not start"
        return int(self._server.sockets[0].getsockname()[1])

    def _run(self, ready: threading.Event) -> None:
        asyncio.set_event_loop(self._loop)

        async def start() -> None:
            self._server = await asyncio.start_server(
                self._handle, "127.0.0.1", 0, limit=1 << 20, backlog=1024
            )
            ready.set()

        self._loop.run_until_complete(start())
        self._loop.run_forever()

    def stop(self) -> None:
        def shutdown() -> None:
            if self._server is not None:
                self._server.close()
            for w in list(self._writers):
                w.transport.abort()

        self._loop.call_soon_threadsafe(shutdown)
        time.sleep(0.05)
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(5)

    def close_idle_connections(self) -> None:
        """Close every open connection, as a target restarting would."""

        def close_all() -> None:
            for w in list(self._writers):
                w.transport.abort()

        self._loop.call_soon_threadsafe(close_all)
        time.sleep(0.05)

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self._writers.add(writer)
        try:
            while True:
                try:
                    head = await reader.readuntil(b"\r\n\r\n")
                except (asyncio.IncompleteReadError, ConnectionError):
                    return
                keep = await self._request(head, reader, writer)
                if not keep:
                    return
        except (ConnectionError, asyncio.IncompleteReadError):
            return
        finally:
            self._writers.discard(writer)
            writer.close()

    async def _request(self, head: bytes, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> bool:
        req = _Request.parse(head)
        if req.path in ("/up", "/redir"):
            self.health_checks += 1
            self.health_headers = req.lower
        else:
            self.requests += 1
            if id(writer) not in self._proxy_connections:
                self._proxy_connections.add(id(writer))
                self.connections += 1
            self.last_headers = req.lower
        if req.path == "/sink":
            return await self._sink(reader, writer, req.lower, int(req.query.get("rate", "65536")))
        if req.lower.get("expect", "").lower() == "100-continue":
            writer.write(b"HTTP/1.1 100 Continue\r\n\r\n")
            await writer.drain()
        req.body = await self._read_body(reader, req.lower, req.trailers)
        self.seen.append(
            {"method": req.method, "target": req.target, "headers": req.headers, "body": req.body}
        )
        streaming = self._STREAMING.get(req.path)
        if streaming is not None:
            return await streaming(self, req, reader, writer)
        status, payload, extra = await self._answer(req)
        conn = "" if req.keep_alive else "Connection: close\r\n"
        writer.write(
            (
                f"HTTP/1.1 {status} X\r\nX-Backend: {self.name}\r\nContent-Length: {len(payload)}\r\n"
                f"{extra}{conn}\r\n"
            ).encode()
            + (b"" if req.method == "HEAD" else payload)
        )
        await writer.drain()
        return req.keep_alive

    async def _answer(self, req: _Request) -> tuple[int, bytes, str]:
        """Status, body and extra header lines of the paths answered with a Content-Length body."""
        path, query = req.path, req.query
        if path == "/up":
            return (200 if self.healthy else 500), b"OK", ""
        if path == "/redir":
            return 302, b"", "Location: /up\r\n"
        if path == "/echo":
            payload = json.dumps(
                {
                    "backend": self.name,
                    "method": req.method,
                    "target": req.target,
                    "path": path,
                    "query": req.raw_query,
                    "headers": req.headers,
                    "body": req.body.decode("latin-1"),
                    "trailers": req.trailers,
                }
            ).encode()
            return 200, payload, "Content-Type: application/json\r\n"
        if path == "/slow":
            await asyncio.sleep(int(query.get("ms", "1000")) / 1000)
            return 200, f"slow {self.name}".encode(), ""
        if path.startswith("/status/"):
            status = int(path.rsplit("/", 1)[1])
            return status, f"status {status}".encode(), ""
        if path == "/headers":
            lines = "".join(f"{name}: {value}\r\n" for name, value in parse_qsl(req.raw_query))
            return 200, b"headers", lines
        if path == "/big":
            return 200, b"x" * int(query.get("size", "1048576")), ""
        return 404, b"backend 404", ""

    async def _chunks(
        self, writer: asyncio.StreamWriter, head: str, pieces: list[bytes], delay_ms: int, trailer: str = ""
    ) -> None:
        writer.write(
            f"HTTP/1.1 200 OK\r\nX-Backend: {self.name}\r\n{head}Transfer-Encoding: chunked\r\n\r\n".encode()
        )
        for piece in pieces:
            writer.write(b"%x\r\n%b\r\n" % (len(piece), piece))
            await writer.drain()
            await asyncio.sleep(delay_ms / 1000)
        writer.write(b"0\r\n" + (f"{trailer}\r\n".encode() if trailer else b"") + b"\r\n")
        await writer.drain()

    async def _chunked(
        self, req: _Request, reader: asyncio.StreamReader, writer: asyncio.StreamWriter
    ) -> bool:
        pieces = [f"chunk {i}\n".encode() for i in range(int(req.query.get("n", "3")))]
        trailer = req.query.get("trailer", "")
        head = f"Trailer: {trailer.partition(':')[0]}\r\n" if trailer else ""
        await self._chunks(writer, head, pieces, int(req.query.get("ms", "0")), trailer)
        return req.keep_alive

    async def _sse(self, req: _Request, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> bool:
        pieces = [f"data: event {i}\n\n".encode() for i in range(int(req.query.get("n", "3")))]
        head = "Content-Type: text/event-stream\r\nCache-Control: no-cache\r\n"
        await self._chunks(writer, head, pieces, int(req.query.get("ms", "100")))
        return req.keep_alive

    async def _close(self, req: _Request, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> bool:
        size = int(req.query.get("size", "1000"))
        writer.write(f"HTTP/1.1 200 OK\r\nX-Backend: {self.name}\r\nConnection: close\r\n\r\n".encode())
        writer.write(b"y" * size)
        await writer.drain()
        return False

    async def _ws(self, req: _Request, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> bool:
        writer.write(b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\r\n")
        await writer.drain()
        while data := await reader.read(65536):
            writer.write(data)
            await writer.drain()
        return False

    _STREAMING: ClassVar[dict[str, Callable[..., Awaitable[bool]]]] = {
        "/chunked": _chunked,
        "/sse": _sse,
        "/close": _close,
        "/ws": _ws,
    }

    async def _read_body(
        self, reader: asyncio.StreamReader, headers: dict[str, str], trailers: list[tuple[str, str]]
    ) -> bytes:
        if "content-length" in headers:
            return await reader.readexactly(int(headers["content-length"]))
        if headers.get("transfer-encoding", "").lower() == "chunked":
            parts: list[bytes] = []
            while True:
                size_line = await reader.readuntil(b"\r\n")
                size = int(size_line.split(b";")[0], 16)
                if size == 0:
                    while (line := await reader.readuntil(b"\r\n")) != b"\r\n":
                        name, _, value = line.decode("latin-1").partition(":")
                        trailers.append((name, value.strip()))
                    return b"".join(parts)
                parts.append(await reader.readexactly(size))
                await reader.readexactly(2)
        return b""

    async def _sink(
        self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter, headers: dict[str, str], rate: int
    ) -> bool:
        remaining = int(headers.get("content-length", "0"))
        total = 0
        while remaining > 0:
            data = await reader.read(min(rate, remaining))
            if not data:
                return False
            total += len(data)
            remaining -= len(data)
            await asyncio.sleep(0.01)
        payload = str(total).encode()
        writer.write(b"HTTP/1.1 200 OK\r\nContent-Length: %d\r\n\r\n%b" % (len(payload), payload))
        await writer.drain()
        return True
