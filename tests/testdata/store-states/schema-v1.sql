-- netobs store schema as commit 95dd45a creates it (scripts/store_state.py)
CREATE TABLE netobs.flows
(
    `time_received` DateTime64(3, 'UTC') COMMENT 'When the collector received the datagram.' CODEC(Delta(8), ZSTD(1)),
    `flow_start` DateTime64(3, 'UTC') COMMENT 'First packet of the flow (sFlow: the sample time).' CODEC(Delta(8), ZSTD(1)),
    `flow_end` DateTime64(3, 'UTC') COMMENT 'Last packet of the flow (sFlow: the sample time).' CODEC(Delta(8), ZSTD(1)),
    `type` LowCardinality(String) COMMENT 'Export protocol: sflow, ipfix, netflow9, netflow5, psamp.',
    `exporter` IPv6 COMMENT 'Address of the exporting agent (IPv4 mapped into IPv6).',
    `observation_domain` UInt32 COMMENT 'IPFIX observation domain / NetFlow source id / sFlow sub-agent.',
    `sampling_rate` UInt32 COMMENT '1 in N packets sampled; 0 when unknown.',
    `direction` LowCardinality(String) COMMENT 'ingress, egress or unknown, as the exporter reported it.',
    `in_if` UInt32 COMMENT 'Input interface index.',
    `out_if` UInt32 COMMENT 'Output interface index.',
    `src_addr` IPv6 COMMENT 'Source address (inner, pod, address for tunnelled traffic).',
    `dst_addr` IPv6 COMMENT 'Destination address (inner for tunnelled traffic).',
    `src_port` UInt16 COMMENT 'Source port (0 for ICMP).',
    `dst_port` UInt16 COMMENT 'Destination port (ICMP: type*256+code).',
    `proto` UInt8 COMMENT 'IANA protocol number.',
    `etype` UInt16 COMMENT 'Ethertype of the (inner) network layer: 0x0800 or 0x86dd.',
    `tcp_flags` UInt16 COMMENT 'OR of TCP flags seen.',
    `tos` UInt8 COMMENT 'IPv4 TOS / IPv6 traffic class.',
    `src_mac` UInt64 COMMENT 'Source MAC address as a 48-bit number.',
    `dst_mac` UInt64 COMMENT 'Destination MAC address as a 48-bit number.',
    `vlan` UInt16 COMMENT '802.1Q VLAN id (0 when untagged).',
    `packets` UInt64 COMMENT 'Raw (unscaled) packet count.',
    `bytes` UInt64 COMMENT 'Raw (unscaled) byte count.',
    `tunnel_type` LowCardinality(String) COMMENT '\'\' (none), geneve, vxlan or gre.',
    `tunnel_id` UInt32 COMMENT 'Geneve VNI / VXLAN VNI / GRE key.',
    `tunnel_src` IPv6 COMMENT 'Outer (node) source address of a tunnelled packet.',
    `tunnel_dst` IPv6 COMMENT 'Outer (node) destination address of a tunnelled packet.',
    `src_pod` LowCardinality(String) COMMENT 'Pod name of the src end.',
    `src_namespace` LowCardinality(String) COMMENT 'Kubernetes namespace of the src end.',
    `src_workload` LowCardinality(String) COMMENT 'Owning workload (Deployment, StatefulSet, ...) of the src end.',
    `src_node` LowCardinality(String) COMMENT 'Kubernetes node of the src end.',
    `src_tenant` LowCardinality(String) COMMENT 'Tenant owning the address of the src end.',
    `src_subnet` LowCardinality(String) COMMENT 'Kube-OVN subnet or legacy network of the src end.',
    `src_vpc` LowCardinality(String) COMMENT 'Kube-OVN VPC of the src end.',
    `src_zone` LowCardinality(String) COMMENT 'Security zone of the src end.',
    `src_center` LowCardinality(String) COMMENT 'Data center of the src end.',
    `src_site` LowCardinality(String) COMMENT 'Site (a city) of the src end.',
    `dst_pod` LowCardinality(String) COMMENT 'Pod name of the dst end.',
    `dst_namespace` LowCardinality(String) COMMENT 'Kubernetes namespace of the dst end.',
    `dst_workload` LowCardinality(String) COMMENT 'Owning workload (Deployment, StatefulSet, ...) of the dst end.',
    `dst_node` LowCardinality(String) COMMENT 'Kubernetes node of the dst end.',
    `dst_tenant` LowCardinality(String) COMMENT 'Tenant owning the address of the dst end.',
    `dst_subnet` LowCardinality(String) COMMENT 'Kube-OVN subnet or legacy network of the dst end.',
    `dst_vpc` LowCardinality(String) COMMENT 'Kube-OVN VPC of the dst end.',
    `dst_zone` LowCardinality(String) COMMENT 'Security zone of the dst end.',
    `dst_center` LowCardinality(String) COMMENT 'Data center of the dst end.',
    `dst_site` LowCardinality(String) COMMENT 'Site (a city) of the dst end.',
    `path` LowCardinality(String) COMMENT 'intra_node, intra_center, cross_center, cross_site, external or \'\' (not enriched).',
    `exporter_node` LowCardinality(String) COMMENT 'Node of the exporting agent.',
    `exporter_center` LowCardinality(String) COMMENT 'Data center of the exporting agent.'
)
ENGINE = MergeTree
PARTITION BY toDate(time_received)
ORDER BY (toStartOfHour(time_received), src_center, dst_center, src_tenant, dst_tenant, exporter, time_received)
TTL toDateTime(time_received) + toIntervalDay(90)
SETTINGS index_granularity = 8192, non_replicated_deduplication_window = 1000;

