"""The benchmark report's Markdown: the HTTP/2 section shows what the suite measured."""

from __future__ import annotations

from benchmarks import report


def test_the_http2_section_gives_each_proxys_median_its_runs_and_its_ratio_to_caddy() -> None:
    res = {
        "h2": {
            "runs": {"ours-httptools": [{"rps": 9000.0}, {"rps": 8000.0}], "caddy": [{"rps": 4000.0}]},
            "median": {
                "ours-httptools": {"rps": 8500.0, "cpu_us_per_req": 120.04},
                "caddy": {"rps": 4000.0, "cpu_us_per_req": 250.0},
            },
        }
    }
    lines = "\n".join(report._md_h2(res)).splitlines()
    assert lines[0].startswith("### HTTP/2")
    ours = next(line for line in lines if line.startswith("| ours-httptools"))
    assert "120.0" in ours and "2.12x" in ours and "9,000, 8,000" in ours
    caddy = next(line for line in lines if line.startswith("| caddy"))
    assert "| - |" in caddy  # no ratio of Caddy to itself
    assert report._md_h2 in report.MARKDOWN_SECTIONS  # part of the whole report


def test_a_skipped_http2_scenario_says_why_and_an_absent_one_says_nothing() -> None:
    assert report._md_h2({"h2": {"skipped": "h2load not installed\nmore"}}) == [
        "h2: h2load not installed",
        "",
    ]
    assert report._md_h2({}) == []
