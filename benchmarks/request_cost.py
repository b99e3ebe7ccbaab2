"""What one proxied HTTP/1.1 request costs the data plane, in-process: no sockets, no load generator.

    python -m benchmarks.request_cost --requests 20000        # µs of CPU per request (noisy)

drives ``--requests`` keep-alive requests, one after another, through the real data plane of one
worker — ``ClientConnection``, ``Exchange``, the pooled ``UpstreamConnection``, the parser, the
header rules, the access log (rendered and handed to the real log writer, which writes to
/dev/null) — on uvloop, over two in-memory transports: the client's sends the next request when
the previous response has arrived, the target's answers each request at once with a fixed
response. What is left out is what costs the same whatever our Python does: the sockets and
uvloop's own work.

On a shared machine count instructions instead of timing (callgrind; about a minute):

    valgrind --tool=callgrind --callgrind-out-file=/dev/null \\
        python -m benchmarks.request_cost --requests N

once with N=0 and once with N=2000: (difference of the two "Collected" totals) / 2000. ``--pure``
runs it with the compiled modules hidden (``KAMAL_PROXY_PURE=1``), for the comparison.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import time
from typing import Any

REQUEST = (
    b"GET /products/42?ref=home HTTP/1.1\r\nHost: app.example.com\r\nUser-Agent: wrk\r\nAccept: */*\r\n\r\n"
)
BODY = b"hello world\n"
RESPONSE = (
    b"HTTP/1.1 200 OK\r\n"
    b"Server: nginx/1.22.1\r\n"
    b"Date: Mon, 30 Nov 2026 12:00:00 GMT\r\n"
    b"Content-Type: text/plain\r\n"
    b"Content-Length: 12\r\n"
    b"Connection: keep-alive\r\n"
    b"\r\n" + BODY
)


class _Transport:
    """The smallest asyncio transport the data plane accepts; ``on_write`` sees every write."""

    def __init__(self, peer: tuple[str, int], on_write: Any) -> None:
        self._peer = peer
        self._on_write = on_write
        self._closing = False

    def write(self, data: bytes) -> None:
        self._on_write(data)

    def writelines(self, data: list[bytes]) -> None:
        self._on_write(b"".join(data))

    def get_extra_info(self, name: str, default: Any = None) -> Any:
        return self._peer if name == "peername" else default

    def set_write_buffer_limits(self, high: int | None = None, low: int | None = None) -> None:
        pass

    def pause_reading(self) -> None:
        pass

    def resume_reading(self) -> None:
        pass

    def is_closing(self) -> bool:
        return self._closing

    def can_write_eof(self) -> bool:
        return True

    def write_eof(self) -> None:
        pass

    def close(self) -> None:
        self._closing = True

    def abort(self) -> None:
        self._closing = True


async def drive(requests: int) -> float:
    """Serve ``requests`` requests on one client connection; returns the CPU seconds they took."""
    from proxy.access_log import AccessLog
    from proxy.clock import BoundLoopClock
    from proxy.http.connection import ClientConnection
    from proxy.http.listener import Listener
    from proxy.http.parsers import make_request_parser, make_response_parser
    from proxy.http.upstream import UpstreamConnection
    from proxy.log import JsonLog
    from proxy.options import HealthCheckConfig, ServiceOptions, TargetOptions
    from proxy.service import Service
    from proxy.service_map import ServiceMap
    from proxy.targets import TargetSet

    loop = asyncio.get_running_loop()
    done = loop.create_future()
    devnull = os.open(os.devnull, os.O_WRONLY)
    log = JsonLog(fd=devnull)
    log.attach(loop)
    remaining = requests

    async def connect(factory: Any, host: str, port: int) -> tuple[_Transport, UpstreamConnection]:
        protocol = factory()
        transport = _Transport((host, port), lambda _data: loop.call_soon(protocol.data_received, RESPONSE))
        protocol.connection_made(transport)
        return transport, protocol

    targets = TargetSet(
        addresses=("app:3000",), readers=(), health=HealthCheckConfig(), log=log, service="app"
    )
    targets.mark_all_healthy()
    service = Service(
        name="app",
        options=ServiceOptions(hosts=("app.example.com",), path_prefixes=("/",)),
        target_options=TargetOptions(),
        active=targets,
    )
    routes: ServiceMap[Service] = ServiceMap([("app.example.com", "/", service)])
    listener = Listener(
        loop=loop,
        clock=BoundLoopClock(loop),
        log=log,
        observers=(AccessLog(log=log),),
        routes=lambda: routes,
        request_parser=lambda: make_request_parser("httptools", max_head_size=65536),
        response_parser=lambda: make_response_parser("httptools", max_head_size=65536),
        port=80,
        scheme="http",
        connect=connect,  # type: ignore[arg-type]
    )
    conn = ClientConnection(listener)

    def client_got(data: bytes) -> None:
        nonlocal remaining
        if data.endswith(BODY):
            remaining -= 1
            if remaining > 0:
                loop.call_soon(conn.data_received, REQUEST)
            elif not done.done():
                done.set_result(None)

    conn.connection_made(_Transport(("10.0.0.7", 50123), client_got))  # type: ignore[arg-type]
    started = time.process_time()
    if requests > 0:
        conn.data_received(REQUEST)
        await done
    spent = time.process_time() - started
    conn.connection_lost(None)
    log.close()
    os.close(devnull)
    return spent


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--requests", type=int, default=20000)
    parser.add_argument("--pure", action="store_true", help="hide the compiled modules (KAMAL_PROXY_PURE=1)")
    args = parser.parse_args()
    if args.pure:
        os.environ["KAMAL_PROXY_PURE"] = "1"
    import uvloop

    spent = uvloop.run(drive(args.requests))
    if args.requests > 0:
        print(f"{args.requests} requests, {spent / args.requests * 1e6:.1f} µs CPU per request")


if __name__ == "__main__":
    main()