CREATE TABLE netobs.exporter_health_1m
(
    `time` DateTime('UTC') COMMENT 'Start of the bucket.',
    `exporter` IPv6,
    `type` LowCardinality(String),
    `observation_domain` UInt32,
    `flows` SimpleAggregateFunction(sum, UInt64) COMMENT 'Flow records received.',
    `sampling_rates` SimpleAggregateFunction(groupUniqArrayArray, Array(UInt32)) COMMENT 'Sampling rates seen.',
    `first_seen` SimpleAggregateFunction(min, DateTime64(3, 'UTC')) COMMENT 'First record.',
    `last_seen` SimpleAggregateFunction(max, DateTime64(3, 'UTC')) COMMENT 'Last record.'
)
ENGINE = AggregatingMergeTree
PARTITION BY toYYYYMM(time)
ORDER BY (time, exporter, type, observation_domain)
TTL time + toIntervalDay(90)
SETTINGS non_replicated_deduplication_window = 1000, index_granularity = 8192;

CREATE TABLE netobs.flows_1h
(
    `time` DateTime('UTC') COMMENT 'Start of the bucket.',
    `src_center` LowCardinality(String),
    `dst_center` LowCardinality(String),
    `src_tenant` LowCardinality(String),
    `dst_tenant` LowCardinality(String),
    `src_zone` LowCardinality(String),
    `dst_zone` LowCardinality(String),
    `dst_port` UInt16,
    `proto` UInt8,
    `type` LowCardinality(String),
    `direction` LowCardinality(String),
    `bytes` UInt64 COMMENT 'Bytes scaled by the sampling rate.',
    `packets` UInt64 COMMENT 'Packets scaled by the sampling rate.',
    `raw_bytes` UInt64 COMMENT 'Bytes as exported (unscaled).',
    `raw_packets` UInt64 COMMENT 'Packets as exported (unscaled).',
    `flows` UInt64 COMMENT 'Flow records.'
)
ENGINE = SummingMergeTree((bytes, packets, raw_bytes, raw_packets, flows))
PARTITION BY toYYYYMM(time)
ORDER BY (time, src_center, dst_center, src_tenant, dst_tenant, src_zone, dst_zone, dst_port, proto, type, direction)
TTL time + toIntervalDay(1830)
SETTINGS non_replicated_deduplication_window = 1000, index_granularity = 8192;

CREATE TABLE netobs.flows_1m
(
    `time` DateTime('UTC') COMMENT 'Start of the bucket.',
    `src_center` LowCardinality(String),
    `dst_center` LowCardinality(String),
    `src_tenant` LowCardinality(String),
    `dst_tenant` LowCardinality(String),
    `src_zone` LowCardinality(String),
    `dst_zone` LowCardinality(String),
    `dst_port` UInt16,
    `proto` UInt8,
    `type` LowCardinality(String),
    `direction` LowCardinality(String),
    `bytes` UInt64 COMMENT 'Bytes scaled by the sampling rate.',
    `packets` UInt64 COMMENT 'Packets scaled by the sampling rate.',
    `raw_bytes` UInt64 COMMENT 'Bytes as exported (unscaled).',
    `raw_packets` UInt64 COMMENT 'Packets as exported (unscaled).',
    `flows` UInt64 COMMENT 'Flow records.'
)
ENGINE = SummingMergeTree((bytes, packets, raw_bytes, raw_packets, flows))
PARTITION BY toYYYYMM(time)
ORDER BY (time, src_center, dst_center, src_tenant, dst_tenant, src_zone, dst_zone, dst_port, proto, type, direction)
TTL time + toIntervalDay(400)
SETTINGS non_replicated_deduplication_window = 1000, index_granularity = 8192;

