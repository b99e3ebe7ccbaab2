"""Reports: Markdown (stdout + results/latest.md), JSON (results/<stamp>.json + latest.json) and
one matplotlib PNG per scenario (results/<scenario>.png)."""

from __future__ import annotations

import json
import re
from collections.abc import Callable
from pathlib import Path
from typing import Any

OURS = "ours-httptools"


def _f(x: Any, nd: int = 2) -> str:
    if x is None or x == "":
        return "-"
    if isinstance(x, float):
        if abs(x) >= 1000:
            return f"{x:,.0f}"
        return f"{x:.{nd}f}"
    if isinstance(x, int):
        return f"{x:,}"
    return str(x)


def _table(header: list[str], rows: list[list[Any]]) -> str:
    lines = ["| " + " | ".join(header) + " |", "|" + "|".join("---" for _ in header) + "|"]
    lines += ["| " + " | ".join(_f(c) for c in r) + " |" for r in rows]
    return "\n".join(lines)


def parse_h2load(out: str) -> dict[str, Any]:
    r: dict[str, Any] = {}
    if m := re.search(r"finished in [\d.]+\w+, ([\d.]+) req/s", out):
        r["rps"] = float(m.group(1))
    if m := re.search(
        r"requests: \d+ total, \d+ started, (\d+) done, (\d+) succeeded, (\d+) failed, (\d+) errored", out
    ):
        r["done"], r["succeeded"], r["failed"], r["errored"] = map(int, m.groups())
    if m := re.search(r"time for request:\s+(\S+)\s+(\S+)\s+(\S+)", out):
        r["min"], r["max"], r["mean"] = m.groups()
    return r


def _why(d: dict[str, Any]) -> str:
    """First line of a skip/error message."""
    return str(d.get("skipped") or d.get("error") or "?").strip().splitlines()[0]


def _ratio(x: float | None) -> str:
    return f"{x:.2f}x" if x else "-"


def targets(res: dict[str, Any]) -> list[tuple[str, str, bool | None]]:
    """(target, measured, pass?) for the issue's goals; None = not measured."""
    out: list[tuple[str, str, bool | None]] = []
    med = res.get("peers", {}).get("median", {})
    o = med.get(OURS, {}).get("50")
    for peer, goal in (("caddy", 2.0), ("nginx", 0.5)):
        p = med.get(peer, {}).get("50")
        if o and p and p.get("rps"):
            r = o["rps"] / p["rps"]
            out.append((f"c=50 req/s >= {goal}x {peer}", f"{r:.2f}x", r >= goal))
        else:
            out.append((f"c=50 req/s >= {goal}x {peer}", "not measured", None))
    for peer, goal in (("caddy", 2.0), ("nginx", 0.5)):
        p = med.get(peer, {}).get("50")
        if o and p and o.get("cpu_us_per_req") and p.get("cpu_us_per_req"):
            r = p["cpu_us_per_req"] / o["cpu_us_per_req"]
            out.append(
                (
                    f"c=50 CPU/request: {peer}'s ÷ ours >= {goal} (noise-robust stand-in for req/s)",
                    f"{o['cpu_us_per_req']:.1f} vs {p['cpu_us_per_req']:.1f} µs/req = {r:.2f}x",
                    r >= goal,
                )
            )
    p = med.get("nginx", {}).get("50")
    if o and p and p.get("p99_ms"):
        r = o["p99_ms"] / p["p99_ms"]
        out.append(
            ("c=50 p99 <= 2x nginx p99", f"{r:.2f}x ({o['p99_ms']:.2f} vs {p['p99_ms']:.2f} ms)", r <= 2)
        )
    else:
        out.append(("c=50 p99 <= 2x nginx p99", "not measured", None))
    d = res.get("deploy", {})
    if "under_swaps" in d:
        e = d["under_swaps"]["errors"] + len(d.get("swap_failures", []))
        out.append(("deploy swaps: 0 errors", f"{e} errors over {d['swaps']} swaps", e == 0))
    else:
        out.append(("deploy swaps: 0 errors", "not measured", None))
    c = res.get("conns", {}).get(OURS, {})
    if "kib_per_conn" in c:
        out.append(
            ("<= 8 KiB RSS per idle keep-alive conn", f"{c['kib_per_conn']:.2f} KiB", c["kib_per_conn"] <= 8)
        )
        out.append((f"{c['n']:,} idle conns held without errors", f"{c['errors']} errors", c["errors"] == 0))
    else:
        out.append(("<= 8 KiB RSS per idle keep-alive conn", "not measured", None))
    s = res.get("services", {}).get("counts", {})
    # "flat": the largest service count is no worse than 10% below the smallest one
    ks = sorted((int(k) for k, v in s.items() if "last" in v))
    if len(ks) >= 2:
        lo_k, hi_k = str(ks[0]), str(ks[-1])
        a, b = s[lo_k]["last"]["rps"], s[hi_k]["last"]["rps"]
        desc = ", ".join(f"{k:,}: {s[str(k)]['last']['rps']:,.0f}" for k in ks)
        out.append(
            (f"req/s flat from {ks[0]:,} to {ks[-1]:,} services (last >= 0.9x first)", desc, b >= 0.9 * a)
        )
        if "cpu_us_per_req" in s[lo_k]["last"] and "cpu_us_per_req" in s[hi_k]["last"]:
            a, b = s[lo_k]["last"]["cpu_us_per_req"], s[hi_k]["last"]["cpu_us_per_req"]
            desc = ", ".join(f"{k:,}: {s[str(k)]['last'].get('cpu_us_per_req', 0):.1f} µs" for k in ks)
            out.append(("(noise-robust) CPU/request flat (last <= 1.1x first)", desc, b <= 1.1 * a))
    else:
        out.append(("flat req/s 1 -> 10,000 services", "not measured", None))
    return out


