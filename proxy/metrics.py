"""Prometheus metrics (``run --metrics-port``), with kamal-proxy's names and labels (spec §3.14).

Counting stays off the per-request path as far as it can: a request adds to plain integers in a
``RequestMetrics`` table (one dict lookup and a few additions); nothing touches ``prometheus_client``
until a scrape, when ``ProxyCollector`` turns the tables (one per worker process, summed) and the
gauges the daemon reports (targets by health, held requests, idle upstream connections, connect
errors) into metric families. With metrics off, no table exists and the data plane skips the call.

The tables are plain data (``snapshot``/``merge``) so that worker processes can send theirs to the
process that serves the scrape.
"""

from __future__ import annotations

import asyncio
import bisect
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, cast

from prometheus_client import CollectorRegistry, GCCollector, PlatformCollector, ProcessCollector
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, HistogramMetricFamily, Metric
from prometheus_client.exposition import CONTENT_TYPE_LATEST, generate_latest

if TYPE_CHECKING:
    from proxy.http.record import ExchangeRecord

BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)  # Go client defaults
METHODS = frozenset({"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "CONNECT", "OPTIONS", "TRACE"})
_METHOD_NAMES = {m.encode(): m for m in METHODS}  # a request's method bytes -> its label
SCRAPE_HEAD_LIMIT = 8192
SCRAPE_TIMEOUT = 10.0

SeriesKey = tuple[str, str, int]  # service, method, status


def normalize_method(method: str) -> str:
    return method if method in METHODS else "OTHER"


@dataclass(slots=True)
class _Series:
    count: int = 0
    total_seconds: float = 0.0
    buckets: list[int] = field(default_factory=lambda: [0] * len(BUCKETS))  # not cumulative


class RequestMetrics:
    """One process's request counters: requests, durations and in-flight requests per service."""

    __slots__ = ("connect_errors", "excluded_paths", "in_flight", "series")

    def __init__(self, *, excluded_paths: frozenset[str] = frozenset()) -> None:
        self.series: dict[SeriesKey, _Series] = {}
        self.in_flight: dict[str, int] = {}
        self.connect_errors: dict[str, int] = {}  # service -> failed connects to its targets
        self.excluded_paths = excluded_paths

    def counts(self, path: str) -> bool:
        """False for a path excluded by ``--exclude-metrics-path`` (exact, after prefix stripping)."""
        return path not in self.excluded_paths

    def started(self, service: str) -> None:
        self.in_flight[service] = self.in_flight.get(service, 0) + 1

    def finished(self, service: str, method: str, status: int, seconds: float) -> None:
        """A request counted by ``started`` is over."""
        self.in_flight[service] = self.in_flight.get(service, 1) - 1
        self.counted(service, method, status, seconds)

    def connect_failed(self, service: str) -> None:
        self.connect_errors[service] = self.connect_errors.get(service, 0) + 1

    def counted(self, service: str, method: str, status: int, seconds: float) -> None:
        """A finished request that was never in flight for a service (unrouted: ``service=""``)."""
        key = (service, method if method in METHODS else "OTHER", status)
        series = self.series.get(key)
        if series is None:
            series = self.series[key] = _Series()
        series.count += 1
        series.total_seconds += seconds
        index = bisect.bisect_left(BUCKETS, seconds)
        if index < len(BUCKETS):
            series.buckets[index] += 1

    def snapshot(self) -> dict[str, Any]:
        """Plain JSON-able data: what a worker sends to the process that serves the scrape."""
        return {
            "series": [
                [s, m, st, v.count, v.total_seconds, v.buckets] for (s, m, st), v in self.series.items()
            ],
            "in_flight": dict(self.in_flight),
            "connect_errors": dict(self.connect_errors),
        }

    def merge(self, snapshot: dict[str, Any]) -> None:
        """Add another table's snapshot into this one (sums across workers)."""
        for service, method, status, count, total, buckets in snapshot["series"]:
            series = self.series.setdefault((service, method, status), _Series())
            series.count += count
            series.total_seconds += total
            series.buckets = [a + b for a, b in zip(series.buckets, buckets, strict=True)]
        for service, n in snapshot["in_flight"].items():
            self.in_flight[service] = self.in_flight.get(service, 0) + n
        for service, n in snapshot.get("connect_errors", {}).items():
            self.connect_errors[service] = self.connect_errors.get(service, 0) + n


class MetricsObserver:
    """The exchange observer that counts finished requests into a ``RequestMetrics`` table."""

    __slots__ = ("_clock", "table")

    def __init__(self, *, table: RequestMetrics, clock: Callable[[], float]) -> None:
        self.table = table
        self._clock = clock  # wall clock, as ExchangeRecord.started

    def exchange_finished(self, record: ExchangeRecord) -> None:
        service = record.service
        if record.metered:
            assert service is not None
            seconds = self._clock() - record.started
            method = _METHOD_NAMES.get(record.method, "OTHER")
            self.table.finished(service.name, method, record.status or 200, seconds)
        elif service is None:  # unrouted (404): counted under service="", never in flight
            seconds = self._clock() - record.started
            self.table.counted("", _METHOD_NAMES.get(record.method, "OTHER"), record.status or 200, seconds)


@dataclass(frozen=True, slots=True)
class ProxyGauges:
    """What the daemon reports at scrape time, beyond the request counters."""

    targets: dict[tuple[str, str], int]  # (service, health state) -> targets
    held_requests: dict[str, int]  # service -> requests held by a pause
    idle_upstream_connections: dict[str, int]  # service -> idle pooled connections
    upstream_connect_errors: dict[str, int]  # service -> failed connects (a counter)


class ProxyCollector:
    """Builds kamal-proxy's metric families from the request tables and the daemon's gauges."""

    def __init__(
        self,
        *,
        tables: Callable[[], Iterable[RequestMetrics]],
        gauges: Callable[[], ProxyGauges] | None = None,
    ) -> None:
        self._tables = tables
        self._gauges = gauges

    def collect(self) -> Iterator[Metric]:
        total = RequestMetrics()
        for table in self._tables():
            total.merge(table.snapshot())
        yield from _request_families(total)
        if self._gauges is not None:
            yield from _gauge_families(self._gauges())


def _request_families(total: RequestMetrics) -> Iterator[Metric]:
    labels = ["service", "method", "status"]
    requests = CounterMetricFamily(
        "kamal_proxy_http_requests",
        "HTTP requests processed, labeled by service, status code and method",
        labels=labels,
    )
    durations = HistogramMetricFamily(
        "kamal_proxy_http_request_duration_seconds", "Duration of HTTP requests, in seconds", labels=labels
    )
    for (service, method, status), series in sorted(total.series.items()):
        values = [service, method, str(status)]
        requests.add_metric(values, series.count)
        cumulative, running = [], 0
        for bound, n in zip(BUCKETS, series.buckets, strict=True):
            running += n
            cumulative.append((_bound(bound), float(running)))
        cumulative.append(("+Inf", float(series.count)))
        durations.add_metric(values, cumulative, series.total_seconds)
    in_flight = GaugeMetricFamily(
        "kamal_proxy_http_in_flight_requests", "HTTP requests currently being processed", labels=["service"]
    )
    for service, n in sorted(total.in_flight.items()):
        in_flight.add_metric([service], n)
    yield from (requests, durations, in_flight)


def _gauge_families(gauges: ProxyGauges) -> Iterator[Metric]:
    targets = GaugeMetricFamily("kamal_proxy_targets", "Targets by health state", labels=["service", "state"])
    for (service, state), n in sorted(gauges.targets.items()):
        targets.add_metric([service, state], n)
    held = GaugeMetricFamily("kamal_proxy_held_requests", "Requests held by a pause", labels=["service"])
    for service, n in sorted(gauges.held_requests.items()):
        held.add_metric([service], n)
    idle = GaugeMetricFamily(
        "kamal_proxy_upstream_idle_connections", "Idle pooled upstream connections", labels=["service"]
    )
    for service, n in sorted(gauges.idle_upstream_connections.items()):
        idle.add_metric([service], n)
    errors = CounterMetricFamily(
        "kamal_proxy_upstream_connect_errors", "Failed connections to targets", labels=["service"]
    )
    for service, n in sorted(gauges.upstream_connect_errors.items()):
        errors.add_metric([service], n)
    yield from (targets, held, idle, errors)


def _bound(bound: float) -> str:
    return f"{bound:g}"  # as Go's client prints bucket bounds: 0.005, 1, 2.5, 10


def make_registry(collector: ProxyCollector) -> CollectorRegistry:
    """A registry of our own (no import-time global), with the process and Python collectors."""
    registry = CollectorRegistry(auto_describe=False)
    ProcessCollector(registry=registry)
    PlatformCollector(registry=registry)
    GCCollector(registry=registry)
    registry.register(collector)
    return registry


class MetricsServerProtocol(asyncio.Protocol):
    """Every path answers the exposition (as promhttp's default handler); one request per connection."""

    def __init__(self, registry: CollectorRegistry) -> None:
        self._registry = registry
        self._buffer = bytearray()
        self._transport: asyncio.Transport | None = None
        self._timer: asyncio.TimerHandle | None = None
        self._answered = False

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # (uvloop's transports are not asyncio.Transport subclasses, so no isinstance check here)
        self._transport = cast(asyncio.Transport, transport)
        self._timer = asyncio.get_running_loop().call_later(SCRAPE_TIMEOUT, self._transport.abort)

    def data_received(self, data: bytes) -> None:
        assert self._transport is not None
        if self._answered:
            return
        self._buffer += data
        if b"\r\n\r\n" in self._buffer or b"\n\n" in self._buffer:
            self._respond(200, generate_latest(self._registry), CONTENT_TYPE_LATEST)
        elif len(self._buffer) > SCRAPE_HEAD_LIMIT:
            self._respond(431, b"request head too large\n", "text/plain; charset=utf-8")

    def _respond(self, status: int, body: bytes, content_type: str) -> None:
        assert self._transport is not None
        head = f"HTTP/1.1 {status} {'OK' if status == 200 else 'Error'}\r\nContent-Type: {content_type}\r\n"
        head += f"Content-Length: {len(body)}\r\nConnection: close\r\n\r\n"
        head_only = self._buffer.startswith(b"HEAD ")
        self._transport.write(head.encode() + (b"" if head_only else body))
        self._transport.close()
        self._answered = True
        self._buffer.clear()

    def connection_lost(self, exc: Exception | None) -> None:
        if self._timer is not None:
            self._timer.cancel()
