"""Tenant drill-down: one or more tenants' traffic in and out, their peers, the path mix and their
busiest pods, narrowed by center and zone.

Variables tenant / center / zone are multi-valued with All, their values from SQL. Traffic
and peers read the rollups; the path mix and the pods need raw ``flows`` (neither is a
rollup key), bounded by the time range and a LIMIT.
"""

from __future__ import annotations

from dashboards.model import Dashboard, Panel, query_variable
from dashboards.model import unit_override as _unit
from dashboards.sql import BPS, SCALED_BYTES, SCALED_PACKETS, any_of, names, raw_flows, rollup

UID = "netobs-tenant"
TOP_PODS = 25


def _scope() -> str:
    """Flows of the selected tenants (either end), centers and zones."""
    return " AND ".join(
        (
            any_of("tenant", "src_tenant", "dst_tenant"),
            any_of("center", "src_center", "dst_center"),
            any_of("zone", "src_zone", "dst_zone"),
        )
    )


def build(database: str, uid: str) -> Dashboard:
    scope = _scope()
    src = rollup(database, scope)
    d = Dashboard(
        UID,
        "Tenant drill-down",
        "One tenant's traffic: in and out, peers, path mix, busiest pods.",
        ("netobs", "tenant", "traffic"),
        uid,
    )
    d.variables = [
        query_variable("tenant", "Tenant", names(database, ("src_tenant", "dst_tenant")), uid),
        query_variable("center", "Center", names(database, ("src_center", "dst_center")), uid),
        query_variable("zone", "Zone", names(database, ("src_zone", "dst_zone")), uid),
    ]
    out_of = "src_tenant IN (${tenant:singlequote})"
    into = "dst_tenant IN (${tenant:singlequote})"
    d.panels = [
        Panel(
            "timeseries", "Traffic out (sent by the tenant)",
            f"SELECT $__timeInterval(time) AS time, src_tenant AS tenant, {BPS} AS bps FROM {src} "
            f"WHERE {out_of} GROUP BY time, tenant ORDER BY time",
            unit="bps",
        ),
        Panel(
            "timeseries", "Traffic in (received by the tenant)",
            f"SELECT $__timeInterval(time) AS time, dst_tenant AS tenant, {BPS} AS bps FROM {src} "
            f"WHERE {into} GROUP BY time, tenant ORDER BY time",
            unit="bps",
        ),
        Panel(
            "table", "Peers",
            "SELECT if(src_tenant IN (${tenant:singlequote}), dst_tenant, src_tenant) AS peer, "
            "if(src_tenant IN (${tenant:singlequote}), 'out', 'in') AS direction, "
            "groupUniqArray(concat(src_zone, '→', dst_zone)) AS zones, sum(bytes) AS bytes, sum(flows) AS flows "
            f"FROM {src} WHERE {out_of} OR {into} GROUP BY peer, direction ORDER BY bytes DESC LIMIT 50",
            unit="bytes", overrides=[_unit("flows", "short")],
        ),
        Panel(
            "piechart", "Path mix",
            f"SELECT if(path = '', 'unknown', path) AS path, sum({SCALED_BYTES}) AS bytes "
            f"FROM {raw_flows(database, scope)} WHERE {out_of} OR {into} GROUP BY path ORDER BY bytes DESC",
            width=8, unit="bytes", options={"reduceOptions": {"values": True, "calcs": ["sum"]}},
        ),
        Panel(
            "timeseries", "Path mix over time",
            f"SELECT $__timeInterval(event_end) AS time, if(path = '', 'unknown', path) AS path, "
            f"sum({SCALED_BYTES}) * 8 / $__interval_s AS bps FROM {raw_flows(database, scope)} "
            f"WHERE {out_of} OR {into} GROUP BY time, path ORDER BY time",
            width=16, unit="bps",
        ),
        Panel(
            "table", "Top pods",
            "SELECT if(src_tenant IN (${tenant:singlequote}), src_namespace, dst_namespace) AS namespace, "
            "if(src_tenant IN (${tenant:singlequote}), src_pod, dst_pod) AS pod, "
            "if(src_tenant IN (${tenant:singlequote}), src_center, dst_center) AS center, "
            f"sum({SCALED_BYTES}) AS bytes, sum({SCALED_PACKETS}) AS packets, count() AS flows, "
            "uniqExact(if(src_tenant IN (${tenant:singlequote}), dst_addr, src_addr)) AS peers "
            f"FROM {raw_flows(database, scope)} WHERE {out_of} OR {into} "
            f"GROUP BY namespace, pod, center HAVING pod != '' ORDER BY bytes DESC LIMIT {TOP_PODS}",
            width=24, height=10, unit="bytes",
            overrides=[_unit("packets", "short"), _unit("flows", "short"), _unit("peers", "short")],
        ),
    ]  # fmt: skip
    return d


__all__ = ["UID", "build"]
