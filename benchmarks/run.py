"""Benchmark suite entry point: ``python -m benchmarks.run`` (``make bench``).

Starts everything itself on 127.0.0.1 (free ports only): two fixed-response backends (+ two more
for deploy swaps), this proxy (httptools and h11 parsers) and nginx / HAProxy / Caddy, all pinned:
proxies on core 0, wrk and backends on core 1. Every load run is bounded in time.

Scenarios (``--scenarios``, comma separated; default: all):
  peers     hello-world keep-alive loop at c=1/50/500, interleaved A B C ... A B C, medians
  deploy    N ``deploy`` swaps between two backend pairs while wrk runs (ours)
  pause     pause -> deploy -> resume cycles under load (ours; skipped if pause is missing)
  bodies    1 MiB / 100 MiB uploads and downloads streamed; throughput + peak RSS (all proxies)
  conns     10,000 idle keep-alive client connections held; RSS per connection (all proxies)
  services  1, 100, 10,000 deployed services; req/s must stay flat (ours)
  tls       HTTPS with one static certificate, ours vs nginx / HAProxy / Caddy: keep-alive req/s,
            new-handshake req/s (Connection: close) and a burst of new connections (h2load --h1)
  h2        HTTP/2 over TLS (same certificate and backends): ``h2load -c 50 -m 10`` against ours,
            nginx (``http2``), HAProxy (``alpn h2``) and Caddy; req/s and CPU us/request
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import re
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import traceback
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from . import report, wrk
from .backend import Backend, free_port, make_big_files, start_backend, stop_process
from .peers import REPO, Ours, Proxy, make

HERE = Path(__file__).resolve().parent
PROXY_CPU = "0"
LOAD_CPU = "1"
ALL_SCENARIOS = ["peers", "deploy", "pause", "bodies", "conns", "services", "tls", "h2"]
# ours-httptools-metrics: the same proxy with `run --metrics-port` (the cost of counting; peers only)
ALL_PROXIES = ["direct", "nginx", "haproxy", "caddy", "ours-httptools", "ours-h11", "ours-httptools-metrics"]
SECONDARY = {"ours-h11": "ours-httptools", "ours-httptools-metrics": "ours-httptools"}


def log(msg: str) -> None:
    print(f"[bench {time.strftime('%H:%M:%S')}] {msg}", file=sys.stderr, flush=True)


@dataclass
class Ctx:
    args: argparse.Namespace
    workdir: Path
    files: Path
    backends: list[Backend]  # [A, B] used by every proxy
    alt_backends: list[Backend]  # [C, D] for deploy swaps
    body_backends: list[Backend]  # two python backends for the large-body scenario

    @property
    def addrs(self) -> list[str]:
        return [b.addr for b in self.backends]

    @property
    def proxy_cpu(self) -> str | None:
        """One worker: pinned to PROXY_CPU; more: every core (and they share them with wrk)."""
        return PROXY_CPU if self.args.workers == "1" else None

    @property
    def alt_addrs(self) -> list[str]:
        return [b.addr for b in self.alt_backends]


# --------------------------------------------------------------------------------------
# helpers
# --------------------------------------------------------------------------------------


class RssSampler:
    """Samples a proxy's RSS (whole process tree) every `interval` seconds in a thread."""

    def __init__(self, proxy: Proxy, interval: float = 0.05) -> None:
        self.proxy = proxy
        self.interval = interval
        self.peak = 0
        self._stop = threading.Event()
        self._t = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        while not self._stop.is_set():
            self.peak = max(self.peak, self.proxy.rss_kib())
            self._stop.wait(self.interval)

    def __enter__(self) -> RssSampler:
        self.peak = self.proxy.rss_kib()
        self._t.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._t.join()


def median_result(runs: list[dict[str, Any]]) -> dict[str, Any]:
    """Median of every numeric metric over repetitions; errors are summed."""
    out: dict[str, Any] = {"reps": len(runs)}
    if not runs:
        return out
    for k in runs[0]:
        vals = [r[k] for r in runs if isinstance(r.get(k), int | float)]
        if not vals:
            continue
        out[k] = sum(vals) if k.startswith("error") or k == "non_2xx" else statistics.median(vals)
    return out


def start_proxy(name: str, ctx: Ctx, backends: list[str] | None = None) -> Proxy | None:
    """Start a proxy; None (with a logged reason) if it can't run here."""
    wd = ctx.workdir / name
    n = 1
    while wd.exists():  # a fresh directory per start
        n += 1
        wd = ctx.workdir / f"{name}-{n}"
    p = make(name, wd, backends or ctx.addrs, ctx.proxy_cpu, workers=ctx.args.workers)
    try:
        p.start()
    except Exception as e:
        log(f"{name}: could not start ({e}); {p.stderr_tail(600)}")
        p.stop()
        return None
    # smoke request
    r = subprocess.run(
        ["curl", "-s", "-o", "/dev/null", "-w", "%{http_code}", "--max-time", "5", p.url],
        capture_output=True,
        text=True,
        check=False,
    )
    if r.stdout.strip() != "200":
        log(f"{name}: smoke request returned {r.stdout.strip() or 'nothing'}; skipping. {p.stderr_tail(600)}")
        p.stop()
        return None
    return p


@contextmanager
def running(names: list[str], ctx: Ctx) -> Iterator[dict[str, Proxy]]:
    started: dict[str, Proxy] = {}
    try:
        for n in names:
            p = start_proxy(n, ctx)
            if p is not None:
                started[n] = p
        yield started
    finally:
        for p in started.values():
            p.stop()


