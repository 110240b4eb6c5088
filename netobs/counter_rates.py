"""Interface counter snapshots → per-interval deltas, rates and utilisation (query time).

``interface_counters`` keeps each sFlow counter sample as exported (raw, like flow
counters). This query pairs every snapshot with the previous one of the same interface
(agent, sub-agent, data source, ifIndex) and returns what happened in between.

A counter that went down either wrapped or was reset (agent or interface restart):
- a wrap is taken only when it is plausible: the difference modulo the counter's width
  (2^32 for the packet, error and discard counters, 2^64 for octets, which sFlow exports
  as ifHCInOctets/ifHCOutOctets) is no more than the link could carry in the interval at
  its ``if_speed`` (octets; packets of at least 64 bytes), with 50% slack for jitter in
  the collector's receive times;
- otherwise the interface's counters restarted from 0 (``reset = 1``): every delta of
  that interval is then the new value itself, as Prometheus's ``increase`` does, never a
  huge or negative number. Octets decide (they are 64-bit and never wrap in practice):
  an agent that restarts resets all of its counters together.
An interface whose ``if_speed`` is 0 (unknown) cannot wrap plausibly: any decrease is a reset.

Window functions need a modern server (chdb, ClickHouse ≥ 21); the legacy dialect stores
counters but cannot run this.
"""

from __future__ import annotations

import ipaddress
from datetime import datetime

from netobs import ddl, schema

#: Counters turned into per-interval deltas (all of them except the Ethernet ones, plus FCS).
DELTAS: tuple[str, ...] = (
    "in_octets",
    "out_octets",
    "in_unicast_packets",
    "in_multicast_packets",
    "in_broadcast_packets",
    "out_unicast_packets",
    "out_multicast_packets",
    "out_broadcast_packets",
    "in_errors",
    "out_errors",
    "in_discards",
    "out_discards",
    "in_unknown_protos",
    "fcs_errors",
)
_OCTETS = ("in_octets", "out_octets")
_KEY = "exporter, observation_domain, source_id, if_index"
_SLACK = 1.5


def _bound(name: str) -> str:
    """Most a counter can grow in the interval at line rate (0 when the speed is unknown)."""
    per_second = "if_speed / 8" if name in _OCTETS else "if_speed / 512"  # 64-byte frames
    return f"({per_second} * interval_s * {_SLACK})"


def _modular(name: str) -> str:
    """How much ``name`` grew if it went down by wrapping at its width (UInt32 or UInt64)."""
    diff = f"(s.`{name}` - s.`prev_{name}`)"
    return (
        f"toUInt64(toUInt32({diff}))"
        if schema.COUNTER_BY_NAME[name].ch_type == "UInt32"
        else f"toUInt64({diff})"
    )


def _wrap(name: str) -> str:
    """Whether ``name`` went down by a plausible wrap."""
    return f"(s.`{name}` < s.`prev_{name}` AND {_modular(name)} <= {_bound(name)})"


def _delta(name: str) -> str:
    # Qualified: the deltas reuse the counters' names as aliases, which would shadow them.
    cur, prev = f"s.`{name}`", f"s.`prev_{name}`"
    # A counter that went down implausibly on its own (not a wrap) restarted too.
    return (
        f"multiIf(reset = 1, toUInt64({cur}), {cur} >= {prev}, toUInt64({cur} - {prev}),"
        f" {_wrap(name)}, {_modular(name)}, toUInt64({cur}))"
    )


def _ms(t: datetime | int) -> int:
    return t if isinstance(t, int) else int(t.timestamp() * 1000)


