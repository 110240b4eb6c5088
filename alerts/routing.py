"""Routes: which sinks an alert goes to, and how one run's alerts are grouped into deliveries.

Routes are tried in order; the first that matches wins unless it says ``continue_matching``.
A target is ``route/sink``: the unit of delivery state, repeat interval and e-mail digest.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence

from alerts.config import SEVERITY_RANK, RouteConfig
from alerts.model import Alert


def matches(route: RouteConfig, alert: Alert) -> bool:
    if alert.rank < SEVERITY_RANK[route.min_severity]:
        return False
    if route.sources and alert.source not in route.sources:
        return False
    for label, accepted in route.labels.items():
        values = {v.strip() for v in alert.labels.get(label, "").split(",") if v.strip()}
        if not values & set(accepted):
            return False
    return True


def target(route: str, sink: str) -> str:
    return f"{route}/{sink}"


def split_target(name: str) -> tuple[str, str]:
    route, _, sink = name.partition("/")
    return route, sink


def targets(routes: Sequence[RouteConfig], alert: Alert) -> list[str]:
    """Targets of ``alert``, in route order."""
    out: list[str] = []
    for route in routes:
        if matches(route, alert):
            out.extend(target(route.name, s) for s in route.sinks)
            if not route.continue_matching:
                break
    return out


def group(route: RouteConfig, alerts: Iterable[Alert]) -> list[list[Alert]]:
    """Alerts split by the route's ``group_by`` labels (one group when it has none), stably ordered."""
    groups: dict[tuple[str, ...], list[Alert]] = {}
    for a in sorted(alerts, key=lambda a: (-a.rank, a.source, a.name, a.fingerprint)):
        groups.setdefault(tuple(a.labels.get(k, "") for k in route.group_by), []).append(a)
    return [groups[k] for k in sorted(groups)]


__all__ = ["group", "matches", "split_target", "target", "targets"]
