"""Metrics: the per-process request tables, their sum across workers, and the exposition."""

from __future__ import annotations

import asyncio

from prometheus_client.exposition import generate_latest
from prometheus_client.parser import text_string_to_metric_families

from proxy import ipc
from proxy.controller.fleet import SlotState, WorkerFleet
from proxy.log import JsonLog
from proxy.metrics import (
    MetricsServerProtocol,
    ProxyCollector,
    ProxyGauges,
    RequestMetrics,
    make_registry,
    normalize_method,
)
from proxy.worker.process import WorkerConfig


def samples(text: str) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    out = {}
    for family in text_string_to_metric_families(text):
        for s in family.samples:
            out[(s.name, tuple(sorted(s.labels.items())))] = s.value
    return out


def scrape(
    *tables: RequestMetrics, gauges: ProxyGauges | None = None
) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    collector = ProxyCollector(tables=lambda: tables, gauges=None if gauges is None else (lambda: gauges))
    return samples(generate_latest(make_registry(collector)).decode())


def labels(**kw: str) -> tuple[tuple[str, str], ...]:
    return tuple(sorted(kw.items()))


def test_methods_outside_the_standard_nine_are_other() -> None:
    assert normalize_method("GET") == "GET"
    assert normalize_method("PROPFIND") == "OTHER"
    assert normalize_method("get") == "OTHER"


def test_a_known_sequence_of_requests_shows_in_counts_histogram_and_in_flight() -> None:
    table = RequestMetrics()
    for seconds in (0.001, 0.02, 0.3):
        table.started("app")
        table.finished("app", "GET", 200, seconds)
    table.started("app")
    table.finished("app", "BREW", 502, 12.0)
    table.started("app")  # still in flight
    got = scrape(table)
    get_200 = labels(service="app", method="GET", status="200")
    assert got[("kamal_proxy_http_requests_total", get_200)] == 3
    assert got[("kamal_proxy_http_requests_total", labels(service="app", method="OTHER", status="502"))] == 1

    def bucket(le: str, method: str = "GET", status: str = "200") -> float:
        key = labels(service="app", method=method, status=status, le=le)
        return got[("kamal_proxy_http_request_duration_seconds_bucket", key)]

    assert (bucket("0.005"), bucket("0.025"), bucket("0.5"), bucket("+Inf")) == (1, 2, 3, 3)
    assert abs(got[("kamal_proxy_http_request_duration_seconds_sum", get_200)] - 0.321) < 1e-9
    assert bucket("10", "OTHER", "502") == 0 and bucket("+Inf", "OTHER", "502") == 1
    assert got[("kamal_proxy_http_in_flight_requests", labels(service="app"))] == 1
    assert any(name.startswith("process_") for name, _ in got)


def test_tables_of_several_workers_are_summed_on_scrape() -> None:
    one, two = RequestMetrics(), RequestMetrics()
    for table, n in ((one, 2), (two, 5)):
        for _ in range(n):
            table.started("web")
            table.finished("web", "POST", 201, 0.05)
    two.started("web")
    got = scrape(one, two)
    assert got[("kamal_proxy_http_requests_total", labels(service="web", method="POST", status="201"))] == 7
    assert got[("kamal_proxy_http_in_flight_requests", labels(service="web"))] == 1
    assert one.snapshot()["series"][0][3] == 2  # scraping does not change the worker's own table


def test_excluded_paths_are_not_counted() -> None:
    table = RequestMetrics(excluded_paths=frozenset({"/up"}))
    assert not table.counts("/up") and table.counts("/up/x") and table.counts("/")


def test_daemon_gauges_are_exported() -> None:
    gauges = ProxyGauges(
        targets={("app", "healthy"): 2, ("app", "draining"): 1},
        held_requests={"app": 3},
        idle_upstream_connections={"app": 7},
        upstream_connect_errors={"app": 4},
    )
    got = scrape(RequestMetrics(), gauges=gauges)
    assert got[("kamal_proxy_targets", labels(service="app", state="healthy"))] == 2
    assert got[("kamal_proxy_targets", labels(service="app", state="draining"))] == 1
    assert got[("kamal_proxy_held_requests", labels(service="app"))] == 3
    assert got[("kamal_proxy_upstream_idle_connections", labels(service="app"))] == 7
    assert got[("kamal_proxy_upstream_connect_errors_total", labels(service="app"))] == 4


def test_every_path_of_the_metrics_listener_serves_the_exposition() -> None:
    table = RequestMetrics()
    table.started("app")
    table.finished("app", "GET", 200, 0.01)
    registry = make_registry(ProxyCollector(tables=lambda: [table]))

    async def fetch(path: str) -> bytes:
        loop = asyncio.get_running_loop()
        server = await loop.create_server(lambda: MetricsServerProtocol(registry), "127.0.0.1", 0)
        port = server.sockets[0].getsockname()[1]
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        writer.write(f"GET {path} HTTP/1.1\r\nHost: x\r\n\r\n".encode())
        data = await asyncio.wait_for(reader.read(), 5)
        writer.close()
        server.close()
        return data

    for path in ("/metrics", "/anything"):
        response = asyncio.run(fetch(path))
        head, _, body = response.partition(b"\r\n\r\n")
        assert head.startswith(b"HTTP/1.1 200 OK")
        assert b'kamal_proxy_http_requests_total{method="GET",service="app",status="200"} 1.0' in body


def test_a_replaced_workers_counters_stay_in_the_sums_and_its_gauges_do_not() -> None:
    def no_process(index: int, fd: int, fds: tuple[int, ...], tls_fds: tuple[int, ...]) -> WorkerConfig:
        raise AssertionError("no worker process is started")

    async def scenario() -> None:
        fleet = WorkerFleet(count=2, log=JsonLog(fd=-1), worker_config=no_process)
        dead, live = fleet.slots
        worker = RequestMetrics()
        for _ in range(3):
            worker.started("app")
            worker.finished("app", "GET", 200, 0.01)
            worker.connect_failed("app")
        worker.started("app")  # in flight when it died
        table = {**worker.snapshot(), "held": {"app": 2}, "idle": {"app": 5}}
        for slot in (dead, live):
            slot.state = SlotState.READY
            fleet._received(slot, ipc.MetricsTable(request=0, table=table))
        dead.state = SlotState.EXITED
        fleet._retire_metrics(dead)
        assert dead.metrics is None  # its replacement's table starts from nothing
        got = scrape(*fleet.metrics_tables())
        assert (
            got[("kamal_proxy_http_requests_total", labels(service="app", method="GET", status="200"))] == 6
        )
        assert got[("kamal_proxy_http_in_flight_requests", labels(service="app"))] == 1  # the live one's
        held, idle = fleet.worker_gauges()
        assert held == {"app": 2} and idle == {"app": 5}
        assert sum(t.connect_errors.get("app", 0) for t in fleet.metrics_tables()) == 6

    asyncio.run(scenario())