def ours_name(ctx: Ctx) -> str:
    return next(
        (p for p in ctx.args.proxies if p.startswith("ours") and p not in SECONDARY), "ours-httptools"
    )


def curl(args: list[str], timeout: float) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        ["taskset", "-c", LOAD_CPU, "curl", "-s", "--max-time", str(int(timeout)), *args],
        capture_output=True,
        text=True,
        timeout=timeout + 10,
        check=False,
    )


# --------------------------------------------------------------------------------------
# scenarios
# --------------------------------------------------------------------------------------


def scenario_peers(ctx: Ctx) -> dict[str, Any]:
    a = ctx.args
    runs: dict[str, dict[str, list[dict[str, Any]]]] = {}
    rss: dict[str, int] = {}
    with running(a.proxies, ctx) as ps:
        names = list(ps)
        log(f"peers: running {names}; warm-up")
        for n in names:
            wrk.run(ps[n].url, 50, 1, cpu=LOAD_CPU)
        for c in a.connections:
            for rep in range(a.reps):
                order = names if rep % 2 == 0 else names[::-1]  # A B C, C B A: cancels drift
                for n in order:
                    cpu0 = ps[n].cpu_seconds()
                    r = wrk.run(ps[n].url, c, a.duration, cpu=LOAD_CPU)
                    d = r.to_dict()
                    if ps[n].proc is not None and r.requests:
                        # CPU time the proxy spent per request: unlike req/s, barely affected by
                        # other load on a shared machine
                        d["cpu_us_per_req"] = (ps[n].cpu_seconds() - cpu0) / r.requests * 1e6
                    runs.setdefault(n, {}).setdefault(str(c), []).append(d)
                    log(
                        f"peers c={c} rep={rep} {n}: {r.rps:,.0f} req/s p99={r.p99_ms:.2f}ms err={r.errors}"
                        + (f" cpu={d['cpu_us_per_req']:.1f}us/req" if "cpu_us_per_req" in d else "")
                    )
                    time.sleep(0.3)
        for n, p in ps.items():
            rss[n] = p.rss_kib()
    med = {n: {c: median_result(v) for c, v in per.items()} for n, per in runs.items()}
    ratios: dict[str, dict[str, dict[str, dict[str, float]]]] = {}
    for o in [n for n in med if n.startswith("ours")]:
        for c in med[o]:
            for peer in med:
                if peer == o or c not in med[peer]:
                    continue
                pr = med[peer][c]
                ratios.setdefault(o, {}).setdefault(c, {})[peer] = {
                    "rps": med[o][c]["rps"] / pr["rps"] if pr.get("rps") else 0.0,
                    "p99": med[o][c]["p99_ms"] / pr["p99_ms"] if pr.get("p99_ms") else 0.0,
                    # >1: ours needs less CPU per request than the peer
                    "cpu_efficiency": (
                        pr["cpu_us_per_req"] / med[o][c]["cpu_us_per_req"]
                        if pr.get("cpu_us_per_req") and med[o][c].get("cpu_us_per_req")
                        else 0.0
                    ),
                }
    return {"runs": runs, "median": med, "ratios": ratios, "rss_kib_after": rss}


def measure(
    p: Proxy, url: str, c: int, duration: float, headers: dict[str, str] | None = None
) -> dict[str, Any]:
    """One wrk run plus the proxy's CPU time per request (robust against other load)."""
    cpu0 = p.cpu_seconds()
    r = wrk.run(url, c, duration, cpu=LOAD_CPU, headers=headers)
    d = r.to_dict()
    if p.proc is not None and r.requests:
        d["cpu_us_per_req"] = (p.cpu_seconds() - cpu0) / r.requests * 1e6
    return d


def _baseline(p: Proxy, ctx: Ctx) -> dict[str, Any]:
    return wrk.run(p.url, 50, ctx.args.duration, cpu=LOAD_CPU).to_dict()


def scenario_deploy(ctx: Ctx) -> dict[str, Any]:
    a = ctx.args
    p = start_proxy(ours_name(ctx), ctx)
    if p is None:
        return {"skipped": "our proxy did not start"}
    assert isinstance(p, Ours)
    try:
        baseline = _baseline(p, ctx)
        pairs = [ctx.alt_addrs, ctx.addrs]
        durations: list[float] = []
        failures: list[str] = []
        bg = wrk.Background(p.url, 50, max(60, a.swaps * 5), cpu=LOAD_CPU)
        t0 = time.perf_counter()
        try:
            time.sleep(1)
            for i in range(a.swaps):
                try:
                    durations.append(p.deploy("bench", pairs[i % 2]))
                except Exception as e:
                    failures.append(str(e)[:300])
                if time.perf_counter() - t0 > bg.max_duration - 5:
                    log("deploy: out of time, stopping swaps early")
                    break
            time.sleep(1)
        finally:
            under = bg.stop()
        log(
            f"deploy: {len(durations)} swaps, {under.errors} errors, p99 {under.p99_ms:.2f}ms "
            f"(baseline {baseline['p99_ms']:.2f}ms), {under.rps:,.0f} req/s"
        )
        return {
            "swaps": len(durations),
            "swap_failures": failures,
            "deploy_seconds": durations,
            "baseline": baseline,
            "under_swaps": under.to_dict(),
        }
    finally:
        p.stop()


