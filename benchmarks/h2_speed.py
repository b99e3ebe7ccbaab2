"""The HTTP/2 request path in-process, no sockets: what one h2load-like request costs our code.

    python -m benchmarks.h2_speed --requests 20000            # µs per request (wall, noisy)
    python -m benchmarks.h2_speed --requests 2000 --profile   # cProfile: where the time goes

An ``H2Connection`` on a mock transport gets the bytes an ``h2load -m 10`` client sends (made up
front by an ``h2`` client that never reads: its preface, then one HEADERS frame per request, 10
streams per read), over the daemon's own listener (``serving_listener``: access log to /dev/null);
every request goes to a mock target that answers with nginx's hello-world response. The TLS layer
is not here: it is the same for every change to our code. On a shared machine instruction counts
move far less than time; per request, with callgrind:

    valgrind --tool=callgrind --callgrind-out-file=/dev/null \\
        "$(python -c 'import sys; print(sys.executable)')" -m benchmarks.h2_speed --requests N [--dry]

once with ``--dry`` (the client's bytes are made, nothing is served) and once without, N=3000:
(difference of the two "Collected" totals) / 3000. (The real interpreter, not a pyenv shim: valgrind
would measure the shim's shell.) ``--check`` reads the responses back with an ``h2`` client and
fails unless every one is a 200 with the body.
"""

from __future__ import annotations

import argparse
import asyncio
import cProfile
import gc
import os
import pstats
import time

import h2.config
import h2.connection
import h2.events
import h2.settings
import uvloop

from benchmarks.request_cost import RESPONSE  # the same nginx hello-world answer
from proxy.http.h2_connection import H2Connection
from proxy.http.listener import serving_listener
from proxy.http.tls_rules import sync_entry_rules
from proxy.log import JsonLog
from proxy.options import HealthCheckConfig, ServiceOptions, TargetOptions
from proxy.service import Service
from proxy.service_map import ServiceMap
from proxy.targets import TargetSet
from tests.proxy.harness import MockTargets, MockTransport

STREAMS_PER_READ = 10  # h2load -m 10: ten requests in flight, sent together
AUTHORITY = b"localhost:8443"


def client_reads(requests: int, *, keep: bool) -> tuple[h2.connection.H2Connection, list[bytes]]:
    """What an h2load client sends: the preface, then ``STREAMS_PER_READ`` GET requests per read
    (and the client, to read the answers with). Unless ``keep``, the client forgets each batch's
    streams (h2 walks every open stream per new one: thousands would make this quadratic)."""
    client = h2.connection.H2Connection(h2.config.H2Configuration(client_side=True, header_encoding=None))
    client.local_settings = h2.settings.Settings(
        client=True, initial_values={h2.settings.SettingCodes.INITIAL_WINDOW_SIZE: (1 << 30) - 1}
    )
    client.initiate_connection()
    client.increment_flow_control_window(1 << 30)
    reads = [client.data_to_send()]
    fields = [
        (b":method", b"GET"),
        (b":path", b"/"),
        (b":scheme", b"https"),
        (b":authority", AUTHORITY),
        (b"user-agent", b"h2load nghttp2/1.52.0"),
    ]
    for first in range(0, requests, STREAMS_PER_READ):
        sids = []
        for _ in range(min(STREAMS_PER_READ, requests - first)):
            sids.append(client.get_next_available_stream_id())
            client.send_headers(sids[-1], fields, end_stream=True)
        reads.append(client.data_to_send())
        if not keep:
            for sid in sids:
                client.reset_stream(sid)
            client.data_to_send()  # (those RST_STREAM frames are not sent)
    return client, reads


