"""Focused measurements for the process model (not part of `make bench`):

  python -m benchmarks.workers sharing   # 2 workers: one shared listening socket vs SO_REUSEPORT,
                                         # c=50 and c=500: req/s, p99, and how evenly the workers work
  python -m benchmarks.workers split --baseline /path/to/in-process/checkout
                                         # one worker process vs the in-process daemon of another
                                         # checkout, both pinned to core 0, wrk on core 1

Runs are interleaved (A B, B A, ...) and short; the machine must be quiet for the numbers to mean much.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from . import wrk
from .backend import free_port, start_nginx_backend, stop_process, taskset, wait_port
from .peers import REPO, cpu_seconds, tree_pids

LAUNCH = (
    "import sys, proxy.defaults as d; d.REUSE_PORT = sys.argv.pop(1) == 'reuseport'; "
    "from proxy.cli.main import main; sys.exit(main())"
)


def start_proxy(
    workdir: Path, root: Path, args: list[str], backend: str, cpu: str | None, sharing: str | None
) -> tuple[subprocess.Popen[bytes], int]:
    workdir.mkdir(parents=True, exist_ok=True)
    port = free_port()
    env = {
        **os.environ,
        "HOME": str(workdir),
        "KAMAL_PROXY_SOCKET": str(workdir / "s.sock"),
        "PYTHONPATH": str(root),
    }
    head = ["-c", LAUNCH, sharing] if sharing else ["-m", "proxy.cli.main"]
    proc = subprocess.Popen(
        [*taskset(cpu), sys.executable, *head, "run", "--http-port", str(port), "--bind", "127.0.0.1", *args],
        cwd=workdir,
        env=env,
        stdout=open(workdir / "access.log", "wb"),
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    wait_port(port, timeout=30, proc=proc)
    deadline = time.monotonic() + 30
    while not (workdir / "s.sock").exists() and time.monotonic() < deadline:  # up once workers are
        time.sleep(0.05)
    subprocess.run(
        [
            sys.executable,
            "-m",
            "proxy.cli.main",
            "deploy",
            "bench",
            "--target",
            backend,
            "--health-check-path",
            "/",
        ],
        env=env,
        cwd=workdir,
        check=True,
        capture_output=True,
        timeout=60,
    )
    return proc, port


def one_run(proc: subprocess.Popen[bytes], port: int, connections: int, seconds: float) -> dict[str, Any]:
    pids = tree_pids(proc.pid)
    workers = [p for p in pids if p != proc.pid]
    before = {p: cpu_seconds([p]) for p in pids}
    result = wrk.run(f"http://127.0.0.1:{port}/", connections, seconds, cpu=None)
    used = {p: cpu_seconds([p]) - before[p] for p in pids}
    shares = sorted(used[p] for p in workers)
    return {
        "rps": result.rps,
        "p99_ms": result.p99_ms,
        "errors": result.errors,
        "worker_cpu_s": [round(s, 2) for s in shares],
        "balance": round(shares[0] / shares[-1], 2) if workers and shares[-1] else None,
        "control_cpu_s": round(used[proc.pid], 3),
    }


def sharing(args: argparse.Namespace) -> dict[str, Any]:
    out: dict[str, Any] = {}
    with tempfile.TemporaryDirectory() as tmp:
        backend = start_nginx_backend(Path(tmp) / "backend", "1", Path(tmp))
        try:
            for rep in range(args.reps):
                order = ["shared", "reuseport"] if rep % 2 == 0 else ["reuseport", "shared"]
                for mode in order:
                    proc, port = start_proxy(
                        Path(tmp) / f"{mode}-{rep}", REPO, ["--workers", "2"], backend.addr, None, mode
                    )
                    try:
                        wrk.run(f"http://127.0.0.1:{port}/", 50, 1, cpu=None)  # warm up
                        for c in (50, 500):
                            out.setdefault(f"{mode} c={c}", []).append(one_run(proc, port, c, args.seconds))
                    finally:
                        stop_process(proc)
        finally:
            backend.stop()
    return out


def split(args: argparse.Namespace) -> dict[str, Any]:
    out: dict[str, Any] = {}
    roots = {"in-process": Path(args.baseline), "one worker": REPO}
    extra = {"in-process": [], "one worker": ["--workers", "1"]}
    with tempfile.TemporaryDirectory() as tmp:
        backend = start_nginx_backend(Path(tmp) / "backend", "1", Path(tmp))
        try:
            for rep in range(args.reps):
                names = list(roots) if rep % 2 == 0 else list(roots)[::-1]
                for name in names:
                    proc, port = start_proxy(
                        Path(tmp) / f"{name}-{rep}".replace(" ", "-"),
                        roots[name],
                        extra[name],
                        backend.addr,
                        "0",
                        None,
                    )
                    try:
                        wrk.run(f"http://127.0.0.1:{port}/", 50, 1, cpu="1")
                        before = cpu_seconds(tree_pids(proc.pid))
                        r = wrk.run(f"http://127.0.0.1:{port}/", 50, args.seconds, cpu="1")
                        used = cpu_seconds(tree_pids(proc.pid)) - before
                        out.setdefault(name, []).append(
                            {
                                "rps": r.rps,
                                "p99_ms": r.p99_ms,
                                "cpu_us_per_req": used / max(1, r.requests) * 1e6,
                            }
                        )
                    finally:
                        stop_process(proc)
        finally:
            backend.stop()
    return out


def summary(results: dict[str, Any]) -> dict[str, Any]:
    return {
        k: {m: statistics.median(r[m] for r in runs) for m in runs[0] if isinstance(runs[0][m], int | float)}
        for k, runs in results.items()
    }


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("what", choices=["sharing", "split"])
    ap.add_argument("--reps", type=int, default=2)
    ap.add_argument("--seconds", type=float, default=5)
    ap.add_argument("--baseline", default="", help="split: a checkout whose daemon runs in-process")
    args = ap.parse_args()
    started = time.time()
    results = sharing(args) if args.what == "sharing" else split(args)
    load = os.getloadavg()
    print(
        json.dumps(
            {"runs": results, "median": summary(results), "loadavg": load, "took_s": time.time() - started},
            indent=1,
        )
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
