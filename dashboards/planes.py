"""Planes and QoS: traffic between network planes, the DSCP each traffic carries, and the
``qos_marking`` violations of the policy (mismarked payment traffic, backup marked too high).

Planes and DSCP are not rollup keys: the panels read raw ``flows`` (each flow counted once),
bounded by the time range and a LIMIT. The plane variable's values come from the data.
"""

from __future__ import annotations

from dashboards.model import Dashboard, Panel, query_variable
from dashboards.model import unit_override as _unit
from dashboards.sql import SCALED_BYTES, any_of, raw_flows, table

UID = "netobs-planes-qos"


def _plane_names(database: str) -> str:
    union = " UNION ALL ".join(
        f"SELECT {c} AS v FROM {table(database, 'flows')} WHERE $__timeFilter(event_end)"
        for c in ("src_plane", "dst_plane")
    )
    return f"SELECT DISTINCT v FROM ({union}) WHERE v != '' ORDER BY v"


def build(database: str, uid: str) -> Dashboard:
    flows = raw_flows(database, any_of("plane", "src_plane", "dst_plane"))
    d = Dashboard(
        UID,
        "Planes and QoS",
        "Traffic between network planes, DSCP marking per traffic, QoS marking violations.",
        ("netobs", "planes", "qos"),
        uid,
    )
    d.variables = [query_variable("plane", "Plane", _plane_names(database), uid)]
    plane = "if({c} = '', '(none)', {c})"
    violations = (
        f"(SELECT * FROM (SELECT * FROM {table(database, 'violations')} FINAL "
        f"WHERE $__timeFilter_ms(window_start) AND rule_type = 'qos_marking') WHERE deleted = 0)"
    )
    d.panels = [
        Panel(
            "table", "Traffic by plane pair",
            f"SELECT {plane.format(c='src_plane')} AS from_plane, {plane.format(c='dst_plane')} AS to_plane, "
            f"sum({SCALED_BYTES}) AS bytes, count() AS flows FROM {flows} "
            "GROUP BY from_plane, to_plane ORDER BY bytes DESC LIMIT 50",
            width=12, unit="bytes", overrides=[_unit("flows", "short")],
        ),
        Panel(
            "timeseries", "Traffic per source plane",
            f"SELECT $__timeInterval(event_end) AS time, {plane.format(c='src_plane')} AS plane, "
            f"sum({SCALED_BYTES}) * 8 / $__interval_s AS bps FROM {flows} GROUP BY time, plane ORDER BY time",
            width=12, unit="bps",
        ),
        Panel(
            "table", "DSCP per traffic (QoS)",
            "SELECT if(src_tenant = '', '(unknown)', src_tenant) AS tenant, dst_port, "
            "multiIf(bitShiftRight(tos, 2) = 46, 'EF', bitShiftRight(tos, 2) = 0, 'DF', "
            "bitAnd(bitShiftRight(tos, 2), 7) = 0, concat('CS', toString(bitShiftRight(tos, 5))), "
            "concat('AF', toString(bitShiftRight(tos, 5)), toString(bitShiftRight(bitAnd(bitShiftRight(tos, 2), 7), 1)))"
            ") AS dscp, "
            f"sum({SCALED_BYTES}) AS bytes, count() AS flows FROM {flows} "
            "GROUP BY tenant, dst_port, dscp ORDER BY bytes DESC LIMIT 50",
            width=12, unit="bytes", overrides=[_unit("flows", "short")],
        ),
        Panel(
            "table", "QoS marking violations",
            "SELECT rule, severity, src_tenant, dst_tenant, src_zone, dst_zone, sum(bytes) AS bytes, "
            f"sum(flows) AS flows, min(first_seen) AS first_seen, max(last_seen) AS last_seen FROM {violations} "
            "GROUP BY rule, severity, src_tenant, dst_tenant, src_zone, dst_zone ORDER BY bytes DESC LIMIT 50",
            width=12, unit="bytes", overrides=[_unit("flows", "short")],
        ),
    ]  # fmt: skip
    return d


__all__ = ["UID", "build"]
