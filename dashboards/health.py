"""Collection health: flows per exporter, the sampling rates they report, when each was last
heard from and where its gaps are, and interface utilisation from sFlow counters.

``exporter_health_1m`` is an AggregatingMergeTree of SimpleAggregateFunction columns: reads
combine them again with the same functions (sum, groupUniqArrayArray, min, max). Interface
rates come from the ``interface_counter_rates`` parameterized view over the time range.
"""

from __future__ import annotations

from dashboards.model import Dashboard, Panel, query_variable
from dashboards.model import unit_override as _unit
from dashboards.sql import any_of, exporter_name, table

UID = "netobs-collection-health"
#: A minute without records longer than this many seconds after the previous one is a gap.
GAP_S = 120


def build(database: str, uid: str) -> Dashboard:
    health = table(database, "exporter_health_1m")
    name = exporter_name()
    rates = f"{table(database, 'interface_counter_rates')}(start = $__fromTime_ms, end = $__toTime_ms)"
    exporters = any_of("exporter", name)
    d = Dashboard(
        UID,
        "Collection health",
        "Are the exporters sending, at which sampling rates, with what gaps; interface utilisation.",
        ("netobs", "health", "collection"),
        uid,
    )
    d.variables = [
        query_variable(
            "exporter",
            "Exporter",
            f"SELECT DISTINCT {name} AS v FROM {health} WHERE $__timeFilter(time) ORDER BY v",
            uid,
        ),
        query_variable(
            "center",
            "Center",
            f"SELECT DISTINCT exporter_center AS v FROM {table(database, 'interface_counters')} "
            "WHERE $__timeFilter_ms(time_received) AND v != '' ORDER BY v",
            uid,
        ),
    ]
    src = f"(SELECT * FROM {health} WHERE $__timeFilter(time) AND {exporters})"
    counting_src = (
        f"(SELECT * FROM {table(database, 'counting_1m')} WHERE $__timeFilter(time) AND {exporters})"
    )
    d.panels = [
        Panel(
            "stat", "Exporters sending", f"SELECT uniqExact(exporter) AS exporters FROM {src}",
            width=6, height=5,
        ),
        Panel(
            "stat", "Silent for longest",
            f"SELECT dateDiff('second', max(last_seen), now64(3)) AS silent_s FROM {src} GROUP BY exporter "
            "ORDER BY silent_s DESC LIMIT 1",
            width=6, height=5, unit="s", steps=((GAP_S, "orange"), (600, "red")),
        ),
        Panel(
            "stat", "Records per second",
            f"SELECT sum(flows) / greatest(dateDiff('second', $__fromTime, $__toTime), 1) AS rps FROM {src}",
            width=6, height=5, unit="short",
        ),
        Panel(
            "stat", "Exporters with unknown sampling",
            f"SELECT uniqExactIf(exporter, has(sampling_rates, 0)) AS exporters FROM {src}",
            width=6, height=5, steps=((1, "orange"),),
            description="Flows with sampling rate 0 are counted once: their traffic is underestimated.",
        ),
        Panel(
            "timeseries", "Records per exporter",
            f"SELECT $__timeInterval(time) AS time, {name} AS exporter_ip, sum(flows) / $__interval_s AS rps "
            f"FROM {src} GROUP BY time, exporter_ip ORDER BY time",
            width=24, unit="short",
        ),
        Panel(
            "table", "Exporters",
            f"SELECT {name} AS exporter_ip, type, observation_domain, sum(flows) AS records, "
            "arraySort(groupUniqArrayArray(sampling_rates)) AS sampling_rates, min(first_seen) AS first_seen, "
            "max(last_seen) AS last_seen, dateDiff('second', last_seen, now64(3)) AS silent_s "
            f"FROM {src} GROUP BY exporter_ip, type, observation_domain ORDER BY exporter_ip, type",
            unit="short", overrides=[_unit("silent_s", "s"), _unit("first_seen", "dateTimeAsIso"),
                                     _unit("last_seen", "dateTimeAsIso")],
        ),
        Panel(
            "table", "Gaps",
            "SELECT exporter_ip, count() AS gaps, max(gap_s) AS longest_gap_s, max(resumed) AS last_resumed "
            f"FROM (SELECT {name} AS exporter_ip, time AS resumed, "
            "dateDiff('second', lagInFrame(time) OVER w, time) AS gap_s, row_number() OVER w AS nth "
            f"FROM (SELECT exporter, time FROM {src} GROUP BY exporter, time) "
            "WINDOW w AS (PARTITION BY exporter ORDER BY time ROWS BETWEEN 1 PRECEDING AND CURRENT ROW)) "
            f"WHERE nth > 1 AND gap_s > {GAP_S} GROUP BY exporter_ip ORDER BY longest_gap_s DESC",
            unit="short", overrides=[_unit("longest_gap_s", "s"), _unit("last_resumed", "dateTimeAsIso")],
            description=f"Minutes after a silence of more than {GAP_S} s, per exporter.",
        ),
        Panel(
            "table", "What was counted, and why not",
            f"SELECT {name} AS exporter_ip, type, observer, count_reason, counted, sum(flows) AS records, "
            "sumIf(flows, named = 0) AS unnamed_records, sum(bytes) AS scaled_bytes "
            f"FROM {counting_src} GROUP BY exporter_ip, type, observer, count_reason, counted "
            "ORDER BY exporter_ip, type, counted DESC, records DESC",
            unit="short", overrides=[_unit("scaled_bytes", "bytes")],
            description="Every record received, by what the counting model did with it (netobs.counting): "
            "counted once at the first observation point of its packets, or left out as another observation "
            "of packets counted elsewhere. Unnamed: neither end is a pod, a node or a known network.",
        ),
        Panel(
            "timeseries", "Interface utilisation (max of in/out)",
            "SELECT $__timeInterval(time) AS time, concat(exporter_node, ' ', if(if_name = '', toString(if_index), "
            "if_name)) AS interface, max(greatest(ifNull(in_utilisation, 0), ifNull(out_utilisation, 0))) AS util "
            f"FROM {rates} WHERE {any_of('center', 'exporter_center')} "
            "GROUP BY time, interface ORDER BY time",
            unit="percentunit", steps=((0.7, "orange"), (0.9, "red")),
        ),
        Panel(
            "table", "Busiest interfaces",
            f"SELECT {exporter_name()} AS exporter_ip, exporter_node, exporter_center, if_index, if_name, "
            "if_speed, max(in_bps) AS max_in_bps, max(out_bps) AS max_out_bps, "
            "max(greatest(ifNull(in_utilisation, 0), ifNull(out_utilisation, 0))) AS max_util, "
            "sum(in_errors + out_errors) AS errors, sum(in_discards + out_discards) AS discards, "
            f"sum(reset) AS resets FROM {rates} WHERE {any_of('center', 'exporter_center')} "
            "GROUP BY exporter_ip, exporter_node, exporter_center, if_index, if_name, if_speed "
            "ORDER BY max_util DESC, max_in_bps + max_out_bps DESC LIMIT 50",
            unit="bps", steps=((0.7, "orange"), (0.9, "red")),
            overrides=[_unit("max_util", "percentunit"), _unit("if_speed", "bps"), _unit("errors", "short"),
                       _unit("discards", "short"), _unit("resets", "short"), _unit("if_index", "short")],
        ),
    ]  # fmt: skip
    return d


__all__ = ["UID", "build"]