def _md_header(res: dict[str, Any]) -> list[str]:
    m = res.get("meta", {})
    mach = m.get("machine", {})
    args = m.get("args", {})
    parts = [
        "## Benchmark results",
        "",
        f"Run {m.get('started', '?')} on {mach.get('cpu', '?')}, {mach.get('cores', '?')} cores, "
        f"{mach.get('mem_gib', '?')} GiB, Linux {mach.get('kernel', '?')}, Python {mach.get('python', '?')}; "
        f"{mach.get('pinning', '')}. Backend: {m.get('backend', '?')} (12-byte body). "
        f"wrk -t1, {args.get('duration')} s per run, {args.get('reps')} interleaved reps, medians "
        f"(errors summed). Total {m.get('seconds', '?')} s.",
        f"Peers: {mach.get('nginx', '')}; {mach.get('haproxy', '')}; caddy {mach.get('caddy', '')}.",
        "",
    ]
    loads = {
        k: v["other_load_before"] for k, v in res.items() if isinstance(v, dict) and "other_load_before" in v
    }
    if loads:
        parts += [
            "CPU used by *other* processes just before each scenario (a shared machine makes numbers noisy): "
            + ", ".join(f"{k} {v['busy_pct']}% (steal {v['steal_pct']}%)" for k, v in loads.items()),
            "",
        ]
    rows = [[t, v, "PASS" if ok else ("FAIL" if ok is False else "-")] for t, v, ok in targets(res)]
    return [*parts, "### Targets", "", _table(["target", "measured", "status"], rows), ""]


def _md_peers_at(med: dict[str, Any], ratios: dict[str, Any], c: str) -> list[str]:
    hdr = ["proxy", "req/s", "p50", "p99", "max", "errors", "CPU µs/req"]
    ours_cols = [o for o in ratios if c in ratios[o]]
    hdr += [f"{o} ÷ this (req/s)" for o in ours_cols]
    hdr += [f"{o} CPU efficiency vs this" for o in ours_cols[:1]]
    rows = []
    for n, per in med.items():
        r = per.get(c)
        if not r:
            continue
        row = [n, r.get("rps"), r.get("p50_ms"), r.get("p99_ms"), r.get("max_ms"), r.get("errors")]
        row.append(r.get("cpu_us_per_req"))
        for o in ours_cols:
            row.append(_ratio(ratios[o][c].get(n, {}).get("rps")) if n != o else "1.00x")
        for o in ours_cols[:1]:
            row.append(_ratio(ratios[o][c].get(n, {}).get("cpu_efficiency")) if n != o else "1.00x")
        rows.append(row)
    return [f"**c={c}**", "", _table(hdr, rows), ""]