def scenario_pause(ctx: Ctx) -> dict[str, Any]:
    a = ctx.args
    p = start_proxy(ours_name(ctx), ctx)
    if p is None:
        return {"skipped": "our proxy did not start"}
    assert isinstance(p, Ours)
    try:
        try:
            p.cli("pause", "--help", timeout=30)
            p.cli("resume", "--help", timeout=30)
        except Exception as e:
            return {"skipped": f"pause/resume not available: {str(e)[:200]}"}
        baseline = _baseline(p, ctx)
        pairs = [ctx.alt_addrs, ctx.addrs]
        cycles: list[dict[str, float]] = []
        failures: list[str] = []
        bg = wrk.Background(p.url, 50, max(60, a.pause_cycles * 10), cpu=LOAD_CPU, timeout_s=10)
        try:
            time.sleep(1)
            for i in range(a.pause_cycles):
                try:
                    t0 = time.perf_counter()
                    p.cli("pause", "bench", "--drain-timeout", "5s", "--max-pause", "10s")
                    t1 = time.perf_counter()
                    p.deploy("bench", pairs[i % 2])
                    t2 = time.perf_counter()
                    p.cli("resume", "bench")
                    t3 = time.perf_counter()
                    cycles.append(
                        {"pause_s": t1 - t0, "deploy_s": t2 - t1, "resume_s": t3 - t2, "paused_s": t3 - t0}
                    )
                except Exception as e:
                    failures.append(str(e)[:300])
                    try:
                        p.cli("resume", "bench")
                    except Exception:
                        pass
                time.sleep(0.5)
        finally:
            under = bg.stop()
        log(f"pause: {len(cycles)} cycles, {under.errors} errors, max {under.max_ms:.0f}ms")
        return {"cycles": cycles, "failures": failures, "baseline": baseline, "under_pause": under.to_dict()}
    finally:
        p.stop()


def scenario_bodies(ctx: Ctx) -> dict[str, Any]:
    """Uploads and downloads through every proxy. The backends here are the python ones: unlike
    nginx's `return 200`, which answers before the upload has arrived, they read the whole body
    first, as an application would (~1 GB/s upload sink, 1.5-3 GB/s download source on one core)."""
    a = ctx.args
    out: dict[str, Any] = {"backend": "python (uvloop+httptools), reads whole body before answering"}
    big = ctx.files / "bytes" / "100m"
    body_addrs = [b.addr for b in ctx.body_backends]
    for name in a.proxies:
        if SECONDARY.get(name) in a.proxies:  # variants of ours matter in the peers scenario only
            continue  # the parser only touches headers; one of ours is enough here
        p = start_proxy(name, ctx, body_addrs)
        if p is None:
            out[name] = {"skipped": "did not start"}
            continue
        res: dict[str, Any] = {"rss_idle_kib": p.rss_kib()}
        try:
            base = p.url.rstrip("/")
            # 1 MiB: wrk, 8 connections
            with RssSampler(p) as s:
                r = wrk.run(f"{base}/bytes/1m", 8, a.duration, cpu=LOAD_CPU, timeout_s=10)
            res["download_1m"] = {**r.to_dict(), "mib_s": r.transfer_mib_s, "peak_rss_kib": s.peak}
            with RssSampler(p) as s:
                r = wrk.run(f"{base}/upload", 8, a.duration, cpu=LOAD_CPU, method="POST", body_size=1 << 20)
            res["upload_1m"] = {**r.to_dict(), "mib_s": r.rps, "peak_rss_kib": s.peak}  # 1 MiB per request
            # 100 MiB: curl, streamed, a few sequential transfers
            for kind in ("download_100m", "upload_100m"):
                speeds, errors = [], 0
                with RssSampler(p) as s:
                    for _ in range(a.big_transfers):
                        if kind == "download_100m":
                            c = curl(
                                [
                                    "-o",
                                    "/dev/null",
                                    "-w",
                                    "%{http_code} %{speed_download}",
                                    f"{base}/bytes/100m",
                                ],
                                60,
                            )
                        else:
                            c = curl(
                                [
                                    "-o",
                                    "/dev/null",
                                    "-X",
                                    "POST",
                                    "-T",
                                    str(big),
                                    "-H",
                                    "Expect:",
                                    "-w",
                                    "%{http_code} %{speed_upload}",
                                    f"{base}/upload",
                                ],
                                60,
                            )
                        parts = c.stdout.split()
                        if c.returncode != 0 or len(parts) != 2 or parts[0] != "200":
                            errors += 1
                        else:
                            speeds.append(float(parts[1]) / (1 << 20))
                res[kind] = {
                    "mib_s": statistics.median(speeds) if speeds else 0.0,
                    "errors": errors,
                    "transfers": a.big_transfers,
                    "peak_rss_kib": s.peak,
                }
            log(
                f"bodies {name}: dl1m {res['download_1m']['mib_s']:.0f} MiB/s, "
                f"ul1m {res['upload_1m']['mib_s']:.0f} MiB/s, "
                f"dl100m {res['download_100m']['mib_s']:.0f} MiB/s, "
                f"ul100m {res['upload_100m']['mib_s']:.0f} MiB/s, RSS idle {res['rss_idle_kib']} KiB "
                f"peak {max(v['peak_rss_kib'] for k, v in res.items() if isinstance(v, dict))} KiB"
            )
        except Exception as e:
            res["error"] = f"{e}"
            log(f"bodies {name}: {traceback.format_exc()}")
        finally:
            p.stop()
        out[name] = res
    return out