CREATE MATERIALIZED VIEW netobs.exporter_health_1m_mv TO netobs.exporter_health_1m
(
    `time` DateTime('UTC'),
    `exporter` IPv6,
    `type` LowCardinality(String),
    `observation_domain` UInt32,
    `flows` UInt64,
    `sampling_rates` Array(UInt32),
    `first_seen` DateTime64(3, 'UTC'),
    `last_seen` DateTime64(3, 'UTC')
)
AS SELECT
    toStartOfMinute(toDateTime(time_received, 'UTC')) AS time,
    exporter,
    type,
    observation_domain,
    count() AS flows,
    groupUniqArray(f.sampling_rate) AS sampling_rates,
    min(f.time_received) AS first_seen,
    max(f.time_received) AS last_seen
FROM netobs.flows AS f
GROUP BY
    time,
    exporter,
    type,
    observation_domain;

CREATE MATERIALIZED VIEW netobs.flows_1h_mv TO netobs.flows_1h
(
    `time` DateTime('UTC'),
    `src_center` LowCardinality(String),
    `dst_center` LowCardinality(String),
    `src_tenant` LowCardinality(String),
    `dst_tenant` LowCardinality(String),
    `src_zone` LowCardinality(String),
    `dst_zone` LowCardinality(String),
    `dst_port` UInt16,
    `proto` UInt8,
    `type` LowCardinality(String),
    `direction` LowCardinality(String),
    `bytes` UInt64,
    `packets` UInt64,
    `raw_bytes` UInt64,
    `raw_packets` UInt64,
    `flows` UInt64
)
AS SELECT
    toStartOfHour(toDateTime(time_received, 'UTC')) AS time,
    src_center,
    dst_center,
    src_tenant,
    dst_tenant,
    src_zone,
    dst_zone,
    dst_port,
    proto,
    type,
    direction,
    sum(f.bytes * if(f.sampling_rate = 0, 1, f.sampling_rate)) AS bytes,
    sum(f.packets * if(f.sampling_rate = 0, 1, f.sampling_rate)) AS packets,
    sum(f.bytes) AS raw_bytes,
    sum(f.packets) AS raw_packets,
    count() AS flows
FROM netobs.flows AS f
WHERE NOT ((type = 'ipfix') AND (direction = 'egress'))
GROUP BY
    time,
    src_center,
    dst_center,
    src_tenant,
    dst_tenant,
    src_zone,
    dst_zone,
    dst_port,
    proto,
    type,
    direction;

CREATE MATERIALIZED VIEW netobs.flows_1m_mv TO netobs.flows_1m
(
    `time` DateTime('UTC'),
    `src_center` LowCardinality(String),
    `dst_center` LowCardinality(String),
    `src_tenant` LowCardinality(String),
    `dst_tenant` LowCardinality(String),
    `src_zone` LowCardinality(String),
    `dst_zone` LowCardinality(String),
    `dst_port` UInt16,
    `proto` UInt8,
    `type` LowCardinality(String),
    `direction` LowCardinality(String),
    `bytes` UInt64,
    `packets` UInt64,
    `raw_bytes` UInt64,
    `raw_packets` UInt64,
    `flows` UInt64
)
AS SELECT
    toStartOfMinute(toDateTime(time_received, 'UTC')) AS time,
    src_center,
    dst_center,
    src_tenant,
    dst_tenant,
    src_zone,
    dst_zone,
    dst_port,
    proto,
    type,
    direction,
    sum(f.bytes * if(f.sampling_rate = 0, 1, f.sampling_rate)) AS bytes,
    sum(f.packets * if(f.sampling_rate = 0, 1, f.sampling_rate)) AS packets,
    sum(f.bytes) AS raw_bytes,
    sum(f.packets) AS raw_packets,
    count() AS flows
FROM netobs.flows AS f
WHERE NOT ((type = 'ipfix') AND (direction = 'egress'))
GROUP BY
    time,
    src_center,
    dst_center,
    src_tenant,
    dst_tenant,
    src_zone,
    dst_zone,
    dst_port,
    proto,
    type,
    direction