def _md_peers(res: dict[str, Any]) -> list[str]:
    peers = res.get("peers", {})
    if "median" not in peers:
        return [f"peers: {_why(peers)}", ""] if peers else []
    med = peers["median"]
    ratios = peers.get("ratios", {})
    parts = ["### Hello world, HTTP/1.1 keep-alive (req/s, latency ms)", ""]
    for c in sorted({c for per in med.values() for c in per}, key=int):
        parts += _md_peers_at(med, ratios, c)
    if peers.get("rss_kib_after"):
        rss = ", ".join(f"{k} {v:,}" for k, v in peers["rss_kib_after"].items() if v)
        parts += [f"RSS after the loop (KiB): {rss}", ""]
    return parts


def _latency_rows(rows: dict[str, dict[str, Any]]) -> str:
    keys = ("rps", "p50_ms", "p99_ms", "max_ms", "errors")
    return _table(
        ["", "req/s", "p50", "p99", "max", "errors"], [[n, *(r[k] for k in keys)] for n, r in rows.items()]
    )


def _md_deploy(res: dict[str, Any]) -> list[str]:
    d = res.get("deploy", {})
    if "under_swaps" not in d:
        return [f"deploy: {_why(d)}", ""] if d else []
    ds = sorted(d["deploy_seconds"]) or [0.0]
    return [
        "### Deploy swaps under load (ours, c=50)",
        "",
        _latency_rows({"baseline (no swaps)": d["baseline"], f"during {d['swaps']} swaps": d["under_swaps"]}),
        "",
        f"deploy call: median {ds[len(ds) // 2]:.2f} s, max {ds[-1]:.2f} s; failed deploys: "
        f"{len(d.get('swap_failures', []))}",
        "",
    ]


def _md_pause(res: dict[str, Any]) -> list[str]:
    pz = res.get("pause", {})
    if "under_pause" not in pz:
        return [f"pause: {_why(pz)}", ""] if pz else []
    paused = sorted(c["paused_s"] for c in pz["cycles"]) or [0.0]
    return [
        "### Pause -> deploy -> resume under load (ours, c=50)",
        "",
        _latency_rows({"baseline": pz["baseline"], f"during {len(pz['cycles'])} cycles": pz["under_pause"]}),
        "",
        f"paused for: median {paused[len(paused) // 2]:.2f} s, max {paused[-1]:.2f} s; "
        f"failed cycles: {len(pz.get('failures', []))}",
        "",
    ]


BODY_KINDS = ("download_1m", "upload_1m", "download_100m", "upload_100m")


def _md_bodies(res: dict[str, Any]) -> list[str]:
    bo = {k: v for k, v in res.get("bodies", {}).items() if isinstance(v, dict) and "download_1m" in v}
    if not bo:
        return []
    rows = [
        [
            n,
            *(r[k]["mib_s"] for k in BODY_KINDS),
            r["rss_idle_kib"],
            max(r[k]["peak_rss_kib"] for k in BODY_KINDS),
            sum(r[k]["errors"] for k in BODY_KINDS),
        ]
        for n, r in bo.items()
    ]
    header = ["proxy", "1 MiB down", "1 MiB up", "100 MiB down", "100 MiB up", "RSS idle", "RSS peak"]
    return ["### Large bodies, streamed (MiB/s; RSS KiB)", "", _table([*header, "errors"], rows), ""]


def _md_conns(res: dict[str, Any]) -> list[str]:
    co = {k: v for k, v in res.get("conns", {}).items() if isinstance(v, dict) and "kib_per_conn" in v}
    if not co:
        return []
    keys = (
        "n",
        "established_while_held",
        "rss_before_kib",
        "rss_held_kib",
        "kib_per_conn",
        "errors",
        "connect_seconds",
    )
    rows = [[n, *(r[k] for k in keys)] for n, r in co.items()]
    header = ["proxy", "conns", "established", "RSS before KiB", "RSS held KiB", "KiB/conn", "errors"]
    return ["### Idle keep-alive connections held", "", _table([*header, "connect s"], rows), ""]