def rates_sql(
    database: str,
    *,
    start: datetime | int | None = None,
    end: datetime | int | None = None,
    exporter: str | None = None,
    if_index: int | None = None,
    lookback_s: int = 3600,
    table: str = ddl.INTERFACE_COUNTERS,
) -> str:
    """SELECT of one row per interface and interval ending in [start, end).

    ``start``/``end`` are datetimes or epoch milliseconds. The snapshot before the first
    interval is looked for up to ``lookback_s`` earlier (a polling interval is usually
    10-60 s); an interface's first snapshot has no interval and gives no row. Columns:
    time, interval_s, the interface (exporter, observation_domain, source_id, if_index,
    if_name, if_speed, exporter_node, exporter_center), reset, one delta per
    :data:`DELTAS` name, in/out_packets (the sums), in/out_bps, in/out_pps and
    in/out_utilisation (bps / if_speed, NULL when the speed is unknown).
    """
    inner: list[str] = []
    outer: list[str] = []
    if start is not None:
        inner.append(f"time_received >= fromUnixTimestamp64Milli({_ms(start) - lookback_s * 1000}, 'UTC')")
        outer.append(f"time >= fromUnixTimestamp64Milli({_ms(start)}, 'UTC')")
    if end is not None:
        inner.append(f"time_received < fromUnixTimestamp64Milli({_ms(end)}, 'UTC')")
    if exporter is not None:
        inner.append(f"exporter = toIPv6('{ipaddress.ip_address(exporter)}')")
    if if_index is not None:
        inner.append(f"if_index = {int(if_index)}")
    return _select(database, table, inner, outer)


#: The parameterized view converge creates (modern dialect): ``SELECT * FROM
#: netobs.interface_counter_rates(start='2026-11-30 08:00:00', end='2026-11-30 09:00:00')``
#: from ``netobs query`` or Grafana; times in UTC, lookback one hour.
VIEW = "interface_counter_rates"
_START, _END = "{start:DateTime64(3, 'UTC')}", "{end:DateTime64(3, 'UTC')}"


def create_view(database: str, cluster: str | None = None) -> str:
    """``CREATE OR REPLACE VIEW`` of :func:`rates_sql` with ``start``/``end`` parameters."""
    on = f" ON CLUSTER '{cluster}'" if cluster else ""
    inner = [f"time_received >= {_START} - INTERVAL 3600 SECOND", f"time_received < {_END}"]
    select = _select(database, ddl.INTERFACE_COUNTERS, inner, [f"time >= {_START}"])
    return f"CREATE OR REPLACE VIEW `{database}`.`{VIEW}`{on} AS\n{select}"


def _select(database: str, table: str, inner: list[str], outer: list[str]) -> str:
    lags = ",\n        ".join(f"lagInFrame(`{n}`) OVER w AS `prev_{n}`" for n in DELTAS)
    wraps = " OR ".join(f"(s.`{n}` < s.`prev_{n}` AND NOT {_wrap(n)})" for n in _OCTETS)
    deltas = ",\n    ".join(f"{_delta(n)} AS `{n}`" for n in DELTAS)
    where = f"\n    WHERE {' AND '.join(inner)}" if inner else ""
    return f"""SELECT
    time, interval_s, exporter, observation_domain, source_id, if_index, if_name, if_speed,
    exporter_node, exporter_center, reset,
    {", ".join(f"`{n}`" for n in DELTAS)},
    in_unicast_packets + in_multicast_packets + in_broadcast_packets AS in_packets,
    out_unicast_packets + out_multicast_packets + out_broadcast_packets AS out_packets,
    in_octets * 8 / interval_s AS in_bps,
    out_octets * 8 / interval_s AS out_bps,
    in_packets / interval_s AS in_pps,
    out_packets / interval_s AS out_pps,
    if(if_speed = 0, NULL, in_bps / if_speed) AS in_utilisation,
    if(if_speed = 0, NULL, out_bps / if_speed) AS out_utilisation
FROM (
SELECT
    time, interval_s, exporter, observation_domain, source_id, if_index, if_name, if_speed,
    exporter_node, exporter_center, toUInt8({wraps}) AS reset,
    {deltas}
FROM (
    SELECT
        time_received AS time, exporter, observation_domain, source_id, if_index, if_name, if_speed,
        exporter_node, exporter_center, {", ".join(f"`{n}`" for n in DELTAS)},
        row_number() OVER w AS nth,
        dateDiff('millisecond', lagInFrame(time_received) OVER w, time_received) / 1000 AS interval_s,
        {lags}
    FROM `{database}`.`{table}`{where}
    WINDOW w AS (PARTITION BY {_KEY} ORDER BY time_received ROWS BETWEEN 1 PRECEDING AND CURRENT ROW)
) AS s
WHERE nth > 1 AND interval_s > 0{" AND " + " AND ".join(outer) if outer else ""}
)
ORDER BY {_KEY}, time"""
