"""Run wrk (HTTP/1.1 keep-alive load) and parse its output.

Every run is bounded: ``-d`` caps the load itself and the subprocess gets a hard timeout on top.
Latency percentiles come from ``--latency``; a small Lua ``done()`` hook additionally prints exact
numbers (microseconds, p99.9, error breakdown) on a marker line, which we prefer when present.
The hook only defines ``done`` (and optionally static method/body/headers), so it does not slow
wrk's request loop down.
"""

from __future__ import annotations

import re
import signal
import subprocess
import tempfile
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

MARK = "@@WRKJSON@@"

DONE_LUA = """
done = function(summary, latency, requests)
  local e = summary.errors
  io.write(string.format(
    "%s requests=%d duration_us=%d bytes=%d connect=%d read=%d write=%d status=%d timeout=%d "
    .. "p50=%d p75=%d p90=%d p99=%d p999=%d max=%d mean=%.1f\\n",
    "@@WRKJSON@@", summary.requests, summary.duration, summary.bytes,
    e.connect, e.read, e.write, e.status, e.timeout,
    latency:percentile(50), latency:percentile(75), latency:percentile(90),
    latency:percentile(99), latency:percentile(99.9), latency.max, latency.mean))
end
"""


@dataclass
class WrkResult:
    rps: float = 0.0
    requests: int = 0
    duration_s: float = 0.0
    bytes: int = 0
    transfer_mib_s: float = 0.0
    p50_ms: float = 0.0
    p75_ms: float = 0.0
    p90_ms: float = 0.0
    p99_ms: float = 0.0
    p999_ms: float = 0.0
    max_ms: float = 0.0
    mean_ms: float = 0.0
    errors_connect: int = 0
    errors_read: int = 0
    errors_write: int = 0
    errors_timeout: int = 0
    non_2xx: int = 0
    raw: str = field(default="", repr=False)

    @property
    def errors(self) -> int:
        return self.errors_connect + self.errors_read + self.errors_write + self.errors_timeout + self.non_2xx

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d.pop("raw")
        d["errors"] = self.errors
        return d


_TIME_UNITS = {"us": 1e-3, "ms": 1.0, "s": 1e3, "m": 60e3, "h": 3600e3}
_SIZE_UNITS = {"B": 1, "KB": 1 << 10, "MB": 1 << 20, "GB": 1 << 30, "TB": 1 << 40}


def _ms(text: str) -> float:
    m = re.fullmatch(r"([\d.]+)(us|ms|s|m|h)", text.strip())
    if not m:
        raise ValueError(f"bad wrk time {text!r}")
    return float(m.group(1)) * _TIME_UNITS[m.group(2)]


def _bytes(text: str) -> float:
    m = re.fullmatch(r"([\d.]+)(B|KB|MB|GB|TB)", text.strip())
    if not m:
        raise ValueError(f"bad wrk size {text!r}")
    return float(m.group(1)) * _SIZE_UNITS[m.group(2)]


def parse(output: str) -> WrkResult:
    """Parse wrk's human output (with --latency), then override with the Lua marker line if any."""
    r = WrkResult(raw=output)
    if m := re.search(r"Latency\s+(\S+)\s+(\S+)\s+(\S+)\s+", output):
        r.mean_ms = _ms(m.group(1))
        r.max_ms = _ms(m.group(3))
    for pct, attr in (("50", "p50_ms"), ("75", "p75_ms"), ("90", "p90_ms"), ("99", "p99_ms")):
        if m := re.search(rf"^\s+{pct}%\s+(\S+)\s*$", output, re.M):
            setattr(r, attr, _ms(m.group(1)))
    if m := re.search(r"(\d+) requests in ([\d.]+\w+), ([\d.]+\w+) read", output):
        r.requests = int(m.group(1))
        r.duration_s = _ms(m.group(2)) / 1e3
        r.bytes = int(_bytes(m.group(3)))
    if m := re.search(r"Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)", output):
        r.errors_connect, r.errors_read, r.errors_write, r.errors_timeout = map(int, m.groups())
    if m := re.search(r"Non-2xx or 3xx responses: (\d+)", output):
        r.non_2xx = int(m.group(1))
    if m := re.search(r"Requests/sec:\s+([\d.]+)", output):
        r.rps = float(m.group(1))
    if m := re.search(r"Transfer/sec:\s+(\S+)", output):
        r.transfer_mib_s = _bytes(m.group(1)) / (1 << 20)

    for line in output.splitlines():
        if line.startswith(MARK):
            kv = dict(item.split("=", 1) for item in line[len(MARK) :].split())
            r.requests = int(kv["requests"])
            r.duration_s = int(kv["duration_us"]) / 1e6
            r.bytes = int(kv["bytes"])
            r.errors_connect = int(kv["connect"])
            r.errors_read = int(kv["read"])
            r.errors_write = int(kv["write"])
            r.errors_timeout = int(kv["timeout"])
            r.non_2xx = int(kv["status"])
            for key, attr in (
                ("p50", "p50_ms"),
                ("p75", "p75_ms"),
                ("p90", "p90_ms"),
                ("p99", "p99_ms"),
                ("p999", "p999_ms"),
                ("max", "max_ms"),
            ):
                setattr(r, attr, int(kv[key]) / 1e3)
            r.mean_ms = float(kv["mean"]) / 1e3
            if r.duration_s > 0:
                r.rps = r.requests / r.duration_s
                r.transfer_mib_s = r.bytes / r.duration_s / (1 << 20)
    return r


