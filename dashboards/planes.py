"""Planes and QoS: traffic between network planes, the DSCP each traffic carries, and the
``qos_marking`` violations of the policy (mismarked payment traffic, backup marked too high).

The traffic panels read the ``planes_qos_1m`` rollup (plane pair, source tenant, port, protocol and
DSCP per minute, each flow counted once, scaled by sampling and spread over the minutes it covers,
:data:`netobs.ddl.ROLLUPS`), not the raw flows. The plane variable's values come from it too.
"""

from __future__ import annotations

from dashboards.model import Dashboard, Panel, query_variable
from dashboards.model import unit_override as _unit
from dashboards.sql import any_of, table

UID = "netobs-planes-qos"


ROLLUP = "planes_qos_1m"
#: The name of a DSCP code point (``dscp`` column): DF, EF, VOICE-ADMIT, LE, CS0-7, AF11-AF43 (RFC
#: 2474, 2597, 3246, 5865, 8622); any other value as ``DSCP n``, so that a code point no standard
#: names (35, 1 bit off AF41) never shows under a standard class's name.
DSCP_NAME = (
    "multiIf(dscp = 0, 'DF', dscp = 46, 'EF', dscp = 44, 'VOICE-ADMIT', dscp = 1, 'LE', "
    "bitAnd(dscp, 7) = 0, concat('CS', toString(bitShiftRight(dscp, 3))), "
    "bitAnd(dscp, 1) = 0 AND bitShiftRight(dscp, 3) BETWEEN 1 AND 4, "
    "concat('AF', toString(bitShiftRight(dscp, 3)), toString(bitShiftRight(bitAnd(dscp, 7), 1))), "
    "concat('DSCP ', toString(dscp)))"
)


def _rows(database: str, where: str = "") -> str:
    """The rollup's rows in the time range."""
    extra = f" AND ({where})" if where else ""
    return f"(SELECT * FROM {table(database, ROLLUP)} WHERE $__timeFilter(time){extra})"


def _plane_names(database: str) -> str:
    union = " UNION ALL ".join(
        f"SELECT {c} AS v FROM {table(database, ROLLUP)} WHERE $__timeFilter(time)"
        for c in ("src_plane", "dst_plane")
    )
    return f"SELECT DISTINCT v FROM ({union}) WHERE v != '' ORDER BY v"


def build(database: str, uid: str) -> Dashboard:
    flows = _rows(database, any_of("plane", "src_plane", "dst_plane"))
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
            f"sum(bytes) AS bytes, sum(flows) AS flows FROM {flows} "
            "GROUP BY from_plane, to_plane ORDER BY bytes DESC LIMIT 50",
            width=12, unit="bytes", overrides=[_unit("flows", "short")],
        ),
        Panel(
            "timeseries", "Traffic per source plane",
            f"SELECT $__timeInterval(time) AS time, {plane.format(c='src_plane')} AS plane, "
            f"sum(bytes) * 8 / $__interval_s AS bps FROM {flows} GROUP BY time, plane ORDER BY time",
            width=12, unit="bps",
        ),
        Panel(
            "table", "DSCP per traffic (QoS)",
            "SELECT if(src_tenant = '', '(unknown)', src_tenant) AS tenant, dst_port, "
            f"{DSCP_NAME} AS class, "
            f"sum(bytes) AS bytes, sum(flows) AS flows FROM {flows} "
            "GROUP BY tenant, dst_port, class ORDER BY bytes DESC LIMIT 50",
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