def _md_services(res: dict[str, Any]) -> list[str]:
    sv = res.get("services", {}).get("counts", {})
    if not sv:
        return []
    rows = []
    for k, r in sv.items():
        if "first" not in r:
            rows.append([int(k), r.get("error", "?"), "", "", "", "", "", "", ""])
            continue
        first, last = r["first"], r["last"]
        rows.append(
            [
                int(k),
                r["method"],
                first["rps"],
                last["rps"],
                last["p99_ms"],
                first.get("cpu_us_per_req"),
                last.get("cpu_us_per_req"),
                first["errors"] + last["errors"],
                r["rss_kib"],
            ]
        )
    header = ["services", "deployed via", "req/s svc0", "req/s last svc", "p99 last", "CPU µs/req svc0"]
    return [
        "### Many services (ours, c=50, Host header routing)",
        "",
        _table([*header, "CPU µs/req last", "errors", "RSS KiB"], rows),
        "",
    ]


def _md_tls(res: dict[str, Any]) -> list[str]:
    tls = res.get("tls", {})
    if "median" not in tls:
        return [f"tls: {_why(tls)}", ""] if tls else []
    rows = []
    for n, per in tls["median"].items():
        for c, r in sorted(per.items(), key=lambda kv: int(kv[0])):
            cpu = r.get("cpu_us_per_req")
            rows.append(
                [n, int(c), r["rps"], r["p50_ms"], r["p99_ms"], f"{cpu:.1f}" if cpu else "-", r["errors"]]
            )
    parts = [
        "### TLS (HTTPS keep-alive, HTTP/1.1, one ECDSA P-256 certificate)",
        "",
        _table(["proxy", "c", "req/s", "p50", "p99", "CPU µs/req", "errors"], rows),
        "",
    ]
    shakes = tls.get("handshakes_median") or {}
    if shakes:
        hrows = []
        for n, r in shakes.items():
            cpu = r.get("cpu_us_per_req")
            hrows.append(
                [n, r.get("rps", 0), r.get("p99_ms", 0), f"{cpu:.1f}" if cpu else "-", r.get("errors", 0)]
            )
        parts += [
            "New TLS connection per request (wrk, c=50, `Connection: close`, no session resumption):",
            "",
            _table(["proxy", "req/s", "p99", "CPU µs/req", "errors"], hrows),
            "",
        ]
    if tls.get("h2load"):
        runs = "; ".join(
            f"{n}: {v.get('rps', 0):,.0f} req/s, {v.get('failed', '?')} failed"
            for n, v in tls["h2load"].items()
        )
        parts += [f"h2load --h1, 200 new connections at once, one request each: {runs}", ""]
    return parts


def _md_h2(res: dict[str, Any]) -> list[str]:
    h2 = res.get("h2", {})
    if "median" not in h2:
        return [f"h2: {_why(h2)}", ""] if h2 else []
    med = h2["median"]
    caddy = med.get("caddy", {}).get("rps")
    rows = []
    for n, r in med.items():
        runs = ", ".join(f"{run.get('rps', 0):,.0f}" for run in h2.get("runs", {}).get(n, []))
        cpu = r.get("cpu_us_per_req")
        ratio = f"{r['rps'] / caddy:.2f}x" if caddy and n != "caddy" else "-"
        rows.append([n, r["rps"], f"{cpu:.1f}" if cpu else "-", ratio, runs])
    return [
        "### HTTP/2 (h2load -c 50 -m 10 over TLS, one ECDSA P-256 certificate)",
        "",
        _table(["proxy", "req/s", "CPU µs/req", "÷ caddy (req/s)", "req/s per run"], rows),
        "",
    ]


MARKDOWN_SECTIONS = (
    _md_header,
    _md_peers,
    _md_deploy,
    _md_pause,
    _md_bodies,
    _md_conns,
    _md_services,
    _md_tls,
    _md_h2,
)


def markdown(res: dict[str, Any]) -> str:
    return "\n".join(line for section in MARKDOWN_SECTIONS for line in section(res))


# --------------------------------------------------------------------------------------
# charts
# --------------------------------------------------------------------------------------

COLORS = {
    "direct": "#999999",
    "nginx": "#009639",
    "haproxy": "#1f6fb2",
    "caddy": "#6c3fb5",
    "ours-httptools": "#e4572e",
    "ours-h11": "#f3a712",
    "ours-httptools-metrics": "#b83b1e",
}


Save = Callable[[Any, str], None]


