"""Shared helpers of the benchmark scripts."""

from __future__ import annotations

import statistics
import time
from collections.abc import Callable


def median_rate(fn: Callable[[], int], rounds: int = 5) -> float:
    """Median of ``items / seconds`` over ``rounds`` runs of ``fn`` (which returns items done)."""
    rates = []
    for _ in range(rounds):
        started = time.perf_counter()
        n = fn()
        rates.append(n / (time.perf_counter() - started))
    return statistics.median(rates)


def report(name: str, value: float, unit: str) -> None:
    print(f"bench: {name} {value:.6g} {unit}", flush=True)
