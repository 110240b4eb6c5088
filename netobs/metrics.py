"""Prometheus metrics shared by every netobs process (exposed by :mod:`netobs.control`)."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest

#: One registry per process; components define their metrics against it.
REGISTRY = CollectorRegistry(auto_describe=True)

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