def _grouped_bars(ax: Any, series: dict[str, list[float]], groups: list[str]) -> float:
    """Bars grouped per x position, one colour per series; returns the bar width."""
    w = 0.8 / max(1, len(series))
    for i, (n, values) in enumerate(series.items()):
        ax.bar([j + i * w for j in range(len(groups))], values, w, label=n, color=COLORS.get(n))
    ax.set_xticks([j + 0.4 - w / 2 for j in range(len(groups))], groups)
    return w


def _chart_peers(plt: Any, res: dict[str, Any], save: Save) -> None:
    med = res.get("peers", {}).get("median")
    if not med:
        return
    conc = sorted({c for per in med.values() for c in per}, key=int)
    fig, axes = plt.subplots(1, 3, figsize=(16, 4.5))
    for ax, key, title in zip(
        axes,
        ("rps", "p99_ms", "cpu_us_per_req"),
        (
            "throughput (req/s, higher is better)",
            "p99 latency (ms, log, lower is better)",
            "proxy CPU per request (µs, lower is better)",
        ),
        strict=True,
    ):
        series = {n: [med[n].get(c, {}).get(key, 0) for c in conc] for n in med}
        _grouped_bars(ax, series, [f"c={c}" for c in conc])
        ax.set_title(title)
    axes[1].set_yscale("log")
    axes[0].legend(fontsize=8)
    fig.suptitle("HTTP/1.1 keep-alive, 12-byte body, proxy on 1 core")
    save(fig, "peers")


def _chart_under_load(
    plt: Any,
    save: Save,
    *,
    name: str,
    durations: list[float],
    what: str,
    scenario: dict[str, Any],
    label: str,
) -> None:
    """Durations of each disruptive operation, and latency without vs during them."""
    fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(12, 4))
    ax1.plot(range(1, len(durations) + 1), durations, marker=".", color=COLORS[OURS])
    ax1.set_xlabel(f"{what} #")
    ax1.set_ylabel(f"{what} (s)")
    ax1.set_title(f"{what} duration")
    b, u = scenario["baseline"], scenario[label]
    pos = [0, 1, 2]
    ax2.bar([x - 0.2 for x in pos], [b["p50_ms"], b["p99_ms"], b["max_ms"]], 0.4, label="baseline")
    ax2.bar(
        [x + 0.2 for x in pos],
        [u["p50_ms"], u["p99_ms"], u["max_ms"]],
        0.4,
        label=f"during {what}s",
        color=COLORS[OURS],
    )
    ax2.set_xticks(pos, ["p50", "p99", "max"])
    ax2.set_yscale("log")
    ax2.set_ylabel("latency (ms)")
    ax2.set_title(f"c=50 latency; errors during {what}s: {u['errors']}")
    ax2.legend()
    save(fig, name)


def _chart_bodies(plt: Any, res: dict[str, Any], save: Save) -> None:
    bo = {k: v for k, v in res.get("bodies", {}).items() if isinstance(v, dict) and "download_1m" in v}
    if not bo:
        return
    fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(12, 4.5))
    groups = [k.replace("_", " ") for k in BODY_KINDS]
    _grouped_bars(ax1, {n: [r[k]["mib_s"] for k in BODY_KINDS] for n, r in bo.items()}, groups)
    _grouped_bars(ax2, {n: [r[k]["peak_rss_kib"] / 1024 for k in BODY_KINDS] for n, r in bo.items()}, groups)
    ax1.set_title("throughput (MiB/s)")
    ax2.set_title("peak RSS during transfer (MiB)")
    ax1.legend(fontsize=8)
    save(fig, "bodies")


def _chart_conns(plt: Any, res: dict[str, Any], save: Save) -> None:
    co = {k: v for k, v in res.get("conns", {}).items() if isinstance(v, dict) and "kib_per_conn" in v}
    if not co:
        return
    fig, ax = plt.subplots(figsize=(7, 4))
    ax.bar(list(co), [v["kib_per_conn"] for v in co.values()], color=[COLORS.get(n) for n in co])
    ax.axhline(8, ls="--", color="red", label="target 8 KiB")
    ax.set_ylabel("KiB RSS per idle connection")
    n = next(iter(co.values()))["n"]
    ax.set_title(f"{n:,} idle keep-alive connections held")
    ax.legend()
    save(fig, "conns")


