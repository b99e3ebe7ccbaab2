"""Open N keep-alive connections to a URL, do one request on each, hold them idle, then do a
second request on each. Driven over stdin/stdout by run.py so it can sample the proxy's RSS
while the connections are held:

    -> prints  ``HELD <ok> <failed> <seconds>``   once all N connections got their first response
    <- reads   one line on stdin ("go")
    -> prints  one JSON line with the final counts, then exits

Bounded: every connect/request has a timeout, and the whole run has --max-seconds.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import resource
import sys
import time
from urllib.parse import urlsplit


async def one_request(reader: asyncio.StreamReader, writer: asyncio.StreamWriter, req: bytes) -> bool:
    writer.write(req)
    await writer.drain()
    head = await reader.readuntil(b"\r\n\r\n")
    status_ok = head.startswith(b"HTTP/1.1 2")
    length = 0
    for line in head.split(b"\r\n"):
        if line.lower().startswith(b"content-length:"):
            length = int(line.split(b":", 1)[1])
    if length:
        await reader.readexactly(length)
    return status_ok


async def main_async(url: str, n: int, timeout: float, batch: int) -> None:
    u = urlsplit(url)
    host, port = u.hostname or "127.0.0.1", u.port or 80
    req = f"GET {u.path or '/'} HTTP/1.1\r\nHost: {u.netloc}\r\nUser-Agent: bench-idle\r\n\r\n".encode()
    conns: list[tuple[asyncio.StreamReader, asyncio.StreamWriter] | None] = [None] * n

    async def first(i: int) -> bool:
        try:
            r, w = await asyncio.wait_for(asyncio.open_connection(host, port), timeout)
            conns[i] = (r, w)
            return await asyncio.wait_for(one_request(r, w, req), timeout)
        except (TimeoutError, OSError, asyncio.IncompleteReadError, ValueError):
            return False

    t0 = time.perf_counter()
    ok1 = 0
    for start in range(0, n, batch):
        res = await asyncio.gather(*(first(i) for i in range(start, min(n, start + batch))))
        ok1 += sum(res)
    print(f"HELD {ok1} {n - ok1} {time.perf_counter() - t0:.2f}", flush=True)

    loop = asyncio.get_running_loop()
    await loop.run_in_executor(None, sys.stdin.readline)

    async def second(i: int) -> bool:
        c = conns[i]
        if c is None:
            return False
        try:
            return await asyncio.wait_for(one_request(c[0], c[1], req), timeout)
        except (TimeoutError, OSError, asyncio.IncompleteReadError, ValueError):
            return False

    ok2 = 0
    for start in range(0, n, batch):
        res = await asyncio.gather(*(second(i) for i in range(start, min(n, start + batch))))
        ok2 += sum(res)
    for c in conns:
        if c is not None:
            c[1].close()
    print(
        json.dumps({"n": n, "first_ok": ok1, "second_ok": ok2, "errors": (n - ok1) + (n - ok2)}), flush=True
    )


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--url", required=True)
    ap.add_argument("-n", type=int, default=10000)
    ap.add_argument("--timeout", type=float, default=10.0)
    ap.add_argument("--batch", type=int, default=500)
    ap.add_argument("--max-seconds", type=float, default=300.0)
    args = ap.parse_args()
    _soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    try:
        import uvloop

        uvloop.install()
    except ImportError:
        pass
    asyncio.run(asyncio.wait_for(main_async(args.url, args.n, args.timeout, args.batch), args.max_seconds))


if __name__ == "__main__":
    main()