def hold_idle(p: Proxy, n: int, hold_s: float) -> dict[str, Any]:
    cmd = [
        "taskset",
        "-c",
        LOAD_CPU,
        sys.executable,
        "-m",
        "benchmarks.idleconns",
        "--url",
        p.url,
        "-n",
        str(n),
        "--max-seconds",
        "240",
        "--timeout",
        "5",
    ]
    before = p.rss_kib()
    proc = subprocess.Popen(cmd, cwd=REPO, stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    assert proc.stdin is not None and proc.stdout is not None
    try:
        line = proc.stdout.readline().split()
        if not line or line[0] != "HELD":
            raise RuntimeError(f"idle client failed: {line}")
        time.sleep(hold_s)
        held = p.rss_kib()
        established = int(
            subprocess.run(
                f"ss -Htn state established '( dport = :{p.port} )' | wc -l",
                shell=True,
                capture_output=True,
                text=True,
                check=False,
            ).stdout.strip()
            or 0
        )
        proc.stdin.write("go\n")
        proc.stdin.flush()
        final = json.loads(proc.stdout.readline())
        proc.wait(30)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    return {
        "n": n,
        "rss_before_kib": before,
        "rss_held_kib": held,
        "kib_per_conn": (held - before) / n,
        "established_while_held": established,
        "connect_seconds": float(line[3]),
        **final,
    }


def scenario_conns(ctx: Ctx) -> dict[str, Any]:
    a = ctx.args
    out: dict[str, Any] = {}
    for name in a.proxies:
        if name == "direct" or SECONDARY.get(name) in a.proxies:
            continue
        p = start_proxy(name, ctx)
        if p is None:
            out[name] = {"skipped": "did not start"}
            continue
        try:
            wrk.run(p.url, 50, 1, cpu=LOAD_CPU)  # warm the upstream pool first
            out[name] = hold_idle(p, a.idle_conns, a.hold)
            r = out[name]
            log(
                f"conns {name}: {r['n']} held, {r['kib_per_conn']:.2f} KiB/conn, errors {r['errors']} "
                f"(RSS {r['rss_before_kib']} -> {r['rss_held_kib']} KiB)"
            )
        except Exception as e:
            out[name] = {"error": str(e)}
            log(f"conns {name}: {traceback.format_exc()}")
        finally:
            p.stop()
    return out


def _clone_state(state: Any, n: int) -> Any:
    """Given a state with services svc0 and svc1 deployed, make one with svc0..svc{n-1}:
    find the container whose items/values mention svc0/svc1 and replicate svc1's entry with the
    name and host replaced. Works for a list of services or a dict keyed by name."""

    def mentions(x: Any, s: str) -> bool:
        return s in json.dumps(x)

    def clone(x: Any, i: int) -> Any:
        return json.loads(json.dumps(x).replace("svc1", f"svc{i}"))

    if (
        isinstance(state, list)
        and len(state) == 2
        and mentions(state[1], "svc1")
        and mentions(state[0], "svc0")
    ):
        return [state[0], *(clone(state[1], i) for i in range(1, n))]
    if isinstance(state, dict) and set(state) == {"svc0", "svc1"}:
        return {"svc0": state["svc0"], **{f"svc{i}": clone(state["svc1"], i) for i in range(1, n)}}
    if isinstance(state, dict):
        for k, v in state.items():
            if mentions(v, "svc0") and mentions(v, "svc1"):
                return {**state, k: _clone_state(v, n)}
    if isinstance(state, list):
        return [(_clone_state(v, n) if mentions(v, "svc0") and mentions(v, "svc1") else v) for v in state]
    raise ValueError("could not find the service list in the state file")


def wait_http(url: str, host: str, timeout: float) -> None:
    """Until url answers 200 for Host: host."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        r = subprocess.run(
            [
                "curl",
                "-s",
                "--max-time",
                "5",
                "-o",
                "/dev/null",
                "-w",
                "%{http_code}",
                "-H",
                f"Host: {host}",
                url,
            ],
            capture_output=True,
            text=True,
            check=False,
        )
        if r.stdout.strip() == "200":
            return
        time.sleep(0.2)
    raise TimeoutError(f"{url} (Host: {host}) did not answer 200 within {timeout}s")


def scenario_services(ctx: Ctx) -> dict[str, Any]:
    a = ctx.args
    out: dict[str, Any] = {"counts": {}}
    name = ours_name(ctx)
    for count in a.service_counts:
        p = make(name, ctx.workdir / f"services-{count}", ctx.addrs, ctx.proxy_cpu, workers=ctx.args.workers)
        assert isinstance(p, Ours)
        try:
            # one target per service (the common Kamal shape: one container per host), so each
            # healthy service's health checker is idle as in kamal-proxy; svc0 -> A, others -> B
            p.start_daemon()
            p.deploy("svc0", ctx.addrs[:1], "--host", "svc0.example.com")
            method = "cli"
            if count > 1:
                p.deploy("svc1", ctx.addrs[1:2], "--host", "svc1.example.com")
            if count > 2:
                # deploying 10,000 services through the CLI one process at a time takes far too long,
                # so clone svc1 in the persisted state and let the daemon restore it at start
                state_file = p.home / ".config" / "kamal-proxy" / "kamal-proxy.state"
                p.stop()
                state = json.loads(state_file.read_text())
                state_file.write_text(json.dumps(_clone_state(state, count)))
                t0 = time.perf_counter()
                p.start_daemon(timeout=300)
                wait_http(p.url, "svc0.example.com", 120)
                out.setdefault("restore_seconds", {})[str(count)] = time.perf_counter() - t0
                method = "state-file"
            last = f"svc{count - 1}.example.com"
            res: dict[str, Any] = {"method": method, "rss_kib": p.rss_kib()}
            for host in dict.fromkeys(["svc0.example.com", last]):
                wrk.run(p.url, 50, 1, cpu=LOAD_CPU, headers={"Host": host})
                runs = [measure(p, p.url, 50, a.duration, headers={"Host": host}) for _ in range(a.reps)]
                res["first" if host.startswith("svc0.") else "last"] = median_result(runs)
            res.setdefault("last", res["first"])
            nf = subprocess.run(
                [
                    "curl",
                    "-s",
                    "-o",
                    "/dev/null",
                    "-w",
                    "%{http_code}",
                    "-H",
                    "Host: nope.example.com",
                    p.url,
                ],
                capture_output=True,
                text=True,
                check=False,
            ).stdout
            res["unknown_host_status"] = nf
            out["counts"][str(count)] = res
            log(
                f"services {count}: {res['first']['rps']:,.0f} req/s (svc0), {res['last']['rps']:,.0f} req/s "
                f"(last), CPU {res['first'].get('cpu_us_per_req', 0):.1f}/{res['last'].get('cpu_us_per_req', 0):.1f}"
                f" us/req, errors {res['first']['errors'] + res['last']['errors']}, RSS {res['rss_kib']} KiB"
            )
        except Exception as e:
            out["counts"][str(count)] = {"error": str(e)[:500]}
            log(f"services {count}: {traceback.format_exc()}")
        finally:
            p.stop()
    return out


def make_cert(d: Path) -> tuple[Path, Path]:
    d.mkdir(parents=True, exist_ok=True)
    cert, key = d / "cert.pem", d / "key.pem"
    subprocess.run(
        [
            "openssl",
            "req",
            "-x509",
            "-newkey",
            "ec",
            "-pkeyopt",
            "ec_paramgen_curve:prime256v1",
            "-nodes",
            "-days",
            "2",
            "-subj",
            "/CN=localhost",
            "-addext",
            "subjectAltName=DNS:localhost",
            "-keyout",
            str(key),
            "-out",
            str(cert),
        ],
        check=True,
        capture_output=True,
        timeout=30,
    )
    return cert, key


NGINX_TLS_SERVER = """
    server {{
        listen 127.0.0.1:{port} ssl backlog=4096;
        ssl_certificate {cert};
        ssl_certificate_key {key};
        ssl_protocols TLSv1.2 TLSv1.3;{http2}
        location / {{
            proxy_pass http://backends;
            proxy_http_version 1.1;
            proxy_set_header Connection "";
            proxy_set_header Host $host;
            proxy_set_header X-Forwarded-For $proxy_add_x_forwarded_for;
            proxy_set_header X-Forwarded-Proto $scheme;
            proxy_set_header X-Request-ID $request_id;
        }}
    }}
"""

HAPROXY_TLS_FRONTEND = """frontend fe_tls
    bind 127.0.0.1:{port} ssl crt {pem} alpn {alpn}
    http-request set-header X-Forwarded-Proto https
    http-request set-header X-Request-ID %[uuid]
    default_backend be
"""

CADDY_TLS_SITE = """https://localhost:{port} {{
    bind 127.0.0.1
    tls {cert} {key}
    log {{
        output file {w}/access-tls.log
        format json
    }}
    reverse_proxy {servers} {{
        lb_policy round_robin
        flush_interval -1
        header_up X-Request-ID {{http.request.uuid}}
    }}
}}
"""

TLS_PEERS = ("nginx", "haproxy", "caddy")


def _tls_ours(ctx: Ctx, cert: Path, key: Path) -> tuple[Proxy, str]:
    ours = make(ours_name(ctx), ctx.workdir / "tls-ours", ctx.addrs, PROXY_CPU)
    assert isinstance(ours, Ours)
    ours.start_daemon()
    ours.deploy(
        "bench",
        ctx.addrs,
        "--host",
        "localhost",
        "--tls",
        "--tls-certificate-path",
        str(cert),
        "--tls-private-key-path",
        str(key),
    )
    return ours, f"https://localhost:{ours.https_port}/"


def _tls_peer(name: str, ctx: Ctx, cert: Path, key: Path, *, h2: bool = False) -> tuple[Proxy, str]:
    """nginx / HAProxy / Caddy with an HTTPS listener on the same certificate as ours (Caddy always
    offers h2; ``h2`` turns it on for nginx and HAProxy)."""
    from . import peers

    port = free_port()
    workdir = ctx.workdir / f"tls-{name}"
    p: Proxy
    if name == "nginx":
        p = peers.Nginx(workdir, ctx.addrs, PROXY_CPU)
        http2 = "\n        http2 on;" if h2 and _nginx_has_http2_directive() else ""
        listen_h2 = " http2" if h2 and not http2 else ""
        p.extra = NGINX_TLS_SERVER.format(port=port, cert=cert, key=key, http2=http2).replace(
            "ssl backlog", f"ssl{listen_h2} backlog"
        )
    elif name == "haproxy":
        pem = cert.parent / "haproxy.pem"
        pem.write_bytes(cert.read_bytes() + key.read_bytes())
        p = peers.HAProxy(workdir, ctx.addrs, PROXY_CPU)
        p.extra = HAPROXY_TLS_FRONTEND.format(port=port, pem=pem, alpn="h2,http/1.1" if h2 else "http/1.1")
    else:
        p = peers.Caddy(workdir, ctx.addrs, PROXY_CPU)
        p.extra = CADDY_TLS_SITE.format(port=port, cert=cert, key=key, w=workdir, servers=" ".join(ctx.addrs))
    p.start()
    wait_port_open(port)
    return p, f"https://localhost:{port}/"


def _nginx_has_http2_directive() -> bool:
    """nginx 1.25.1+ spells HTTP/2 ``http2 on;``; older ones (Debian 12: 1.22) ``listen ... http2``."""
    r = subprocess.run(["nginx", "-v"], capture_output=True, text=True, check=False)
    m = re.search(r"nginx/(\d+)\.(\d+)\.(\d+)", r.stderr)
    return bool(m) and tuple(map(int, m.groups())) >= (1, 25, 1)  # type: ignore[union-attr]


def wait_port_open(port: int, timeout: float = 20) -> None:
    import socket

    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=1).close()
            return
        except OSError:
            time.sleep(0.05)
    raise RuntimeError(f"port {port} did not open")


def _h2load_new_connections(url: str, ctx: Ctx, clients: int) -> dict[str, Any]:
    """``clients`` new HTTP/1.1 TLS connections with one request each: full handshakes per second."""
    cmd = ["taskset", "-c", LOAD_CPU, "h2load", "--h1", "-c", str(clients), "-n", str(clients), url]
    r = subprocess.run(cmd, capture_output=True, text=True, timeout=120, check=False)
    return report.parse_h2load(r.stdout)


def _start_tls_proxies(
    ctx: Ctx, cert: Path, key: Path, procs: dict[str, tuple[Proxy, str]], *, h2: bool
) -> str | None:
    """Start ours and the TLS peers on one certificate into ``procs`` (the caller stops them);
    returns why the scenario is skipped, if ours cannot serve."""
    try:
        ours, url = _tls_ours(ctx, cert, key)
        procs[ours.label] = (ours, url)
    except Exception as e:
        return f"TLS deploy failed on ours: {str(e)[:300]}"
    for name in TLS_PEERS:
        if name not in ctx.args.proxies:
            continue
        try:
            p, url = _tls_peer(name, ctx, cert, key, h2=h2)
            procs[p.label] = (p, url)
        except Exception as e:
            log(f"{'h2' if h2 else 'tls'}: {name} not started: {str(e)[:300]}")
    return None


def scenario_tls(ctx: Ctx) -> dict[str, Any]:
    """HTTPS on one static ECDSA certificate, ours vs nginx, HAProxy and Caddy: keep-alive req/s
    (wrk), new-handshake req/s (wrk with ``Connection: close``: every request a new TLS connection,
    no session resumption) and a burst of new connections (``h2load --h1``)."""
    a = ctx.args
    cert, key = make_cert(ctx.workdir / "tls")
    out: dict[str, Any] = {"runs": {}, "handshakes": {}, "h2load": {}}
    procs: dict[str, tuple[Proxy, str]] = {}
    try:
        skipped = _start_tls_proxies(ctx, cert, key, procs, h2=False)
        if skipped:
            out["skipped"] = skipped
            return out
        for _, url in procs.values():
            wrk.run(url, 50, 1, cpu=LOAD_CPU)  # warm up
        names = list(procs)
        for c in a.connections:
            for rep in range(a.reps):
                for name in names if rep % 2 == 0 else names[::-1]:
                    p, url = procs[name]
                    r = measure(p, url, c, a.duration)
                    out["runs"].setdefault(name, {}).setdefault(str(c), []).append(r)
                    log(f"tls c={c} rep={rep} {name}: {r['rps']:,.0f} req/s p99={r['p99_ms']:.2f}ms")
        for rep in range(a.reps):
            for name in names if rep % 2 == 0 else names[::-1]:
                p, url = procs[name]
                r = measure(p, url, 50, a.duration, headers={"Connection": "close"})
                out["handshakes"].setdefault(name, []).append(r)
                log(f"tls handshakes rep={rep} {name}: {r['rps']:,.0f} req/s")
        out["median"] = {n: {c: median_result(v) for c, v in per.items()} for n, per in out["runs"].items()}
        out["handshakes_median"] = {n: median_result(v) for n, v in out["handshakes"].items()}
        if shutil.which("h2load"):
            for name, (_, url) in procs.items():
                out["h2load"][name] = _h2load_new_connections(url, ctx, 200)
                log(f"tls h2load --h1 200 new connections {name}: {out['h2load'][name]}")
        return out
    finally:
        for p, _ in procs.values():
            p.stop()


def _h2load(p: Proxy, url: str, duration: float, *, clients: int = 50, streams: int = 10) -> dict[str, Any]:
    """``h2load -c clients -m streams`` for ``duration`` seconds, plus the proxy's CPU per request."""
    cpu0 = p.cpu_seconds()
    cmd = ["taskset", "-c", LOAD_CPU, "h2load", "-c", str(clients), "-m", str(streams), "-t", "1"]
    cmd += ["-D", str(max(1, round(duration))), "--warm-up-time=1", url]
    r = subprocess.run(cmd, capture_output=True, text=True, timeout=duration + 120, check=False)
    d = report.parse_h2load(r.stdout)
    done = d.get("succeeded") or 0
    if p.proc is not None and done:
        d["cpu_us_per_req"] = (p.cpu_seconds() - cpu0) / done * 1e6
    if not d.get("rps"):
        d["error"] = (r.stdout + r.stderr)[-500:]
    return d