def _chart_services(plt: Any, res: dict[str, Any], save: Save) -> None:
    sv = {int(k): v for k, v in res.get("services", {}).get("counts", {}).items() if "last" in v}
    if not sv:
        return
    ks = sorted(sv)
    fig, ax = plt.subplots(figsize=(7, 4))
    ax.plot(ks, [sv[k]["first"]["rps"] for k in ks], marker="o", label="svc0", color=COLORS[OURS])
    ax.plot(ks, [sv[k]["last"]["rps"] for k in ks], marker="s", label="last service", color="#333333")
    ax.set_xscale("log")
    ax.set_ylim(bottom=0)
    ax.set_xlabel("deployed services")
    ax.set_ylabel("req/s (c=50)")
    ax.set_title("routing with many services")
    ax.legend()
    save(fig, "services")


def _chart_tls(plt: Any, res: dict[str, Any], save: Save) -> None:
    tls = res.get("tls", {}).get("median")
    if not tls:
        return
    fig, ax = plt.subplots(figsize=(7, 4))
    conc = sorted({c for per in tls.values() for c in per}, key=int)
    _grouped_bars(
        ax, {n: [tls[n].get(c, {}).get("rps", 0) for c in conc] for n in tls}, [f"c={c}" for c in conc]
    )
    ax.set_title("HTTPS keep-alive req/s")
    ax.legend()
    save(fig, "tls")


def charts(res: dict[str, Any], out: Path) -> list[Path]:
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return []
    paths: list[Path] = []

    def save(fig: Any, name: str) -> None:
        p = out / f"{name}.png"
        fig.tight_layout()
        fig.savefig(p, dpi=110)
        plt.close(fig)
        paths.append(p)

    _chart_peers(plt, res, save)
    d = res.get("deploy", {})
    if "under_swaps" in d:
        durations = d["deploy_seconds"]
        _chart_under_load(
            plt, save, name="deploy", durations=durations, what="deploy", scenario=d, label="under_swaps"
        )
    pz = res.get("pause", {})
    if "under_pause" in pz:
        durations = [c["paused_s"] for c in pz["cycles"]]
        _chart_under_load(
            plt, save, name="pause", durations=durations, what="pause", scenario=pz, label="under_pause"
        )
    for chart in (_chart_bodies, _chart_conns, _chart_services, _chart_tls):
        chart(plt, res, save)
    return paths


def write(res: dict[str, Any], md: str, out: Path, stamp: str, with_charts: bool = True) -> list[Path]:
    out.mkdir(parents=True, exist_ok=True)
    paths = []
    for name in (f"{stamp}.json", "latest.json"):
        p = out / name
        p.write_text(json.dumps(res, indent=1, sort_keys=False))
        paths.append(p)
    p = out / "latest.md"
    p.write_text(md + "\n")
    paths.append(p)
    if with_charts:
        paths += charts(res, out)
    return paths


def update_readme(readme: Path, md: str, chart_paths: list[Path]) -> None:
    """Replace the text between the PERFORMANCE markers of readme with md and the charts."""
    text = readme.read_text()
    begin, end = "<!-- PERFORMANCE:BEGIN -->", "<!-- PERFORMANCE:END -->"
    if begin not in text or end not in text:
        return
    charts_md = "\n".join(f"![{p.stem}](results/{p.name})" for p in chart_paths if p.suffix == ".png")
    body = md.replace("## Benchmark results", "### Latest run", 1)
    body = body.replace("\n### ", "\n#### ").replace("#### Latest run", "### Latest run")
    new = f"{begin}\n{body}\n\n{charts_md}\n\nReproduce: `bash benchmarks/setup.sh && python -m benchmarks.run`\n{end}"
    head, rest = text.split(begin, 1)
    tail = rest.split(end, 1)[1]
    readme.write_text(head + new + tail)


def main() -> None:
    """Re-render the Markdown, charts (and optionally the README) from a results JSON."""
    import argparse

    ap = argparse.ArgumentParser(prog="python -m benchmarks.report")
    ap.add_argument("json", type=Path, nargs="?", default=Path(__file__).parent / "results" / "latest.json")
    ap.add_argument("--update-readme", action="store_true")
    a = ap.parse_args()
    res = json.loads(a.json.read_text())
    md = markdown(res)
    out = a.json.parent
    (out / "latest.md").write_text(md + "\n")
    paths = charts(res, out)
    if a.update_readme:
        update_readme(Path(__file__).parent / "README.md", md, paths)
    print(md)


if __name__ == "__main__":
    main()
