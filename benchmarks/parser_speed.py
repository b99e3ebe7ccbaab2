"""Time the HTTP/1 parsers on one typical request head and one typical response, no sockets.

    python -m benchmarks.parser_speed                 # both backends, both directions

prints the median nanoseconds per message of ``--repeat`` runs of ``--iterations`` messages each
(a fresh parser per run; every message is fed in one piece, as one read delivers it). On a shared
machine instruction counts move far less than time; per message, with callgrind:

    valgrind --tool=callgrind --callgrind-out-file=/dev/null \\
        python -m benchmarks.parser_speed --kind httptools --direction request --iterations N --repeat 1

once with N=0 and once with N=10000: (difference of the two "Collected" totals) / 10000.
"""

from __future__ import annotations

import argparse
import statistics
import time

from proxy.http.parser import ResponseEvent
from proxy.http.parsers import PARSER_KINDS, ParserKind, make_request_parser, make_response_parser

REQUEST = (
    b"GET /products/42?ref=home HTTP/1.1\r\n"
    b"Host: app.example.com\r\n"
    b"Connection: keep-alive\r\n"
    b'sec-ch-ua: "Chromium";v="124", "Not-A.Brand";v="99"\r\n'
    b"sec-ch-ua-mobile: ?0\r\n"
    b"User-Agent: Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) "
    b"Chrome/124.0.0.0 Safari/537.36\r\n"
    b"Accept: text/html,application/xhtml+xml,application/xml;q=0.9,image/avif,image/webp,*/*;q=0.8\r\n"
    b"Sec-Fetch-Site: same-origin\r\n"
    b"Sec-Fetch-Mode: navigate\r\n"
    b"Sec-Fetch-Dest: document\r\n"
    b"Referer: https://app.example.com/\r\n"
    b"Accept-Encoding: gzip, deflate, br\r\n"
    b"Accept-Language: en-US,en;q=0.9\r\n"
    b"Cookie: _session_id=2f1e9a7c5b3d4e6f8a0b1c2d3e4f5a6b; theme=dark\r\n"
    b"\r\n"
)

RESPONSE = (
    b"HTTP/1.1 200 OK\r\n"
    b"Server: nginx/1.22.1\r\n"
    b"Date: Mon, 30 Nov 2026 12:00:00 GMT\r\n"
    b"Content-Type: text/html; charset=utf-8\r\n"
    b"Content-Length: 12\r\n"
    b"Connection: keep-alive\r\n"
    b"Cache-Control: max-age=0, private, must-revalidate\r\n"
    b'ETag: W/"5e1b7c3a9d2f"\r\n'
    b"X-Request-Id: 7f3c9a2e-1b4d-4e6f-8a0b-1c2d3e4f5a6b\r\n"
    b"\r\n"
    b"hello world\n"
)


def time_requests(kind: ParserKind, iterations: int) -> float:
    parser = make_request_parser(kind, max_head_size=65536)
    feed = parser.feed
    start = time.perf_counter_ns()
    for _ in range(iterations):
        feed(REQUEST)
    return (time.perf_counter_ns() - start) / max(iterations, 1)


def time_responses(kind: ParserKind, iterations: int) -> float:
    parser = make_response_parser(kind, max_head_size=65536)
    feed = parser.feed
    expect = parser.expect_response
    events: list[ResponseEvent] = []
    start = time.perf_counter_ns()
    for _ in range(iterations):
        expect(method=b"GET", upgrade=False)
        events = feed(RESPONSE)
    elapsed = time.perf_counter_ns() - start
    assert not iterations or len(events) == 3, events  # head, body, end: every response was parsed
    return elapsed / max(iterations, 1)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--iterations", type=int, default=200_000)
    ap.add_argument("--repeat", type=int, default=5)
    ap.add_argument("--kind", choices=PARSER_KINDS, action="append")
    ap.add_argument("--direction", choices=("request", "response"), action="append")
    args = ap.parse_args()
    directions = args.direction or ["request", "response"]
    for kind in args.kind or PARSER_KINDS:
        for name, fn in (("request", time_requests), ("response", time_responses)):
            if name not in directions:
                continue
            runs = [fn(kind, args.iterations) for _ in range(args.repeat)]
            print(
                f"{kind:10} {name:9} {statistics.median(runs):8.0f} ns/message  (runs: {[round(r) for r in runs]})"
            )


if __name__ == "__main__":
    main()
