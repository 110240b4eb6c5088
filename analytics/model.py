"""The traffic model: SQL pushed down to ClickHouse, pandas only for the statistics.

Volumes come from the 1-minute rollups (scaled by sampling, each packet counted once by the
counting model of :mod:`netobs.counting`, bucketed by the flow's own time); questions about
individual hosts and services (dependencies, fan-out, top flows) read the raw flows with the
same rule (:data:`ONCE`) and the same event time, and orient conversations by who opened them
(``initiator``), not by port numbers. Every builder is a pure function of its arguments, so it
can be tested as text and executed on the real engine.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime

import numpy as np
import pandas as pd

from netobs import counting

ONCE = counting.COUNTED  # count each packet once (see netobs.counting)
SCALE = "if(sampling_rate = 0, 1, sampling_rate)"
#: Requests and records whose initiator is not known: what a client sends (fan-out, scans).
OPENED = "initiator != 'dst'"


def addr(column: str) -> str:
    """Text form of an address column: dotted quad for IPv4-mapped addresses."""
    return f"replaceRegexpOne(IPv6NumToString({column}), '^::ffff:', '')"


def ts(t: datetime) -> str:
    """A ClickHouse DateTime literal in UTC."""
    return f"toDateTime('{t.astimezone(UTC).strftime('%Y-%m-%d %H:%M:%S')}', 'UTC')"


def _name(key: str) -> str:
    """The column name of a key that may be ``expression AS name``."""
    return key.rsplit(" AS ", 1)[-1]


def rollup_series(
    db: str, start: datetime, end: datetime, bucket_s: int, keys: tuple[str, ...], where: str = ""
) -> str:
    """Scaled bytes/packets/flows and sampled packets (``raw_packets``, the Poisson count behind the
    estimate) per bucket and ``keys`` (columns, or ``expression AS name``) from the 1-minute rollup."""
    k = "".join(f", {c}" for c in keys)
    g = "".join(f", {_name(c)}" for c in keys)
    extra = f" AND {where}" if where else ""
    return (
        f"SELECT toStartOfInterval(time, INTERVAL {int(bucket_s)} SECOND) AS t{k}, "
        f"sum(bytes) AS bytes, sum(packets) AS packets, sum(raw_packets) AS raw_packets, sum(flows) AS flows\n"
        f"FROM `{db}`.flows_1m\nWHERE time >= {ts(start)} AND time < {ts(end)}{extra}\n"
        f"GROUP BY t{g}\nORDER BY t{g}"
    )


def _bucket(bucket_s: int | None) -> tuple[str, str]:
    if not bucket_s:
        return "", ""
    return f"toStartOfInterval({counting.EVENT_TIME}, INTERVAL {int(bucket_s)} SECOND) AS t, ", "t, "


def _range(start: datetime, end: datetime) -> str:
    """Raw flows whose event time is in [start, end)."""
    return counting.in_event_range(ts(start), ts(end))


def peer_series(db: str, start: datetime, end: datetime, bucket_s: int, keys: tuple[str, ...]) -> str:
    """Distinct peers (address pairs) per bucket and ``keys``, from the raw flows (rollups cannot count them)."""
    k = "".join(f", {c}" for c in keys)
    return (
        f"SELECT toStartOfInterval({counting.EVENT_TIME}, INTERVAL {int(bucket_s)} SECOND) AS t{k}, "
        "uniqExact(src_addr, dst_addr) AS peers\n"
        f"FROM `{db}`.flows\nWHERE {_range(start, end)} AND {ONCE}\n"
        f"GROUP BY t{k}\nORDER BY t{k}"
    )


def service_pairs(db: str, start: datetime, end: datetime, bucket_s: int | None = None) -> str:
    """Service-to-service pairs (client → server, by who opened the conversation) with their
    centers, scaled bytes and first appearance (per bucket if given)."""
    t, g = _bucket(bucket_s)
    c, v = counting.client, counting.server
    return (
        f"SELECT {t}concat({c('namespace')}, '/', {c('workload')}) AS src_service, "
        f"concat({v('namespace')}, '/', {v('workload')}) AS dst_service, "
        f"{c('center')} AS client_center, {v('center')} AS server_center, "
        f"sum(bytes * {SCALE}) AS bytes, min(event_start) AS first_seen\n"
        f"FROM `{db}`.flows\nWHERE {_range(start, end)} AND {ONCE} "
        "AND src_workload != '' AND dst_workload != ''\n"
        f"GROUP BY {g}src_service, dst_service, client_center, server_center"
    )


def _hour(bucket_s: int) -> str:
    return f"toStartOfInterval({counting.EVENT_TIME}, INTERVAL {int(bucket_s)} SECOND)"


def conversation_observations(db: str, start: datetime, end: datetime, bucket_s: int) -> str:
    """Every observation point of every conversation (client, server, service port, proto), per
    bucket and direction (``reply``: server → client, by the counting model's initiator): which
    exporter saw it, in which center, with how many sampled packets. All records, counted or not:
    where each direction was seen is the point. Grouped on the stored values; addresses are turned
    into text only for the groups."""
    c, v = counting.client, counting.server
    return (
        f"SELECT t, {addr('c_addr')} AS client, {addr('s_addr')} AS server, port, proto, client_center, "
        f"server_center, client_node, server_node, tenant, workload, reply, {addr('exp')} AS exporter, "
        "exporter_center, sampled FROM (\n"
        f"  SELECT {_hour(bucket_s)} AS t, {c('addr')} AS c_addr, {v('addr')} AS s_addr, "
        f"{v('port')} AS port, proto, {c('center')} AS client_center, {v('center')} AS server_center, "
        f"{c('node')} AS client_node, {v('node')} AS server_node, {v('tenant')} AS tenant, "
        f"{v('workload')} AS workload, {counting.IS_REPLY} AS reply, exporter AS exp, "
        "any(exporter_center) AS exporter_center, sum(packets) AS sampled\n"
        f"  FROM `{db}`.flows\n  WHERE {_range(start, end)}\n"
        "  GROUP BY t, c_addr, s_addr, port, proto, client_center, server_center, client_node, server_node, "
        "tenant, workload, reply, exp)"
    )


def dr_kinds(
    db: str, start: datetime, end: datetime, dr_centers: tuple[str, ...], bucket_s: int | None
) -> str:
    """Counted traffic between a DR center and another center by kind (client center, server center,
    zones, the service's tenant, workload, port, proto): per bucket, or over history with the days
    each kind was seen on."""
    c, v = counting.client, counting.server
    centers = ", ".join("'" + x.replace("'", "") + "'" for x in dr_centers) or "''"
    t, g = (f"{_hour(bucket_s)} AS t, ", "t, ") if bucket_s else ("", "")
    days = "" if bucket_s else f", uniqExact(toDate({counting.EVENT_TIME})) AS days"
    return (
        f"SELECT {t}{c('center')} AS client_center, {v('center')} AS server_center, {c('zone')} AS client_zone, "
        f"{v('zone')} AS server_zone, {v('tenant')} AS tenant, {v('workload')} AS workload, "
        f"{c('workload')} AS client_workload, {v('port')} AS port, proto, "
        f"sum(bytes * {SCALE}) AS bytes, sum(packets) AS sampled{days}\n"
        f"FROM `{db}`.flows\nWHERE {_range(start, end)} AND {ONCE} AND src_center != dst_center "
        f"AND (src_center IN ({centers}) OR dst_center IN ({centers}))\n"
        f"GROUP BY {g}client_center, server_center, client_zone, server_zone, tenant, workload, client_workload, "
        "port, proto"
    )


def service_workloads(db: str, start: datetime, end: datetime, tenant: str, port: int) -> str:
    """The server workloads behind a tenant's service port (to name a volume finding), by bytes."""
    v = counting.server
    tq = tenant.replace("\\", "").replace("'", "")
    return (
        f"SELECT {v('workload')} AS workload, sum(bytes * {SCALE}) AS bytes\n"
        f"FROM `{db}`.flows\nWHERE {_range(start, end)} AND {ONCE} AND {v('tenant')} = '{tq}' "
        f"AND {v('port')} = {int(port)}\nGROUP BY workload ORDER BY bytes DESC LIMIT 3"
    )


def fanout(db: str, start: datetime, end: datetime, bucket_s: int, min_distinct: int) -> str:
    """Per bucket and source: distinct destinations and destination ports, above ``min_distinct``,
    with the source's tenant, workload and center."""
    return fanout_scales(db, start, end, ((int(bucket_s), int(min_distinct)),))


def fanout_scales(db: str, start: datetime, end: datetime, scales: tuple[tuple[int, int], ...]) -> str:
    """:func:`fanout` at several period lengths (seconds, min_distinct) in one scan of the flows;
    ``scale_s`` says which period a row is about."""
    parts = []
    for bucket_s, floor in scales:
        parts.append(
            f"SELECT {int(bucket_s)} AS scale_s, toStartOfInterval(b_t, INTERVAL {int(bucket_s)} SECOND) AS t, src_addr AS s, uniqExactMerge(d) AS distinct_dst, "
            "uniqExactMerge(p) AS distinct_ports, any(tn) AS tenant, any(wl) AS workload, any(ct) AS center "
            f"FROM base GROUP BY t, s HAVING greatest(distinct_dst, distinct_ports) >= {int(floor)}"
        )
    base = min(b for b, _ in scales)
    return (
        f"WITH base AS (SELECT toStartOfInterval({counting.EVENT_TIME}, INTERVAL {int(base)} SECOND) AS b_t, "
        "src_addr, uniqExactState(dst_addr) AS d, uniqExactState(dst_port) AS p, "
        "any(src_tenant) AS tn, any(src_workload) AS wl, any(src_center) AS ct "
        f"FROM `{db}`.flows WHERE {_range(start, end)} AND {ONCE} AND {OPENED} "
        "GROUP BY b_t, src_addr)\n"
        f"SELECT scale_s, t, {addr('s')} AS src, distinct_dst, distinct_ports, tenant, workload, center FROM (\n"
        + "\nUNION ALL\n".join(parts)
        + ")\nORDER BY scale_s, t, src"
    )


def dns_long_names(db: str, start: datetime, end: datetime, bucket_s: int, min_length: int) -> str:
    """Per bucket and pod: distinct DNS queries with a long name (``netobs sample``'s L7 rows; a query
    seen on both pods' ports or cut by a flush counts once), their distinct names and the longest."""
    long_q = f"dns_qname_length >= {int(min_length)}"
    return (
        f"SELECT toStartOfInterval(first_seen, INTERVAL {int(bucket_s)} SECOND) AS t, "
        f"{addr('src_addr')} AS src, any(src_pod) AS pod, any(src_namespace) AS namespace, "
        f"uniqExactIf((src_port, dst_addr, dns_qname), {long_q}) AS long_queries, "
        f"uniqExact((src_port, dst_addr, dns_qname)) AS queries, max(dns_qname_length) AS longest\n"
        f"FROM `{db}`.l7_conversations\nWHERE l7_protocol = 'dns' AND first_seen >= {ts(start)} "
        f"AND first_seen < {ts(end)}\nGROUP BY t, src HAVING long_queries > 0 ORDER BY t, src"
    )


def plaintext_after_tls(db: str, h_start: datetime, start: datetime, end: datetime) -> str:
    """Per client and server (pods by namespace/name, else addresses; ``netobs sample``'s L7 rows): the
    TCP conversations that were TLS and plaintext before ``start`` and in [start, end). A conversation
    seen on both pods' ports or cut by a flush counts once. Only pairs with plaintext now and TLS
    before are returned."""
    conv = "(src_addr, src_port, dst_addr, dst_port)"
    before, now = f"first_seen < {ts(start)}", f"first_seen >= {ts(start)}"
    tls, plain = "encryption = 'tls'", "encryption = 'plaintext'"
    return (
        f"SELECT if(src_pod != '', concat(src_namespace, '/', src_pod), {addr('src_addr')}) AS src, "
        f"if(dst_pod != '', concat(dst_namespace, '/', dst_pod), {addr('dst_addr')}) AS dst, "
        "any(src_pod) AS pod, any(src_namespace) AS namespace, any(src_tenant) AS tenant, "
        f"{addr('any(src_addr)')} AS client_addr, "
        f"uniqExactIf({conv}, {before} AND {tls}) AS tls_before, "
        f"uniqExactIf({conv}, {before} AND {plain}) AS plaintext_before, "
        f"uniqExactIf({conv}, {now} AND {tls}) AS tls_now, "
        f"uniqExactIf({conv}, {now} AND {plain}) AS plaintext_now, "
        f"toUnixTimestamp(maxIf(first_seen, {before} AND {tls})) AS last_tls, "
        f"toUnixTimestamp(minIf(first_seen, {now} AND {plain})) AS first_plaintext, "
        f"groupUniqArrayIf(dst_port, {before} AND {tls}) AS tls_ports, "
        f"groupUniqArrayIf(dst_port, {now} AND {plain}) AS plaintext_ports, "
        # 18.16 has no parametric groupUniqArray: the first 8 by arraySlice
        f"arraySlice(groupUniqArrayIf(http_host, {now} AND {plain} AND http_host != ''), 1, 8) AS http_hosts\n"
        f"FROM `{db}`.l7_conversations\nWHERE first_seen >= {ts(h_start)} AND first_seen < {ts(end)} "
        f"AND proto = 6 AND encryption IN ('tls', 'plaintext')\n"
        "GROUP BY src, dst HAVING plaintext_now > 0 AND tls_before > 0 ORDER BY src, dst"
    )


def usual_fanout(db: str, start: datetime, end: datetime, bucket_s: int) -> str:
    """Each source's typical fan-out over history: the 90th percentile of its per-bucket fan-out."""
    return (
        "SELECT src, quantileExact(0.9)(fan) AS usual FROM (\n"
        f"  SELECT toStartOfInterval({counting.EVENT_TIME}, INTERVAL {int(bucket_s)} SECOND) AS t, "
        f"{addr('src_addr')} AS src, greatest(uniqExact(dst_addr), uniqExact(dst_port)) AS fan\n"
        f"  FROM `{db}`.flows WHERE {_range(start, end)} AND {ONCE} AND {OPENED}\n"
        "  GROUP BY t, src)\nGROUP BY src"
    )


def top_flows(db: str, start: datetime, end: datetime, limit: int = 20) -> str:
    """The largest cross-center conversations (evidence for elephants)."""
    return (
        f"SELECT src_center, dst_center, {addr('src_addr')} AS src, {addr('dst_addr')} AS dst, "
        f"dst_port, sum(bytes * {SCALE}) AS bytes\n"
        f"FROM `{db}`.flows\nWHERE {_range(start, end)} AND {ONCE} "
        "AND src_center != dst_center\n"
        f"GROUP BY src_center, dst_center, src, dst, dst_port\nORDER BY bytes DESC\nLIMIT {int(limit)}"
    )


def exporter_activity(db: str, start: datetime, end: datetime, bucket_s: int) -> str:
    """Flows per exporter and bucket from the exporter-health rollup (0 rows = silence)."""
    return (
        f"SELECT toStartOfInterval(time, INTERVAL {int(bucket_s)} SECOND) AS t, {addr('exporter')} AS exporter, "
        "sum(flows) AS flows\n"
        f"FROM `{db}`.exporter_health_1m\nWHERE time >= {ts(start)} AND time < {ts(end)}\n"
        "GROUP BY t, exporter\nORDER BY t, exporter"
    )


def exporter_centers(db: str, start: datetime, end: datetime) -> str:
    """Which center each exporter belongs to (from the enriched flows)."""
    return (
        f"SELECT {addr('exporter')} AS exporter, anyHeavy(exporter_center) AS center\n"
        f"FROM `{db}`.flows\nWHERE time_received >= {ts(start)} AND time_received < {ts(end)} "
        "AND exporter_center != ''\nGROUP BY exporter"
    )


#: A record reaching into a window from a later one is at most this long (the active timeouts of
#: exporters are minutes): pod_rates reads the records ending up to this long after the window.
RECORD_SPAN_S = 3600


def pod_rates(db: str, start: datetime, end: datetime, bucket_s: int) -> str:
    """Scaled bytes and sampled packets per pod, direction (``egress``: the pod is the source;
    ``ingress``: the destination) and pair of buckets (``b0``: where its records start, ``b1``:
    where they end; bucket numbers of ``bucket_s``), counted once. Each record is spread over the
    buckets it covers in proportion to its time in each: ``first_*`` goes to b0, ``last_*`` to b1
    (when b1 > b0) and ``mid_*`` to every bucket between (see :func:`spread_rates`)."""
    b = int(bucket_s) * 1000
    rng = (
        f"time_received >= {ts(start)} - INTERVAL {counting.MAX_CLOCK_AHEAD_S} SECOND "
        f"AND time_received < {ts(end)} + INTERVAL {RECORD_SPAN_S + counting.ALLOWED_LATENESS_S} SECOND "
        f"AND event_end >= {ts(start)} AND event_start < {ts(end)} AND {ONCE}"
    )
    sides = " UNION ALL ".join(
        f"SELECT {end_}_cluster AS cluster, {end_}_namespace AS namespace, {end_}_pod AS pod, "
        f"'{direction}' AS direction, toUnixTimestamp64Milli(event_start) AS s, "
        f"toUnixTimestamp64Milli(event_end) AS e, bytes * {SCALE} AS scaled, packets AS sampled "
        f"FROM `{db}`.flows WHERE {rng} AND {end_}_pod != ''"
        for end_, direction in (("src", "egress"), ("dst", "ingress"))
    )
    d = "greatest(e - s, 0)"
    first = f"if({d} = 0, 1, (least(e, (intDiv(s, {b}) + 1) * {b}) - s) / {d})"
    last = f"if(intDiv(e, {b}) > intDiv(s, {b}), (e - intDiv(e, {b}) * {b}) / {d}, 0)"
    mid = f"if(intDiv(e, {b}) > intDiv(s, {b}) + 1, {b} / {d}, 0)"
    return (
        f"SELECT cluster, namespace, pod, direction, intDiv(s, {b}) AS b0, intDiv(e, {b}) AS b1, "
        f"sum(scaled * {first}) AS first_bytes, sum(scaled * {last}) AS last_bytes, "
        f"sum(scaled * {mid}) AS mid_bytes, sum(sampled * {first}) AS first_packets, "
        f"sum(sampled * {last}) AS last_packets, sum(sampled * {mid}) AS mid_packets\n"
        f"FROM ({sides})\nGROUP BY cluster, namespace, pod, direction, b0, b1"
    )


def spread_rates(parts: pd.DataFrame, start: datetime, end: datetime, bucket_s: int) -> pd.DataFrame:
    """:func:`pod_rates`'s rows as one row per pod, direction and bucket of [start, end): time,
    cluster, namespace, pod, direction, bytes, raw_packets."""
    cols = ["time", "cluster", "namespace", "pod", "direction", "bytes", "raw_packets"]
    if parts.empty:
        return pd.DataFrame(columns=cols)
    b0 = parts["b0"].to_numpy(np.int64)
    b1 = np.maximum(parts["b1"].to_numpy(np.int64), b0)
    n = b1 - b0 + 1
    row = np.repeat(np.arange(len(parts)), n)
    bucket = b0[row] + (np.arange(len(row)) - np.repeat(np.cumsum(n) - n, n))
    is_first, is_last = bucket == b0[row], (bucket == b1[row]) & (b1[row] > b0[row])
    out = {}
    for name, prefix in (("bytes", "bytes"), ("raw_packets", "packets")):
        first, last, mid = (parts[f"{w}_{prefix}"].to_numpy(float)[row] for w in ("first", "last", "mid"))
        out[name] = np.where(is_first, first, np.where(is_last, last, mid))
    df = pd.DataFrame(
        {
            "time": pd.to_datetime(bucket * int(bucket_s), unit="s", utc=True),
            **{k: parts[k].to_numpy()[row] for k in ("cluster", "namespace", "pod", "direction")},
            **out,
        }
    )
    df = df[(df["time"] >= pd.Timestamp(start)) & (df["time"] < pd.Timestamp(end))]
    keys = ["time", "cluster", "namespace", "pod", "direction"]
    return df.groupby(keys, as_index=False)[["bytes", "raw_packets"]].sum()[cols]


def pod_limits_sql(db: str, start: datetime, end: datetime) -> str:
    """Pod versions overlapping [start, end) from the metadata store (their attributes as JSON)."""
    lo, hi = int(start.timestamp() * 1000), int(end.timestamp() * 1000)
    return (
        "SELECT key, toUnixTimestamp64Milli(valid_from) AS f, toUnixTimestamp64Milli(valid_to) AS t, attrs "
        f"FROM `{db}`.metadata_versions FINAL WHERE kind = 'pod' "
        f"AND toUnixTimestamp64Milli(valid_from) < {hi} AND toUnixTimestamp64Milli(valid_to) > {lo}"
    )


def pod_limits(rows: list[dict]) -> pd.DataFrame:
    """Kube-OVN rate limits (``ingress_rate_mbps``/``egress_rate_mbps`` of pod versions) as rows:
    cluster, namespace, pod, direction, limit_mbps, valid_from, valid_to."""
    out = []
    for r in rows:
        a = json.loads(r["attrs"])
        for direction in ("ingress", "egress"):
            mbps = float(a.get(f"{direction}_rate_mbps") or 0)
            if mbps > 0:
                out.append(
                    (
                        a.get("cluster", ""),
                        a["namespace"],
                        a["name"],
                        direction,
                        mbps,
                        int(r["f"]),
                        int(r["t"]),
                    )
                )
    cols = ["cluster", "namespace", "pod", "direction", "limit_mbps", "valid_from", "valid_to"]
    return pd.DataFrame(out, columns=cols)
