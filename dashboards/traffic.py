"""Operations: cross-center traffic. Center × center matrix, rates per center pair, cross-center,
cross-site and disaster-recovery traffic, top tenant pairs and top services.

Center names come from the data (variables fed from SQL); the DR center is a variable too,
its default taken from ``analytics.dr_traffic.dr_centers`` when the dashboard is built.
Cross-site traffic needs the flow's path (sites are not rollup keys), so that one panel reads
raw flows; everything else reads the rollups.
"""

from __future__ import annotations

from dashboards.model import Dashboard, Panel, query_variable
from dashboards.model import unit_override as _unit
from dashboards.sql import BPS, SCALED_BYTES, any_of, names, raw_flows, rollup

UID = "netobs-cross-center"
CENTERS = ("src_center", "dst_center")


def build(database: str, uid: str, dr_centers: tuple[str, ...] = ()) -> Dashboard:
    centers = any_of("center", *CENTERS)
    src = rollup(database, centers)
    d = Dashboard(
        UID,
        "Operations: cross-center traffic",
        "Traffic between data centers and sites, from the flow rollups (sampling-scaled).",
        ("netobs", "operations", "traffic"),
        uid,
    )
    d.variables = [
        query_variable("center", "Center", names(database, CENTERS), uid),
        query_variable(
            "dr_center",
            "DR center",
            names(database, CENTERS),
            uid,
            multi=False,
            current=dr_centers[0] if dr_centers else None,
        ),
    ]
    d.panels = [
        Panel(
            "stat", "Traffic in range", f"SELECT sum(bytes) AS bytes FROM {src}", width=6, height=5,
            unit="bytes", description="Bytes seen in the range, all center pairs.",
        ),
        Panel(
            "stat", "Cross-center share",
            f"SELECT sumIf(bytes, src_center != dst_center) / greatest(sum(bytes), 1) AS share FROM {src}",
            width=6, height=5, unit="percentunit", steps=((0.3, "orange"), (0.6, "red")),
        ),
        Panel(
            "stat", "Traffic touching the DR center",
            "SELECT sumIf(bytes, src_center = ${dr_center:singlequote} OR dst_center = ${dr_center:singlequote}) AS bytes "
            f"FROM {src}",
            width=6, height=5, unit="bytes", steps=((1, "orange"),),
            description="Production traffic to or from the disaster-recovery center should be replication only.",
        ),
        Panel(
            "stat", "Peak cross-center rate",
            f"SELECT max(bps) AS bps FROM (SELECT $__timeInterval(time) AS t, {BPS} AS bps FROM {src} "
            "WHERE src_center != dst_center GROUP BY t)",
            width=6, height=5, unit="bps",
        ),
        Panel(
            "table", "Center × center matrix",
            "SELECT src_center, dst_center, sum(bytes) AS bytes, sum(packets) AS packets, sum(flows) AS flows, "
            f"bytes * 8 / greatest(dateDiff('second', $__fromTime, $__toTime), 1) AS avg_bps FROM {src} "
            "GROUP BY src_center, dst_center ORDER BY src_center, dst_center",
            height=9, unit="bytes",
            overrides=[_unit("avg_bps", "bps"), _unit("packets", "short"), _unit("flows", "short")],
        ),
        Panel(
            "timeseries", "Rate per center pair",
            f"SELECT $__timeInterval(time) AS time, concat(src_center, ' → ', dst_center) AS pair, {BPS} AS bps "
            f"FROM {src} GROUP BY time, pair ORDER BY time",
            height=9, unit="bps",
        ),
        Panel(
            "timeseries", "Cross-center traffic",
            f"SELECT $__timeInterval(time) AS time, {BPS} AS bps FROM {src} "
            "WHERE src_center != dst_center GROUP BY time ORDER BY time",
            unit="bps",
        ),
        Panel(
            "timeseries", "Cross-site traffic",
            f"SELECT $__timeInterval(event_end) AS time, sum({SCALED_BYTES}) * 8 / $__interval_s AS bps "
            f"FROM {raw_flows(database, centers)} WHERE path = 'cross_site' GROUP BY time ORDER BY time",
            unit="bps", description="Raw flows whose path crosses sites (sites are not rollup keys).",
        ),
        Panel(
            "timeseries", "DR center traffic by zone",
            "SELECT $__timeInterval(time) AS time, "
            "concat(if(dst_center = ${dr_center:singlequote}, 'to ', 'from '), "
            "if(dst_center = ${dr_center:singlequote}, src_zone, dst_zone)) AS zone, "
            f"{BPS} AS bps FROM {rollup(database)} "
            "WHERE (src_center = ${dr_center:singlequote}) != (dst_center = ${dr_center:singlequote}) "
            "GROUP BY time, zone ORDER BY time",
            unit="bps",
        ),
        Panel(
            "bargauge", "Protocols",
            "SELECT multiIf(proto = 6, 'tcp', proto = 17, 'udp', proto = 1, 'icmp', proto = 58, 'icmpv6', "
            f"toString(proto)) AS protocol, sum(bytes) AS bytes FROM {src} GROUP BY protocol ORDER BY bytes DESC",
            unit="bytes",
        ),
        Panel(
            "table", "Top tenant pairs",
            "SELECT src_tenant, dst_tenant, sum(bytes) AS bytes, sum(flows) AS flows, "
            "groupUniqArray(concat(src_center, '→', dst_center)) AS center_pairs "
            f"FROM {src} GROUP BY src_tenant, dst_tenant ORDER BY bytes DESC LIMIT 20",
            unit="bytes", overrides=[_unit("flows", "short")],
        ),
        Panel(
            "table", "Top services",
            "SELECT dst_port, proto, sum(bytes) AS bytes, sum(packets) AS packets, "
            f"uniqExact(dst_tenant) AS tenants FROM {src} "
            "GROUP BY dst_port, proto ORDER BY bytes DESC LIMIT 20",
            unit="bytes", overrides=[_unit("packets", "short"), _unit("tenants", "short")],
        ),
    ]  # fmt: skip
    return d


__all__ = ["UID", "build"]
