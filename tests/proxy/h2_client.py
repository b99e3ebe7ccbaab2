"""Clients for the HTTP/2 tests: httpx (HTTP/1.1 or HTTP/2 over TLS) and a raw ``h2`` client.

The raw client exists for what a well-behaved client never does: malformed heads (smuggling), resets,
floods, a reader that withholds its window. It speaks to the real daemon over a real TLS socket.
"""

from __future__ import annotations

import socket
import ssl
import time
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

import h2.config
import h2.connection
import h2.events
import h2.exceptions
import h2.settings
import httpx

from tests.proxy.certs import CA
from tests.proxy.conftest import ProxyProcess

HOST = "app.example.com"
H1, H2 = "HTTP/1.1", "HTTP/2"


def client_context(ca: CA, tmp: Path, *, alpn: list[str]) -> ssl.SSLContext:
    ctx = ssl.create_default_context(cafile=str(ca.write_ca(tmp / "ca.pem")))
    ctx.set_alpn_protocols(alpn)
    return ctx


def deploy_tls(proxy: ProxyProcess, ca: CA, service: str, target: str, *, args: tuple[str, ...] = ()) -> None:
    cert, key = ca.write_leaf(proxy.tmp, HOST)
    proxy.deploy(
        service,
        target,
        args=(
            "--tls",
            f"--tls-certificate-path={cert}",
            f"--tls-private-key-path={key}",
            f"--host={HOST}",
            *args,
        ),
    )


class Https:
    """httpx over TLS to the proxy, speaking ``proto`` (HTTP/1.1 or HTTP/2) to ``HOST``."""

    def __init__(self, proxy: ProxyProcess, ca: CA, proto: str, *, timeout: float = 10) -> None:
        self.proxy = proxy
        self.proto = proto
        alpn = ["h2"] if proto == H2 else ["http/1.1"]
        self.client = httpx.Client(
            http1=proto == H1,
            http2=proto == H2,
            verify=client_context(ca, proxy.tmp, alpn=alpn),
            timeout=timeout,
        )

    def request(
        self, method: str, path: str, *, host: str = HOST, headers: dict[str, str] | None = None, **kw: Any
    ) -> httpx.Response:
        response = self.client.request(
            method,
            f"https://127.0.0.1:{self.proxy.https_port}{path}",
            headers={"host": host, **(headers or {})},
            extensions={"sni_hostname": HOST},
            **kw,
        )
        assert response.http_version == self.proto, response.http_version
        return response

    def get(self, path: str, **kw: Any) -> httpx.Response:
        return self.request("GET", path, **kw)

    def close(self) -> None:
        self.client.close()


class RawH2:
    """A raw HTTP/2 client: frames as the test wants them, validation optional."""

    def __init__(
        self, proxy: ProxyProcess, ca: CA, *, validate: bool = True, window: int | None = None
    ) -> None:
        ctx = client_context(ca, proxy.tmp, alpn=["h2"])
        raw = socket.create_connection(("127.0.0.1", proxy.https_port), timeout=10)
        self.sock = ctx.wrap_socket(raw, server_hostname=HOST)
        assert self.sock.selected_alpn_protocol() == "h2"
        config = h2.config.H2Configuration(
            client_side=True,
            header_encoding=None,
            validate_outbound_headers=validate,
            normalize_outbound_headers=validate,
        )
        self.conn = h2.connection.H2Connection(config=config)
        self.conn.initiate_connection()
        if window is not None:
            self.conn.update_settings({h2.settings.SettingCodes.INITIAL_WINDOW_SIZE: window})
        self.closed = False
        self.events: list[h2.events.Event] = []
        self.flush()

    def flush(self) -> None:
        data = self.conn.data_to_send()
        if data and not self.closed:
            try:
                self.sock.sendall(data)
            except OSError:
                self.closed = True

    def send_raw(self, data: bytes) -> None:
        try:
            self.sock.sendall(data)
        except OSError:
            self.closed = True

    def request(
        self,
        path: str,
        *,
        method: str = "GET",
        headers: Iterable[tuple[str, str]] = (),
        end: bool = True,
        authority: str = HOST,
    ) -> int:
        sid = int(self.conn.get_next_available_stream_id())
        fields = [(":method", method), (":scheme", "https"), (":authority", authority), (":path", path)]
        fields += list(headers)
        self.conn.send_headers(sid, [(n.encode(), v.encode()) for n, v in fields], end_stream=end)
        self.flush()
        return sid

    def read(self, timeout: float = 5.0) -> list[h2.events.Event]:
        """One read (or nothing within ``timeout``); the events it made are kept and returned."""
        if self.closed:
            return []
        self.sock.settimeout(timeout)
        try:
            data = self.sock.recv(1 << 20)
        except TimeoutError:
            return []
        except (ssl.SSLError, OSError):
            data = b""
        if not data:
            self.closed = True
            return []
        try:
            events = self.conn.receive_data(data)
        except h2.exceptions.ProtocolError:
            self.closed = True
            return []
        self.flush()
        self.events += events
        return list(events)

    def until(
        self, predicate: Callable[[h2.events.Event], bool], timeout: float = 10.0
    ) -> h2.events.Event | None:
        deadline = time.monotonic() + timeout
        for event in self.events:
            if predicate(event):
                return event
        while time.monotonic() < deadline and not self.closed:
            for event in self.read(min(1.0, max(0.01, deadline - time.monotonic()))):
                if predicate(event):
                    return event
        return None

    def response(self, sid: int, timeout: float = 10.0) -> tuple[int, dict[bytes, bytes], bytes]:
        """Status, headers and body of one stream, acknowledging its DATA as it comes."""
        status, headers, body = 0, {}, bytearray()
        deadline = time.monotonic() + timeout
        done = False
        pending = [e for e in self.events if getattr(e, "stream_id", None) == sid]
        while not done and time.monotonic() < deadline:
            events = pending or self.read(1.0)
            pending = []
            if self.closed and not events:
                break
            for event in events:
                if getattr(event, "stream_id", None) != sid:
                    continue
                if isinstance(event, h2.events.ResponseReceived):
                    assert event.headers is not None
                    fields = {bytes(n): bytes(v) for n, v in event.headers}
                    status = int(fields[b":status"])
                    headers = fields
                elif isinstance(event, h2.events.DataReceived):
                    assert event.data is not None
                    body += event.data
                    self.conn.acknowledge_received_data(event.flow_controlled_length or 0, sid)
                    self.flush()
                elif isinstance(event, h2.events.StreamEnded | h2.events.StreamReset):
                    done = True
        return status, headers, bytes(body)

    def reset_of(self, sid: int, timeout: float = 10.0) -> h2.events.StreamReset | None:
        event = self.until(lambda e: isinstance(e, h2.events.StreamReset) and e.stream_id == sid, timeout)
        return event if isinstance(event, h2.events.StreamReset) else None

    def goaway(self, timeout: float = 10.0) -> h2.events.ConnectionTerminated | None:
        event = self.until(lambda e: isinstance(e, h2.events.ConnectionTerminated), timeout)
        return event if isinstance(event, h2.events.ConnectionTerminated) else None

    def wait_closed(self, timeout: float = 10.0) -> bool:
        deadline = time.monotonic() + timeout
        while not self.closed and time.monotonic() < deadline:
            self.read(0.5)
        return self.closed

    def close(self) -> None:
        self.closed = True
        self.sock.close()


def rss_kib(pid: int) -> int:
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    raise AssertionError("no VmRSS")
