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


def service_pairs(
    db: str, start: datetime, end: datetime, bucket_s: int | None = None, cross_only: bool = False
) -> str:
    """Service-to-service pairs (client → server, by who opened the conversation) with their
    centers, scaled bytes, sampled packets (as exported) and first appearance (per bucket if given).
    ``cross_only``: pairs whose two known centers differ (whoever opened it, the same rows)."""
    t, g = _bucket(bucket_s)
    c, v = counting.client, counting.server
    cross = " AND src_center != dst_center AND src_center != '' AND dst_center != ''" if cross_only else ""
    return (
        f"SELECT {t}concat({c('namespace')}, '/', {c('workload')}) AS src_service, "
        f"concat({v('namespace')}, '/', {v('workload')}) AS dst_service, "
        f"{c('center')} AS client_center, {v('center')} AS server_center, "
        f"sum(bytes * {SCALE}) AS bytes, sum(packets) AS sampled, min(event_start) AS first_seen\n"
        f"FROM `{db}`.flows\nWHERE {_range(start, end)} AND {ONCE} "
        f"AND src_workload != '' AND dst_workload != ''{cross}\n"
        f"GROUP BY {g}src_service, dst_service, client_center, server_center"
    )


def _hour(bucket_s: int) -> str:
    return f"toStartOfInterval({counting.EVENT_TIME}, INTERVAL {int(bucket_s)} SECOND)"