def scenario_h2(ctx: Ctx) -> dict[str, Any]:
    """HTTP/2 over TLS: ``h2load -c 50 -m 10`` against ours, nginx, HAProxy and Caddy, interleaved."""
    a = ctx.args
    if not shutil.which("h2load"):
        return {"skipped": "h2load is not installed (Debian nghttp2-client)"}
    cert, key = make_cert(ctx.workdir / "h2")
    out: dict[str, Any] = {"runs": {}}
    procs: dict[str, tuple[Proxy, str]] = {}
    try:
        skipped = _start_tls_proxies(ctx, cert, key, procs, h2=True)
        if skipped:
            out["skipped"] = skipped
            return out
        names = list(procs)
        for rep in range(a.reps):
            for name in names if rep % 2 == 0 else names[::-1]:
                p, url = procs[name]
                r = _h2load(p, url, a.duration)
                out["runs"].setdefault(name, []).append(r)
                log(
                    f"h2 rep={rep} {name}: {r.get('rps', 0):,.0f} req/s cpu={r.get('cpu_us_per_req', 0):.1f}us/req"
                )
        out["median"] = {n: _h2_median(v) for n, v in out["runs"].items()}
        return out
    finally:
        for p, _ in procs.values():
            p.stop()


def _h2_median(runs: list[dict[str, Any]]) -> dict[str, float]:
    out: dict[str, float] = {}
    for key in ("rps", "cpu_us_per_req"):
        values = [r[key] for r in runs if key in r]
        if values:
            out[key] = statistics.median(values)
    return out