async def drive(requests: int, *, check: bool, dry: bool, profile: cProfile.Profile | None) -> float:
    """Serve ``requests`` requests; seconds spent serving them."""
    loop = asyncio.get_running_loop()
    devnull = os.open(os.devnull, os.O_WRONLY)
    log = JsonLog(fd=devnull)
    log.attach(loop)
    targets = TargetSet(addresses=("app:3000",), readers=(), health=HealthCheckConfig(), log=log, service="b")
    targets.mark_all_healthy()
    service = Service(
        name="bench",
        options=ServiceOptions(
            hosts=("localhost",),
            tls_enabled=True,
            tls_certificate_path="cert.pem",
            tls_private_key_path="key.pem",
        ),
        target_options=TargetOptions(),
        active=targets,
    )
    routes = ServiceMap([("localhost", "/", service)])
    sync_entry_rules([service], routes)
    listener = serving_listener(
        loop=loop,
        log=log,
        metrics=None,
        routes=lambda: routes,
        http_parser="httptools",
        port=8443,
        scheme="https",
        read_header_timeout=30.0,
        idle_timeout=60.0,
        request_body_timeout=60.0,
        write_timeout=60.0,
        challenge_tokens={},
    )
    mock = MockTargets()
    listener.connect = mock.connect
    client, reads = client_reads(requests, keep=check)
    conn = H2Connection(listener)
    transport = MockTransport(peer=("127.0.0.1", 40000))
    transport.protocol = conn
    conn.connection_made(transport)  # type: ignore[arg-type]
    gc.collect()
    gc.freeze()  # the client's streams (kept, never read) are not the proxy's garbage to scan
    out: list[bytes] = []
    started = time.perf_counter()
    if profile is not None:
        profile.enable()
    for data in [] if dry else reads:
        conn.data_received(data)
        await _turns(3)
        for upstream, protocol in mock.connections:
            if upstream.written:
                upstream.written.clear()
                protocol.data_received(RESPONSE)
        await _turns(3)
        out += transport.written
        transport.written.clear()
    if profile is not None:
        profile.disable()
    elapsed = time.perf_counter() - started
    if check:
        _check(client, b"".join(out), requests)
    log.close()
    return elapsed


async def _turns(n: int) -> None:
    for _ in range(n):
        await asyncio.sleep(0)


def _check(client: h2.connection.H2Connection, received: bytes, requests: int) -> None:
    statuses: dict[int, bytes] = {}
    bodies: dict[int, bytes] = {}
    ended = 0
    for event in client.receive_data(received):
        if isinstance(event, h2.events.ResponseReceived):
            statuses[event.stream_id or 0] = dict(event.headers or [])[b":status"]
        elif isinstance(event, h2.events.DataReceived):
            bodies[event.stream_id or 0] = bodies.get(event.stream_id or 0, b"") + (event.data or b"")
        elif isinstance(event, h2.events.StreamEnded):
            ended += 1
    ok = sum(1 for sid, s in statuses.items() if s == b"200" and bodies.get(sid) == b"hello world\n")
    if ok != requests or ended != requests:
        raise SystemExit(
            f"check failed: {ok} of {requests} answered 200 with the body, {ended} streams ended"
        )
    print(f"check: {requests} responses, all 200 with the body")


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--requests", type=int, default=20000)
    p.add_argument("--dry", action="store_true", help="make the client's bytes but serve nothing")
    p.add_argument("--check", action="store_true", help="decode the responses and verify them")
    p.add_argument("--profile", action="store_true", help="cProfile the serving part; top functions")
    p.add_argument("--sort", default="tottime", help="cProfile order: tottime, cumulative, ...")
    a = p.parse_args()
    profile = cProfile.Profile() if a.profile else None
    elapsed = uvloop.run(drive(a.requests, check=a.check, dry=a.dry, profile=profile))
    if a.requests:
        print(f"{a.requests} requests: {elapsed / a.requests * 1e6:.1f} µs per request (wall, in-process)")
    if profile is not None:
        stats = pstats.Stats(profile)
        stats.sort_stats(a.sort).print_stats(35)


if __name__ == "__main__":
    main()
