"""A short run of the soak/chaos tool (make soak runs it longer), so the tool itself keeps working."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

from tests.proxy.conftest import ROOT


def test_a_short_soak_serves_every_kind_of_client_through_the_chaos(tmp_path: Path) -> None:
    report_path = tmp_path / "soak.json"
    result = subprocess.run(
        [sys.executable, "-m", "benchmarks.soak", "--seconds", "5", "--json", str(report_path)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
    )
    report = json.loads(report_path.read_text())
    assert result.returncode == (0 if report["ok"] else 1)
    assert report["ok"], report
    for kind in ("keepalive", "pipelined", "upload", "slow_reader", "websocket"):
        assert report["served"].get(kind, 0) > 0, kind
    assert report["chaos"].get("deploy", 0) >= 1