def conversation_observations(db: str, start: datetime, end: datetime, bucket_s: int) -> str:
    """Every observation point of every conversation (client, server, service port, proto), per
    bucket and direction (``reply``: server → client, by the counting model's initiator): which
    exporter saw it, in which center, with how many sampled packets at which rate (1:N). All records, counted or not:
    where each direction was seen is the point; but once per exporter (an OVS bridge's egress copy of
    the packets it reported at ingress is left out: its sampled packets are one sample, not two).
    Grouped on the stored values; addresses are turned into text only for the groups."""
    c, v = counting.client, counting.server
    return (
        f"SELECT t, {addr('c_addr')} AS client, {addr('s_addr')} AS server, port, proto, client_center, "
        f"server_center, client_node, server_node, tenant, workload, reply, {addr('exp')} AS exporter, "
        "exporter_center, sampled, rate FROM (\n"
        f"  SELECT {_hour(bucket_s)} AS t, {c('addr')} AS c_addr, {v('addr')} AS s_addr, "
        f"{v('port')} AS port, proto, {c('center')} AS client_center, {v('center')} AS server_center, "
        f"{c('node')} AS client_node, {v('node')} AS server_node, {v('tenant')} AS tenant, "
        f"{v('workload')} AS workload, {counting.IS_REPLY} AS reply, exporter AS exp, "
        "any(exporter_center) AS exporter_center, sum(packets) AS sampled, "
        f"max({SCALE}) AS rate\n"
        f"  FROM `{db}`.flows\n  WHERE {_range(start, end)} AND {counting.ONE_PER_EXPORTER}\n"
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


def usual_fanout(
    db: str, start: datetime, end: datetime, bucket_s: int, sources: list[str] | None = None
) -> str:
    """Each source's typical fan-out over history: the 90th percentile of its per-bucket fan-out;
    only of ``sources`` (text addresses) when given (a source's figure depends on its rows only)."""
    only = ""
    if sources is not None:
        quoted = ", ".join("'" + s.replace("\\", "").replace("'", "") + "'" for s in sources) or "''"
        only = f" AND {addr('src_addr')} IN ({quoted})"
    return (
        "SELECT src, quantileExact(0.9)(fan) AS usual FROM (\n"
        f"  SELECT toStartOfInterval({counting.EVENT_TIME}, INTERVAL {int(bucket_s)} SECOND) AS t, "
        f"{addr('src_addr')} AS src, greatest(uniqExact(dst_addr), uniqExact(dst_port)) AS fan\n"
        f"  FROM `{db}`.flows WHERE {_range(start, end)} AND {ONCE} AND {OPENED}{only}\n"
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


def exporter_records_per_conversation(db: str, start: datetime, end: datetime, bucket_s: int) -> str:
    """Per exporter: its records over the conversations (either direction, per bucket) they report, an
    approximate count: OVS bridge IPFIX reports a flow at ingress and at egress, and both directions of
    a conversation, so its records come in twos and fours and are not independent events."""
    ends = "bitXor(cityHash64(src_addr, src_port), cityHash64(dst_addr, dst_port))"
    return (
        f"SELECT {addr('exporter')} AS exporter, count() AS records, "
        f"uniq({ends}, proto, intDiv(toUInt32(flow_start), {int(bucket_s)})) AS conversations\n"
        f"FROM `{db}`.flows\nWHERE {_range(start, end)}\nGROUP BY exporter"
    )


def exporters_seen(db: str, start: datetime, end: datetime) -> str:
    """The exporters that sent anything in [start, end) (the exporter-health rollup)."""
    return (
        f"SELECT {addr('exporter')} AS exporter\n"
        f"FROM `{db}`.exporter_health_1m\nWHERE time >= {ts(start)} AND time < {ts(end)}\n"
        "GROUP BY exporter"
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


def ms(column: str) -> str:
    """Milliseconds since the epoch of a time column, in every dialect: DateTime64(3) (current
    ClickHouse, chdb) and DateTime (18.16's legacy schema, whole seconds)."""
    return f"toInt64(round(toFloat64({column}) * 1000))"


def _rate_range(start: datetime, end: datetime) -> str:
    return (
        f"time_received >= {ts(start)} - INTERVAL {counting.MAX_CLOCK_AHEAD_S} SECOND "
        f"AND time_received < {ts(end)} + INTERVAL {RECORD_SPAN_S + counting.ALLOWED_LATENESS_S} SECOND "
        f"AND event_end >= {ts(start)} AND event_start < {ts(end)}"
    )


def _spread_sql(sides: str, keys: tuple[str, ...], bucket_s: int) -> str:
    """Rows of ``sides`` (``keys``, ``s``/``e`` ms, ``scaled`` bytes, ``sampled`` packets) summed per
    ``keys`` and pair of buckets, each record's share of its time in its first, last and middle
    buckets apart (see :func:`spread_rates`)."""
    b = int(bucket_s) * 1000
    d = "greatest(e - s, 0)"
    first = f"if({d} = 0, 1, (least(e, (intDiv(s, {b}) + 1) * {b}) - s) / {d})"
    last = f"if(intDiv(e, {b}) > intDiv(s, {b}), (e - intDiv(e, {b}) * {b}) / {d}, 0)"
    mid = f"if(intDiv(e, {b}) > intDiv(s, {b}) + 1, {b} / {d}, 0)"
    k = ", ".join(keys)
    return (
        f"SELECT {k}, intDiv(s, {b}) AS b0, intDiv(e, {b}) AS b1, "
        f"sum(scaled * {first}) AS first_bytes, sum(scaled * {last}) AS last_bytes, "
        f"sum(scaled * {mid}) AS mid_bytes, sum(sampled * {first}) AS first_packets, "
        f"sum(sampled * {last}) AS last_packets, sum(sampled * {mid}) AS mid_packets\n"
        f"FROM ({sides})\nGROUP BY {k}, b0, b1"
    )


POD_KEYS = ("cluster", "namespace", "pod", "direction")


def pod_rates(db: str, start: datetime, end: datetime, bucket_s: int) -> str:
    """Scaled bytes and sampled packets per pod, direction (``egress``: the pod is the source;
    ``ingress``: the destination) and pair of buckets (``b0``: where its records start, ``b1``:
    where they end; bucket numbers of ``bucket_s``), counted once. Each record is spread over the
    buckets it covers in proportion to its time in each: ``first_*`` goes to b0, ``last_*`` to b1
    (when b1 > b0) and ``mid_*`` to every bucket between (see :func:`spread_rates`). Runs on every
    dialect (chdb, current servers, 18.16)."""
    rng = f"{_rate_range(start, end)} AND {ONCE}"
    sides = " UNION ALL ".join(
        f"SELECT {end_}_cluster AS cluster, {end_}_namespace AS namespace, {end_}_pod AS pod, "
        f"'{direction}' AS direction, {ms('event_start')} AS s, "
        f"{ms('event_end')} AS e, bytes * {SCALE} AS scaled, packets AS sampled "
        f"FROM `{db}`.flows WHERE {rng} AND {end_}_pod != ''"
        for end_, direction in (("src", "egress"), ("dst", "ingress"))
    )
    return _spread_sql(sides, POD_KEYS, bucket_s)


def spread_rates(
    parts: pd.DataFrame, start: datetime, end: datetime, bucket_s: int, keys: tuple[str, ...] = POD_KEYS
) -> pd.DataFrame:
    """:func:`pod_rates`'s (or :func:`link_rates`'s) rows as one row per ``keys`` and bucket of
    [start, end): time, the keys, bytes, raw_packets."""
    cols = ["time", *keys, "bytes", "raw_packets"]
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
            **{k: parts[k].to_numpy()[row] for k in keys},
            **out,
        }
    )
    df = df[(df["time"] >= pd.Timestamp(start)) & (df["time"] < pd.Timestamp(end))]
    return df.groupby(["time", *keys], as_index=False)[["bytes", "raw_packets"]].sum()[cols]


def pod_limits_sql(db: str, start: datetime, end: datetime) -> str:
    """Pod versions overlapping [start, end) from the metadata store (their attributes as JSON)."""
    lo, hi = int(start.timestamp() * 1000), int(end.timestamp() * 1000)
    return (
        f"SELECT key, {ms('valid_from')} AS f, {ms('valid_to')} AS t, attrs "
        f"FROM `{db}`.metadata_versions FINAL WHERE kind = 'pod' "
        f"AND {ms('valid_from')} < {hi} AND {ms('valid_to')} > {lo}"
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


# ---- links with a Kube-OVN QoSPolicy (EIPs, NAT gateways) ------------------------------------------
#: The metadata kinds that define a limited link.
LINK_KINDS = ("eip", "nat_gateway", "qos_policy")
LINK_KEYS = ("address", "direction", "exporter", "klass", "remote")
#: What names one limit of a link (a bandwidth rule of the QoSPolicy bound to it).
RULE_COLS = ("cluster", "link", "policy", "rule", "direction", "limit_mbps", "match")
#: Records that repeat another observation of the same exporter or node (netobs.counting rule 1).
COPIES = "count_reason NOT IN ('dual_direction_copy', 'other_exporter_of_node')"
_ZERO = "IPv6StringToNum('::')"


def link_versions_sql(db: str, start: datetime, end: datetime) -> str:
    """EIP, NAT gateway and QoSPolicy versions overlapping [start, end) (attributes as JSON)."""
    lo, hi = int(start.timestamp() * 1000), int(end.timestamp() * 1000)
    kinds = ", ".join(f"'{k}'" for k in LINK_KINDS)
    return (
        f"SELECT kind, key, {ms('valid_from')} AS f, {ms('valid_to')} AS t, attrs "
        f"FROM `{db}`.metadata_versions FINAL WHERE kind IN ({kinds}) "
        f"AND {ms('valid_from')} < {hi} AND {ms('valid_to')} > {lo}"
    )


def _match(value: str) -> tuple[str, str]:
    """A bandwidth rule's ``matchValue`` (``src 172.18.11.22/32`` / ``dst 10.0.0.0/8``) as (side, CIDR)."""
    import ipaddress

    side, _, net = value.strip().partition(" ")
    if side not in ("src", "dst"):
        raise ValueError(f"matchValue {value!r}: expected 'src CIDR' or 'dst CIDR'")
    return side, str(ipaddress.ip_network(net.strip(), strict=False))


def link_rules(rows: list[dict]) -> tuple[pd.DataFrame, list[str]]:
    """The limits in force on each link, from the metadata versions of :func:`link_versions_sql`:
    one row per (rule, address of the link, interval) with cluster, link (``eip/<name>`` or
    ``natgw/<name>``), policy, rule, direction, limit_mbps, match_side/match_net (the rule's
    ``matchValue``; '' for the whole link), address, valid_from, valid_to (ms: the intersection of
    the versions of the bound object, its policy and, for a NAT gateway, each of its EIPs). And the
    problems (a rule that cannot be applied)."""
    by: dict[str, dict[str, list[tuple[int, int, dict]]]] = {k: {} for k in LINK_KINDS}
    for r in rows:
        by[r["kind"]].setdefault(r["key"], []).append((int(r["f"]), int(r["t"]), json.loads(r["attrs"])))
    out: list[tuple] = []
    problems: list[str] = []

    def bound(
        link: str, cluster: str, f: int, t: int, policy: str, addrs: list[tuple[int, int, list]]
    ) -> None:
        pkey = f"{cluster}::{policy}" if cluster else policy
        for pf, pt, p in by["qos_policy"].get(pkey, []):
            lo, hi = max(f, pf), min(t, pt)
            if lo >= hi:
                continue
            for rule in p.get("rules") or []:
                mbps = float(rule.get("rate_max_mbps") or 0)
                direction = rule.get("direction") or ""
                if mbps <= 0 or direction not in ("ingress", "egress"):
                    continue
                side, net = "", ""
                if rule.get("match_value"):
                    try:
                        side, net = _match(rule["match_value"])
                    except ValueError as e:
                        problems.append(f"{pkey} rule {rule.get('name', '')}: {e}; not judged")
                        continue
                for af, at, ips in addrs:
                    a, b = max(lo, af), min(hi, at)
                    if a < b:
                        out.extend(
                            (
                                cluster,
                                link,
                                policy,
                                rule.get("name", ""),
                                direction,
                                mbps,
                                side,
                                net,
                                ip,
                                a,
                                b,
                            )
                            for ip in ips
                        )

    for versions in by["eip"].values():
        for f, t, a in versions:
            if a.get("qos_policy"):
                bound(
                    f"eip/{a['name']}",
                    a.get("cluster", ""),
                    f,
                    t,
                    a["qos_policy"],
                    [(f, t, a.get("ips") or [])],
                )
    for key, versions in by["nat_gateway"].items():
        for f, t, g in versions:
            if not g.get("qos_policy"):
                continue
            cluster = g.get("cluster", "")
            eips = [
                (ef, et, e.get("ips") or [])
                for vs in by["eip"].values()
                for ef, et, e in vs
                if e.get("nat_gw") == g["name"] and e.get("cluster", "") == cluster
            ]
            if not eips:
                problems.append(
                    f"nat gateway {key}: no IptablesEIP names it (natGwDp): its link is not known"
                )
            bound(f"natgw/{g['name']}", cluster, f, t, g["qos_policy"], eips)
    cols = ["cluster", "link", "policy", "rule", "direction", "limit_mbps", "match_side", "match_net",
            "address", "valid_from", "valid_to"]  # fmt: skip
    return pd.DataFrame(out, columns=cols), problems


def _class_of(classes: list[tuple[int, ...]]) -> str:
    """The index (1-based) of the first class whose DSCP codes hold the record's DSCP, 0: none."""
    if not classes:
        return "0"
    arms = ", ".join(f"intDiv(tos, 4) IN ({', '.join(str(c) for c in codes)}), {i}" for i, codes in
                     enumerate(classes, 1))  # fmt: skip
    return f"multiIf({arms}, 0)"


def link_rates(
    db: str,
    start: datetime,
    end: datetime,
    bucket_s: int,
    addresses: list[str],
    classes: list[tuple[int, ...]],
    remotes: bool = False,
) -> str:
    """Scaled bytes and sampled packets crossing the links that hold ``addresses`` (EIPs), per
    address, direction, exporter, traffic class (``klass``: 1-based index into ``classes`` by the
    record's DSCP, 0 for none) and pair of buckets (spread like :func:`pod_rates`).

    A link is observed where the translated addresses are on the wire: leaving (``egress``) a
    packet's source is the EIP — the observed source, or the post-NAT source an exporter on the
    gateway reports (IE 225/281); arriving (``ingress``) its destination is the EIP (before DNAT).
    Every exporter that sees the link is kept apart (the caller takes the one that saw most);
    an exporter's second report of the same packets (its egress copy, another exporter of its
    node) is left out. With ``remotes`` the far end's address is kept too (``remote``, for rules
    that match on it), else ''. Runs on every dialect."""
    inlist = ", ".join(f"IPv6StringToNum('{_v6(a)}')" for a in sorted(set(addresses)))
    klass = _class_of(classes)
    sides = []
    for direction in ("egress", "ingress"):
        if direction == "egress":
            near = f"if(post_nat_src_addr != {_ZERO}, post_nat_src_addr, src_addr)"
            far = f"if(post_nat_dst_addr != {_ZERO}, post_nat_dst_addr, dst_addr)"
        else:
            near, far = "dst_addr", "src_addr"
        remote = addr(far) if remotes else "''"
        sides.append(
            f"SELECT {addr(near)} AS address, '{direction}' AS direction, {addr('exporter')} AS exporter, "
            f"{klass} AS klass, {remote} AS remote, {ms('event_start')} AS s, {ms('event_end')} AS e, "
            f"bytes * {SCALE} AS scaled, packets AS sampled "
            f"FROM `{db}`.flows WHERE {_rate_range(start, end)} AND {COPIES} AND {near} IN ({inlist})"
        )
    return _spread_sql(" UNION ALL ".join(sides), LINK_KEYS, bucket_s)


def _v6(address: str) -> str:
    """An address as the store keeps it (IPv4 mapped into IPv6)."""
    import ipaddress

    a = ipaddress.ip_address(address)
    return f"::ffff:{a}" if a.version == 4 else str(a)


def link_usage(usage: pd.DataFrame, rules: pd.DataFrame, bucket_s: int) -> pd.DataFrame:
    """:func:`link_rates` spread into buckets (``usage``: time, address, direction, exporter,
    klass, remote, bytes, raw_packets) as what each limit saw: time, cluster, link, policy, rule,
    direction, limit_mbps, match, klass, bytes, raw_packets. A record belongs to a rule when its
    address is one of the rule's link at the bucket's middle (time-correct: an EIP moved to
    another gateway, a policy changed), its direction is the rule's, and its far end matches the
    rule's ``matchValue`` (``src`` / ``dst`` of the packet on the link). Of the exporters that saw a
    rule's traffic in a bucket, the one that saw most is its observer (each exporter on the path
    sees the whole link; adding them up would count it again)."""
    import ipaddress

    cols = ["time", "cluster", "link", "policy", "rule", "direction", "limit_mbps", "match", "klass",
            "exporter", "bytes", "raw_packets"]  # fmt: skip
    if usage.empty or rules.empty:
        return pd.DataFrame(columns=cols)
    u = usage.copy()
    u["mid"] = pd.DatetimeIndex(u["time"]).as_unit("ms").asi8 + int(bucket_s) * 500
    r = rules.copy()
    r["address"] = r["address"].astype(str)
    m = u.merge(r, on=["address", "direction"])
    m = m[(m["mid"] >= m["valid_from"]) & (m["mid"] < m["valid_to"])]
    if m.empty:
        return pd.DataFrame(columns=cols)
    matched = (m["match_net"] == "").to_numpy().copy()
    if not matched.all():
        nets = {n: ipaddress.ip_network(n) for n in m.loc[~matched, "match_net"].unique()}
        # the packet's src on an egress link is the EIP (its dst is the far end); ingress, the reverse
        far_side = np.where(m["direction"] == "egress", "dst", "src")
        on_link = {}
        for i in np.flatnonzero(~matched):
            row = m.iloc[i]
            side = row["match_side"]
            text = row["remote"] if side == far_side[i] else row["address"]
            key = (text, row["match_net"])
            if key not in on_link:
                try:
                    on_link[key] = ipaddress.ip_address(text) in nets[row["match_net"]]
                except ValueError:
                    on_link[key] = False
            matched[i] = on_link[key]
    m = m[matched].copy()
    m["match"] = np.where(m["match_net"] == "", "", m["match_side"] + " " + m["match_net"])
    rule_keys = ["time", *RULE_COLS]
    per = m.groupby([*rule_keys, "exporter", "klass"], as_index=False)[["bytes", "raw_packets"]].sum()
    tot = per.groupby([*rule_keys, "exporter"], as_index=False)["bytes"].sum()
    best = tot.sort_values("bytes", ascending=False, kind="stable").drop_duplicates(rule_keys)
    per = per.merge(best[[*rule_keys, "exporter"]], on=[*rule_keys, "exporter"])
    return per[cols].reset_index(drop=True)