def write_script(method: str = "GET", body_size: int = 0, headers: dict[str, str] | None = None) -> Path:
    """A wrk Lua script: static method/body/headers + the done() reporter."""
    lines = [f'wrk.method = "{method}"']
    if body_size:
        lines.append(f'wrk.body = string.rep("x", {body_size})')
        lines.append('wrk.headers["Content-Type"] = "application/octet-stream"')
    for k, v in (headers or {}).items():
        lines.append(f'wrk.headers["{k}"] = "{v}"')
    f = tempfile.NamedTemporaryFile("w", suffix=".lua", prefix="bench-wrk-", delete=False)
    f.write("\n".join(lines) + "\n" + DONE_LUA)
    f.close()
    return Path(f.name)


def command(
    url: str,
    connections: int,
    duration: float,
    threads: int = 1,
    cpu: str | None = "1",
    script: Path | None = None,
    timeout_s: float = 5.0,
    headers: dict[str, str] | None = None,
) -> list[str]:
    cmd = ["taskset", "-c", cpu] if cpu is not None else []
    cmd += [
        "wrk",
        "--latency",
        "-t",
        str(max(1, min(threads, connections))),
        "-c",
        str(connections),
        "-d",
        f"{max(1, round(duration))}s",
        "--timeout",
        f"{max(1, round(timeout_s))}s",
    ]
    for k, v in (headers or {}).items():
        cmd += ["-H", f"{k}: {v}"]
    if script is not None:
        cmd += ["-s", str(script)]
    cmd.append(url)
    return cmd


def run(
    url: str,
    connections: int,
    duration: float,
    *,
    cpu: str | None = "1",
    method: str = "GET",
    body_size: int = 0,
    headers: dict[str, str] | None = None,
    timeout_s: float = 5.0,
) -> WrkResult:
    """One bounded wrk run; returns the parsed result (raw output kept in .raw)."""
    script = write_script(method, body_size)
    try:
        cmd = command(
            url, connections, duration, cpu=cpu, script=script, timeout_s=timeout_s, headers=headers
        )
        p = subprocess.run(cmd, capture_output=True, text=True, timeout=duration + 30, check=False)
        out = p.stdout + ("\n" + p.stderr if p.stderr else "")
        if p.returncode != 0 and MARK not in out:
            raise RuntimeError(f"wrk failed ({p.returncode}): {out[-2000:]}")
        return parse(out)
    finally:
        script.unlink(missing_ok=True)


class Background:
    """wrk running in the background (e.g. during deploy swaps); stop() sends SIGINT, which makes
    wrk stop early and still print its statistics and run done()."""

    def __init__(
        self,
        url: str,
        connections: int,
        max_duration: float,
        *,
        cpu: str | None = "1",
        headers: dict[str, str] | None = None,
        timeout_s: float = 5.0,
    ) -> None:
        self.max_duration = max_duration
        self.script = write_script()
        cmd = command(
            url, connections, max_duration, cpu=cpu, script=self.script, timeout_s=timeout_s, headers=headers
        )
        self.proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)

    def stop(self) -> WrkResult:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGINT)
        try:
            out, _ = self.proc.communicate(timeout=30)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            out, _ = self.proc.communicate()
        finally:
            self.script.unlink(missing_ok=True)
        return parse(out or "")