SCENARIOS: dict[str, Callable[[Ctx], dict[str, Any]]] = {
    "peers": scenario_peers,
    "deploy": scenario_deploy,
    "pause": scenario_pause,
    "bodies": scenario_bodies,
    "conns": scenario_conns,
    "services": scenario_services,
    "tls": scenario_tls,
    "h2": scenario_h2,
}


# --------------------------------------------------------------------------------------
# main
# --------------------------------------------------------------------------------------


def cpu_busy(seconds: float = 1.0) -> dict[str, float]:
    """Whole-machine CPU use over `seconds` (from /proc/stat): busy% and steal% of all cores.
    Measured while none of our load runs, it shows how much *other* work shares the machine."""

    def snap() -> list[int]:
        with open("/proc/stat") as f:
            return [int(x) for x in f.readline().split()[1:]]

    a = snap()
    time.sleep(seconds)
    b = snap()
    d = [y - x for x, y in zip(a, b, strict=False)]
    total = sum(d) or 1
    idle = d[3] + (d[4] if len(d) > 4 else 0)
    steal = d[7] if len(d) > 7 else 0
    return {"busy_pct": round(100 * (total - idle) / total, 1), "steal_pct": round(100 * steal / total, 1)}


def wait_quiet(max_wait: float, threshold: float = 10.0) -> dict[str, float]:
    """Wait (up to max_wait s) until other processes use < threshold% of the machine."""
    deadline = time.monotonic() + max_wait
    while True:
        b = cpu_busy()
        if b["busy_pct"] < threshold or time.monotonic() >= deadline:
            return b
        log(f"machine busy ({b['busy_pct']}% CPU used by other processes); waiting for it to calm down")


