"""Prometheus metrics shared by every netobs process (exposed by :mod:`netobs.control`)."""

from __future__ import annotations

from prometheus_client import (
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    PlatformCollector,
    ProcessCollector,
    disable_created_metrics,
    generate_latest,
)

# One series per counter: the `_created` twin of every counter doubles the series and is
# not part of the Prometheus text format's conventions for counters.
disable_created_metrics()  # type: ignore[no-untyped-call]

#: One registry per process; components define their metrics against it.
REGISTRY = CollectorRegistry(auto_describe=True)
ProcessCollector(registry=REGISTRY)  # process_cpu_seconds_total, process_resident_memory_bytes, ...
PlatformCollector(registry=REGISTRY)  # python_info

build_info = Gauge("netobs_build_info", "netobs version", ["version"], registry=REGISTRY)
component_failures = Counter(
    "netobs_component_failures_total",
    "Components that died (a listener or pipeline thread); the process then exits with status 1",
    registry=REGISTRY,
)


def counter(name: str, doc: str, labels: tuple[str, ...] = ()) -> Counter:
    return Counter(name, doc, list(labels), registry=REGISTRY)


def gauge(name: str, doc: str, labels: tuple[str, ...] = ()) -> Gauge:
    return Gauge(name, doc, list(labels), registry=REGISTRY)


def histogram(
    name: str, doc: str, labels: tuple[str, ...] = (), buckets: tuple[float, ...] | None = None
) -> Histogram:
    if buckets:
        return Histogram(name, doc, list(labels), registry=REGISTRY, buckets=buckets)
    return Histogram(name, doc, list(labels), registry=REGISTRY)


def exposition() -> bytes:
    """The text exposition format of every metric in the registry."""
    return generate_latest(REGISTRY)


control_requests = Counter(
    "netobs_control_requests_total",
    "Control endpoint requests answered, by route and HTTP status",
    ["route", "code"],
    registry=REGISTRY,
)
control_refused = Counter(
    "netobs_control_refused_requests_total",
    "Control endpoint requests refused before their handler, by reason (host, origin, content_type, "
    "unauthenticated, forbidden)",
    ["reason"],
    registry=REGISTRY,
)
queries_refused = Counter(
    "netobs_control_refused_queries_total",
    "Statements the SQL guard refused (outside the caller's grant), by role",
    ["role"],
    registry=REGISTRY,
)
startup_retries = Counter(
    "netobs_startup_retries_total",
    "Start attempts that found a dependency (Kafka, the ClickHouse server) not up yet, by dependency",
    ["dependency"],
    registry=REGISTRY,
)
