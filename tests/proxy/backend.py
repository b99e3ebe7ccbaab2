"""A real HTTP/1.1 backend for the tests: an asyncio server on 127.0.0.1 (port 0) in its own thread.

Behaviour by path (query parameters in brackets):
  /up                      200 "OK" (500 while ``healthy`` is False)
  /echo                    200, JSON of method, path, query, headers, body (and the backend name)
  /slow [ms]               waits ms before answering
  /status/N                answers status N with body "status N"
  /big [size]              a Content-Length body of size bytes ("x" repeated)
  /chunked [n, ms]         n chunks of "chunk i\n", ms apart
  /sse [n, ms]             text/event-stream, n events ms apart
  /close [size]            a close-delimited body
  /ws                      101 Switching Protocols, then echoes every byte back
  /sink                    reads the body at [rate] bytes per 10 ms, answers its size
Every response carries `X-Backend: <name>`. ``connections`` counts accepted TCP connections and
``requests`` the requests seen, so the tests can check keep-alive reuse.
"""

from __future__ import annotations

import asyncio
import json
import threading
import time
from typing import Any
from urllib.parse import parse_qs, urlsplit


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
        self._server: asyncio.AbstractServer | None = None
        self._writers: set[asyncio.StreamWriter] = set()
        ready = threading.Event()
        self._thread = threading.Thread(target=self._run, args=(ready,), daemon=True)
        self._thread.start()
        ready.wait(5)
        assert self._server is not None
        self.port: int = self._server.sockets[0].getsockname()[1]
        self.address: str = f"127.0.0.1:{self.port}"

    def _run(self, ready: threading.Event) -> None:
        asyncio.set_event_loop(self._loop)

        async def start() -> None:
            self._server = await asyncio.start_server(self._handle, "127.0.0.1", 0, limit=1 << 20)
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
        lines = head.decode("latin-1").split("\r\n")
        method, target, version = lines[0].split(" ", 2)
        headers: list[tuple[str, str]] = []
        for line in lines[1:]:
            if line:
                name, _, value = line.partition(":")
                headers.append((name, value.strip()))
        lower = {n.lower(): v for n, v in headers}
        url = urlsplit(target)
        query = {k: v[0] for k, v in parse_qs(url.query).items()}
        path = url.path
        if path in ("/up", "/redir"):
            self.health_checks += 1
            self.health_headers = lower
        else:
            self.requests += 1
            if id(writer) not in self._proxy_connections:
                self._proxy_connections.add(id(writer))
                self.connections += 1
            self.last_headers = lower
        if path == "/sink":
            return await self._sink(reader, writer, lower, int(query.get("rate", "65536")))
        if lower.get("expect", "").lower() == "100-continue":
            writer.write(b"HTTP/1.1 100 Continue\r\n\r\n")
            await writer.drain()
        body = await self._read_body(reader, lower)
        self.seen.append({"method": method, "target": target, "headers": headers, "body": body})
        keep_alive = lower.get("connection", "").lower() != "close" and version == "HTTP/1.1"

        def respond(status: int, payload: bytes, extra: str = "") -> None:
            conn = "" if keep_alive else "Connection: close\r\n"
            writer.write(
                (
                    f"HTTP/1.1 {status} X\r\nX-Backend: {self.name}\r\nContent-Length: {len(payload)}\r\n"
                    f"{extra}{conn}\r\n"
                ).encode()
                + (b"" if method == "HEAD" else payload)
            )

        if path == "/up":
            respond(200 if self.healthy else 500, b"OK")
        elif path == "/redir":
            respond(302, b"", "Location: /up\r\n")
        elif path == "/echo":
            payload = json.dumps(
                {
                    "backend": self.name,
                    "method": method,
                    "target": target,
                    "path": path,
                    "query": url.query,
                    "headers": headers,
                    "body": body.decode("latin-1"),
                }
            ).encode()
            respond(200, payload, "Content-Type: application/json\r\n")
        elif path == "/slow":
            await asyncio.sleep(int(query.get("ms", "1000")) / 1000)
            respond(200, f"slow {self.name}".encode())
        elif path.startswith("/status/"):
            status = int(path.rsplit("/", 1)[1])
            respond(status, f"status {status}".encode())
        elif path == "/big":
            respond(200, b"x" * int(query.get("size", "1048576")))
        elif path == "/chunked":
            writer.write(
                f"HTTP/1.1 200 OK\r\nX-Backend: {self.name}\r\nTransfer-Encoding: chunked\r\n\r\n".encode()
            )
            for i in range(int(query.get("n", "3"))):
                piece = f"chunk {i}\n".encode()
                writer.write(b"%x\r\n%b\r\n" % (len(piece), piece))
                await writer.drain()
                await asyncio.sleep(int(query.get("ms", "0")) / 1000)
            writer.write(b"0\r\n\r\n")
        elif path == "/sse":
            writer.write(
                f"HTTP/1.1 200 OK\r\nX-Backend: {self.name}\r\nContent-Type: text/event-stream\r\n"
                "Cache-Control: no-cache\r\nTransfer-Encoding: chunked\r\n\r\n".encode()
            )
            for i in range(int(query.get("n", "3"))):
                piece = f"data: event {i}\n\n".encode()
                writer.write(b"%x\r\n%b\r\n" % (len(piece), piece))
                await writer.drain()
                await asyncio.sleep(int(query.get("ms", "100")) / 1000)
            writer.write(b"0\r\n\r\n")
        elif path == "/close":
            size = int(query.get("size", "1000"))
            writer.write(f"HTTP/1.1 200 OK\r\nX-Backend: {self.name}\r\nConnection: close\r\n\r\n".encode())
            writer.write(b"y" * size)
            await writer.drain()
            return False
        elif path == "/ws":
            writer.write(
                b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\r\n"
            )
            await writer.drain()
            while data := await reader.read(65536):
                writer.write(data)
                await writer.drain()
            return False
        else:
            respond(404, b"backend 404")
        await writer.drain()
        return keep_alive

    async def _read_body(self, reader: asyncio.StreamReader, headers: dict[str, str]) -> bytes:
        if "content-length" in headers:
            return await reader.readexactly(int(headers["content-length"]))
        if headers.get("transfer-encoding", "").lower() == "chunked":
            parts: list[bytes] = []
            while True:
                size_line = await reader.readuntil(b"\r\n")
                size = int(size_line.split(b";")[0], 16)
                if size == 0:
                    while (await reader.readuntil(b"\r\n")) != b"\r\n":
                        pass
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