def machine_info(workers: str = "1") -> dict[str, Any]:
    def cmd(*c: str) -> str:
        try:
            p = subprocess.run(list(c), capture_output=True, text=True, timeout=10, check=False)
            return (p.stdout + p.stderr).strip().splitlines()[0]
        except Exception:
            return "n/a"

    cpu = "unknown"
    try:
        cpu = next(
            line.split(":", 1)[1].strip() for line in open("/proc/cpuinfo") if line.startswith("model name")
        )
    except (OSError, StopIteration):
        pass
    mem_gib = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / (1 << 30)
    return {
        "cpu": cpu,
        "cores": os.cpu_count(),
        "mem_gib": round(mem_gib, 1),
        "kernel": platform.release(),
        "python": platform.python_version(),
        "nginx": cmd("nginx", "-v"),
        "haproxy": cmd("haproxy", "-v"),
        "caddy": cmd("caddy", "version"),
        "wrk": cmd("wrk", "--version"),
        "pinning": f"proxy under test on core {PROXY_CPU}; wrk and backends on core {LOAD_CPU}"
        if workers == "1"
        else f"{workers} workers of ours and nginx on every core; wrk and backends on core {LOAD_CPU}",
    }


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    ap = argparse.ArgumentParser(
        prog="python -m benchmarks.run",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    ap.add_argument("--quick", action="store_true", help="~2-minute run: shorter runs, fewer reps/swaps")
    ap.add_argument("--scenarios", default=",".join(ALL_SCENARIOS), help="comma list of %(default)s")
    ap.add_argument("--proxies", default=",".join(ALL_PROXIES), help="comma list of %(default)s")
    ap.add_argument("--connections", default="1,50,500", help="wrk connection counts")
    ap.add_argument("--reps", type=int, help="repetitions per (proxy, c) (default 5, quick 2)")
    ap.add_argument("--duration", type=float, help="seconds per wrk run (default 10, quick 3)")
    ap.add_argument("--swaps", type=int, help="deploy swaps under load (default 100, quick 20)")
    ap.add_argument("--pause-cycles", type=int, help="pause/deploy/resume cycles (default 20, quick 5)")
    ap.add_argument("--idle-conns", type=int, default=10000, help="idle keep-alive connections to hold")
    ap.add_argument("--hold", type=float, help="seconds to hold idle connections (default 10, quick 3)")
    ap.add_argument("--service-counts", default="1,100,10000")
    ap.add_argument("--big-transfers", type=int, help="100 MiB transfers per direction (default 5, quick 2)")
    ap.add_argument("--backend", choices=["nginx", "python"], default="nginx", help="backend implementation")
    ap.add_argument(
        "--workers",
        default="1",
        help="worker processes of ours and of nginx: N or auto (all cores; then nothing is pinned); "
        "HAProxy and Caddy keep one thread",
    )
    ap.add_argument("--out", type=Path, default=HERE / "results", help="results directory")
    ap.add_argument("--no-chart", action="store_true")
    ap.add_argument(
        "--update-readme", action="store_true", help="put this run's table and charts in benchmarks/README.md"
    )
    ap.add_argument(
        "--wait-quiet",
        type=float,
        default=20,
        help="before each scenario, wait up to this many seconds for other processes to go idle",
    )
    a = ap.parse_args(argv)
    q = a.quick
    a.reps = a.reps or (2 if q else 5)
    a.duration = a.duration or (2.0 if q else 10.0)
    a.swaps = a.swaps or (10 if q else 100)
    a.pause_cycles = a.pause_cycles or (3 if q else 20)
    a.hold = a.hold or (2.0 if q else 10.0)
    a.big_transfers = a.big_transfers or (1 if q else 5)
    if a.workers != "auto" and not (a.workers.isdigit() and int(a.workers) >= 1):
        ap.error("--workers must be a positive number or auto")
    a.scenarios = [s for s in a.scenarios.split(",") if s]
    a.proxies = [p for p in a.proxies.split(",") if p]
    a.connections = [int(c) for c in a.connections.split(",")]
    a.service_counts = [int(c) for c in a.service_counts.split(",")]
    for s in a.scenarios:
        if s not in SCENARIOS:
            ap.error(f"unknown scenario {s}")
    if q and "--connections" not in (argv or sys.argv):
        a.connections = [1, 50, 500]
    return a


def _terminate(signum: int, frame: object) -> None:
    raise SystemExit(128 + signum)  # run the finally blocks: stop every process we started


def main(argv: list[str] | None = None) -> int:
    a = parse_args(argv)
    signal.signal(signal.SIGTERM, _terminate)
    signal.signal(signal.SIGHUP, _terminate)
    for tool in ("wrk", "taskset", "curl"):
        if not shutil.which(tool):
            log(f"missing {tool}: run benchmarks/setup.sh")
            return 2
    if (os.cpu_count() or 1) < 2:
        log("warning: fewer than 2 cores, pinning is meaningless")
    workdir = Path(tempfile.mkdtemp(prefix="kp-bench-"))
    workdir.chmod(0o755)  # nginx workers run as nobody and serve files from here
    files = make_big_files(workdir / "files")
    results: dict[str, Any] = {
        "meta": {
            "started": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
            "args": {k: (str(v) if isinstance(v, Path) else v) for k, v in vars(a).items()},
            "machine": machine_info(a.workers),
            "backend": a.backend,
        }
    }
    backends: list[Backend] = []
    t_start = time.perf_counter()
    try:
        backends = [start_backend(a.backend, workdir / f"backend{i}", LOAD_CPU, files) for i in range(4)]
        if "bodies" in a.scenarios:
            backends += [
                start_backend("python", workdir / f"pybackend{i}", LOAD_CPU, files) for i in range(2)
            ]
        ctx = Ctx(a, workdir, files, backends[:2], backends[2:4], backends[4:])
        for s in a.scenarios:
            busy = wait_quiet(a.wait_quiet)
            log(
                f"=== scenario {s} (other load on the machine: {busy['busy_pct']}% CPU, steal {busy['steal_pct']}%)"
            )
            t0 = time.perf_counter()
            try:
                results[s] = SCENARIOS[s](ctx)
            except Exception as e:
                log(f"scenario {s} failed: {traceback.format_exc()}")
                results[s] = {"error": str(e)[:1000]}
            results[s]["seconds"] = round(time.perf_counter() - t0, 1)
            results[s]["other_load_before"] = busy
    finally:
        for b in backends:
            stop_process(b.proc)
        shutil.rmtree(workdir, ignore_errors=True)
    results["meta"]["seconds"] = round(time.perf_counter() - t_start, 1)
    a.out.mkdir(parents=True, exist_ok=True)
    stamp = time.strftime("%Y%m%d-%H%M%S")
    md = report.markdown(results)
    paths = report.write(results, md, a.out, stamp, with_charts=not a.no_chart)
    print(md)
    if a.update_readme:
        report.update_readme(HERE / "README.md", md, paths)
    log("wrote " + ", ".join(str(p.relative_to(REPO)) if p.is_relative_to(REPO) else str(p) for p in paths))
    return 0


if __name__ == "__main__":
    sys.exit(main())
