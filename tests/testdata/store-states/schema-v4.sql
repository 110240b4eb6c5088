-- netobs store schema as commit 237851b creates it (scripts/store_state.py)
CREATE TABLE netobs.counting_1m
(
    `time` DateTime('UTC') COMMENT 'Start of the bucket.',
    `exporter` IPv6,
    `type` LowCardinality(String),
    `observer` LowCardinality(String),
    `count_reason` LowCardinality(String),
    `counted` UInt8,
    `named` UInt8,
    `flows` UInt64 COMMENT 'Flow records received.',
    `bytes` UInt64 COMMENT 'Bytes scaled by the sampling rate.'
)
ENGINE = SummingMergeTree((flows, bytes))
PARTITION BY toYYYYMM(time)
ORDER BY (time, exporter, type, observer, count_reason, counted, named)
TTL time + toIntervalDay(90)
SETTINGS non_replicated_deduplication_window = 1000, index_granularity = 8192
COMMENT 'netobs rollup v2';

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
SETTINGS non_replicated_deduplication_window = 1000, index_granularity = 8192
COMMENT 'netobs rollup v2';

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
    `tunnel_type` LowCardinality(String) COMMENT '\'\' (none), geneve, vxlan, gre, ipip, udp, ip (a repeated header of another protocol) or srv6.',
    `tunnel_id` UInt32 COMMENT 'Geneve VNI / VXLAN VNI / GRE key.',
    `tunnel_src` IPv6 COMMENT 'Outer (node) source address of a tunnelled packet.',
    `tunnel_dst` IPv6 COMMENT 'Outer (node) destination address of a tunnelled packet.',
    `tunnel_ovn_ingress_port` UInt16 COMMENT 'OVN logical ingress port key from the Geneve OVN option (class 0x0102 type 0x80); 0: none.',
    `tunnel_ovn_egress_port` UInt16 COMMENT 'OVN logical egress port key from the Geneve OVN option (>= 32768: a multicast group); with tunnel_id (the datapath key) it names the logical port. 0: none.',
    `next_hop` IPv6 COMMENT 'Next hop router: sFlow extended router (else gateway BGP next hop), IPFIX/v9 IE 15/62 (else 18/63), NetFlow v5 nexthop; :: when unknown.',
    `src_as` UInt32 COMMENT 'Source autonomous system (0: unknown).',
    `dst_as` UInt32 COMMENT 'Destination (origin) autonomous system (0: unknown).',
    `src_mask` UInt8 COMMENT 'Source address prefix length (0: unknown).',
    `dst_mask` UInt8 COMMENT 'Destination address prefix length (0: unknown).',
    `observation_point` UInt32 COMMENT 'IPFIX observationPointId (IE 138; OVS per-flow IPFIX sends it); 0: none.',
    `biflow` UInt8 COMMENT '0: a one-way record; 1: the forward half of an RFC 5103 biflow record; 2: its reverse half (ends swapped, counters from the reverse IEs of enterprise 29305).',
    `biflow_direction` UInt8 COMMENT 'RFC 5103 biflowDirection (IE 239) as exported for the record: 0 arbitrary or absent, 1 initiator (the record\'s source opened it), 2 reverseInitiator, 3 perimeter. Both halves carry the record\'s value.',
    `src_pod` String COMMENT 'Pod name of the src end.',
    `src_namespace` LowCardinality(String) COMMENT 'Kubernetes namespace of the src end.',
    `src_workload` LowCardinality(String) COMMENT 'Owning workload (Deployment, StatefulSet, ...) of the src end.',
    `src_node` LowCardinality(String) COMMENT 'Kubernetes node of the src end.',
    `src_tenant` LowCardinality(String) COMMENT 'Tenant owning the address of the src end.',
    `src_subnet` LowCardinality(String) COMMENT 'Kube-OVN subnet or legacy network of the src end.',
    `src_vpc` LowCardinality(String) COMMENT 'Kube-OVN VPC of the src end.',
    `src_zone` LowCardinality(String) COMMENT 'Security zone of the src end.',
    `src_center` LowCardinality(String) COMMENT 'Data center of the src end.',
    `src_site` LowCardinality(String) COMMENT 'Site (a city) of the src end.',
    `src_plane` LowCardinality(String) COMMENT 'Network plane (business, management, storage, backup, ...): the subnet\'s, else the attachment\'s of the src end.',
    `src_cluster` LowCardinality(String) COMMENT 'Kubernetes cluster of the src end.',
    `src_host` LowCardinality(String) COMMENT 'Legacy host or VM (from the CMDB) of the src end.',
    `dst_pod` String COMMENT 'Pod name of the dst end.',
    `dst_namespace` LowCardinality(String) COMMENT 'Kubernetes namespace of the dst end.',
    `dst_workload` LowCardinality(String) COMMENT 'Owning workload (Deployment, StatefulSet, ...) of the dst end.',
    `dst_node` LowCardinality(String) COMMENT 'Kubernetes node of the dst end.',
    `dst_tenant` LowCardinality(String) COMMENT 'Tenant owning the address of the dst end.',
    `dst_subnet` LowCardinality(String) COMMENT 'Kube-OVN subnet or legacy network of the dst end.',
    `dst_vpc` LowCardinality(String) COMMENT 'Kube-OVN VPC of the dst end.',
    `dst_zone` LowCardinality(String) COMMENT 'Security zone of the dst end.',
    `dst_center` LowCardinality(String) COMMENT 'Data center of the dst end.',
    `dst_site` LowCardinality(String) COMMENT 'Site (a city) of the dst end.',
    `dst_plane` LowCardinality(String) COMMENT 'Network plane (business, management, storage, backup, ...): the subnet\'s, else the attachment\'s of the dst end.',
    `dst_cluster` LowCardinality(String) COMMENT 'Kubernetes cluster of the dst end.',
    `dst_host` LowCardinality(String) COMMENT 'Legacy host or VM (from the CMDB) of the dst end.',
    `path` LowCardinality(String) COMMENT 'intra_node, intra_center, cross_center, cross_site, external or \'\' (not enriched).',
    `cluster_path` LowCardinality(String) COMMENT 'intra_cluster, cross_cluster (two clusters), cross_cloud (two clusters in two clouds) or \'\' (an end outside every cluster).',
    `src_nat` LowCardinality(String) COMMENT 'How the source end was named behind a NAT/EIP: \'\' (not translated), fip, snat, dnat, snat_join (a pre-NAT observation of the same conversation), snat_subnet (only the subnet).',
    `dst_nat` LowCardinality(String) COMMENT 'The same for the destination end.',
    `nat_confidence` UInt8 COMMENT 'Confidence, in percent, of the NAT attribution of the end(s) named behind a NAT (the lower of the two); 0: no attribution.',
    `exporter_node` LowCardinality(String) COMMENT 'Node of the exporting agent.',
    `exporter_center` LowCardinality(String) COMMENT 'Data center of the exporting agent.',
    `event_start` DateTime64(3, 'UTC') COMMENT 'Start of the record\'s event time: flow_start, sanitized (netobs.counting).' CODEC(Delta(8), ZSTD(1)),
    `event_end` DateTime64(3, 'UTC') COMMENT 'End of the record\'s event time: flow_end, or time_received when the exporter\'s clock is off by more than a day behind or five minutes ahead. Buckets, windows and baselines use it.' CODEC(Delta(8), ZSTD(1)),
    `observer` LowCardinality(String) COMMENT 'Kind of observation point that exported the record (netobs.counting.OBSERVERS).',
    `counted` UInt8 COMMENT '1 when this record is the observation that counts its traffic (netobs.counting); 0 for the other observations of the same packets, kept for path and loss analysis.',
    `count_reason` LowCardinality(String) COMMENT 'Why the record counts or not (netobs.counting.REASONS).',
    `initiator` LowCardinality(String) COMMENT 'Which end opened the conversation: \'src\' (this record is a request), \'dst\' (a reply) or \'\' (not known).',
    `role_method` LowCardinality(String) COMMENT 'How the initiator was decided (netobs.counting.ROLE_METHODS).',
    `role_confidence` UInt8 COMMENT 'Confidence in the initiator, in percent (0: not known).'
)
ENGINE = MergeTree
PARTITION BY toDate(time_received)
ORDER BY (toStartOfHour(time_received), src_center, dst_center, src_tenant, dst_tenant, exporter, time_received)
TTL toDateTime(time_received) + toIntervalDay(90)
SETTINGS index_granularity = 8192, non_replicated_deduplication_window = 1000, min_bytes_for_wide_part = 134217728;

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
    `initiator` LowCardinality(String),
    `bytes` Float64 COMMENT 'Bytes scaled by the sampling rate.',
    `packets` Float64 COMMENT 'Packets scaled by the sampling rate.',
    `raw_bytes` Float64 COMMENT 'Bytes as exported (unscaled).',
    `raw_packets` Float64 COMMENT 'Packets as exported (unscaled).',
    `flows` Float64 COMMENT 'Counted flow records (a record spread over buckets counts in shares).'
)
ENGINE = SummingMergeTree((bytes, packets, raw_bytes, raw_packets, flows))
PARTITION BY toYYYYMM(time)
ORDER BY (time, src_center, dst_center, src_tenant, dst_tenant, src_zone, dst_zone, dst_port, proto, type, direction, initiator)
TTL time + toIntervalDay(1830)
SETTINGS non_replicated_deduplication_window = 1000, index_granularity = 8192
COMMENT 'netobs rollup v2';

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
    `initiator` LowCardinality(String),
    `bytes` Float64 COMMENT 'Bytes scaled by the sampling rate.',
    `packets` Float64 COMMENT 'Packets scaled by the sampling rate.',
    `raw_bytes` Float64 COMMENT 'Bytes as exported (unscaled).',
    `raw_packets` Float64 COMMENT 'Packets as exported (unscaled).',
    `flows` Float64 COMMENT 'Counted flow records (a record spread over buckets counts in shares).'
)
ENGINE = SummingMergeTree((bytes, packets, raw_bytes, raw_packets, flows))
PARTITION BY toYYYYMM(time)
ORDER BY (time, src_center, dst_center, src_tenant, dst_tenant, src_zone, dst_zone, dst_port, proto, type, direction, initiator)
TTL time + toIntervalDay(400)
SETTINGS non_replicated_deduplication_window = 1000, index_granularity = 8192
COMMENT 'netobs rollup v2';

CREATE TABLE netobs.interface_counters
(
    `time_received` DateTime64(3, 'UTC') COMMENT 'When the collector received the datagram.' CODEC(Delta(8), ZSTD(1)),
    `type` LowCardinality(String) COMMENT 'Export protocol: sflow.',
    `exporter` IPv6 COMMENT 'sFlow agent address (IPv4 mapped into IPv6).',
    `observation_domain` UInt32 COMMENT 'sFlow sub-agent id.',
    `source_id` UInt32 COMMENT 'sFlow data source: class << 24 | index.',
    `if_index` UInt32 COMMENT 'ifIndex of the interface.',
    `if_type` UInt32 COMMENT 'ifType (IANA; 6: ethernetCsmacd).',
    `if_speed` UInt64 COMMENT 'ifSpeed in bits per second (0: unknown).',
    `if_direction` UInt32 COMMENT '0 unknown, 1 full duplex, 2 half, 3 in, 4 out.',
    `if_status` UInt32 COMMENT 'Bit 0: ifAdminStatus up, bit 1: ifOperStatus up.',
    `in_octets` UInt64 COMMENT '64-bit counter as exported.' CODEC(T64, ZSTD(1)),
    `in_packets` UInt64 COMMENT 'Unicast + multicast + broadcast packets received (each a 32-bit counter).' CODEC(T64, ZSTD(1)),
    `in_errors` UInt32 COMMENT '32-bit counter as exported (0 when the agent does not have it).' CODEC(T64, ZSTD(1)),
    `in_discards` UInt32 COMMENT '32-bit counter as exported (0 when the agent does not have it).' CODEC(T64, ZSTD(1)),
    `out_octets` UInt64 COMMENT '64-bit counter as exported.' CODEC(T64, ZSTD(1)),
    `out_packets` UInt64 COMMENT 'Unicast + multicast + broadcast packets sent (each a 32-bit counter).' CODEC(T64, ZSTD(1)),
    `out_errors` UInt32 COMMENT '32-bit counter as exported (0 when the agent does not have it).' CODEC(T64, ZSTD(1)),
    `out_discards` UInt32 COMMENT '32-bit counter as exported (0 when the agent does not have it).' CODEC(T64, ZSTD(1)),
    `alignment_errors` UInt32 COMMENT 'dot3Stats counter (RFC 3635). 32-bit counter as exported (0 when the agent does not have it).' CODEC(T64, ZSTD(1)),
    `fcs_errors` UInt32 COMMENT 'dot3Stats counter (RFC 3635). 32-bit counter as exported (0 when the agent does not have it).' CODEC(T64, ZSTD(1)),
    `single_collisions` UInt32 COMMENT 'dot3Stats counter (RFC 3635). 32-bit counter as exported (0 when the agent does not have it).' CODEC(T64, ZSTD(1)),
    `multiple_collisions` UInt32 COMMENT 'dot3Stats counter (RFC 3635). 32-bit counter as exported (0 when the agent does not have it).' CODEC(T64, ZSTD(1)),
    `sqe_test_errors` UInt32 COMMENT 'dot3Stats counter (RFC 3635). 32-bit counter as exported (0 when the agent does not have it).' CODEC(T64, ZSTD(1)),
    `deferred_transmissions` UInt32 COMMENT 'dot3Stats counter (RFC 3635). 32-bit counter as exported (0 when the agent does not have it).' CODEC(T64, ZSTD(1)),
    `late_collisions` UInt32 COMMENT 'dot3Stats counter (RFC 3635). 32-bit counter as exported (0 when the agent does not have it).' CODEC(T64, ZSTD(1)),
    `excessive_collisions` UInt32 COMMENT 'dot3Stats counter (RFC 3635). 32-bit counter as exported (0 when the agent does not have it).' CODEC(T64, ZSTD(1)),
    `internal_mac_tx_errors` UInt32 COMMENT 'dot3Stats counter (RFC 3635). 32-bit counter as exported (0 when the agent does not have it).' CODEC(T64, ZSTD(1)),
    `carrier_sense_errors` UInt32 COMMENT 'dot3Stats counter (RFC 3635). 32-bit counter as exported (0 when the agent does not have it).' CODEC(T64, ZSTD(1)),
    `frame_too_longs` UInt32 COMMENT 'dot3Stats counter (RFC 3635). 32-bit counter as exported (0 when the agent does not have it).' CODEC(T64, ZSTD(1)),
    `internal_mac_rx_errors` UInt32 COMMENT 'dot3Stats counter (RFC 3635). 32-bit counter as exported (0 when the agent does not have it).' CODEC(T64, ZSTD(1)),
    `symbol_errors` UInt32 COMMENT 'dot3Stats counter (RFC 3635). 32-bit counter as exported (0 when the agent does not have it).' CODEC(T64, ZSTD(1)),
    `of_dpid` UInt64 COMMENT 'OpenFlow datapath id (OVS record 0:1004; 0: none).',
    `of_port` UInt32 COMMENT 'OpenFlow port number (OVS record 0:1004).',
    `if_name` LowCardinality(String) COMMENT 'ifName, when the agent sends it (OVS 0:1005).',
    `in_unicast_packets` UInt32 COMMENT '32-bit counter as exported (0 when the agent does not have it).' CODEC(T64, ZSTD(1)),
    `in_multicast_packets` UInt32 COMMENT '32-bit counter as exported (0 when the agent does not have it).' CODEC(T64, ZSTD(1)),
    `in_broadcast_packets` UInt32 COMMENT '32-bit counter as exported (0 when the agent does not have it).' CODEC(T64, ZSTD(1)),
    `in_unknown_protos` UInt32 COMMENT '32-bit counter as exported (0 when the agent does not have it).' CODEC(T64, ZSTD(1)),
    `out_unicast_packets` UInt32 COMMENT '32-bit counter as exported (0 when the agent does not have it).' CODEC(T64, ZSTD(1)),
    `out_multicast_packets` UInt32 COMMENT '32-bit counter as exported (0 when the agent does not have it).' CODEC(T64, ZSTD(1)),
    `out_broadcast_packets` UInt32 COMMENT '32-bit counter as exported (0 when the agent does not have it).' CODEC(T64, ZSTD(1)),
    `promiscuous` UInt32 COMMENT 'ifPromiscuousMode: 1 when promiscuous.',
    `exporter_node` LowCardinality(String) COMMENT 'Node of the agent.',
    `exporter_center` LowCardinality(String) COMMENT 'Data center of the agent.'
)
ENGINE = MergeTree
PARTITION BY toDate(time_received)
ORDER BY (toStartOfHour(time_received), exporter, observation_domain, if_index, time_received)
TTL toDateTime(time_received) + toIntervalDay(90)
SETTINGS index_granularity = 8192, non_replicated_deduplication_window = 1000;

CREATE TABLE netobs.l7_conversations
(
    `time_received` DateTime64(3, 'UTC') COMMENT 'When the collector received the datagram.' CODEC(Delta(8), ZSTD(1)),
    `first_seen` DateTime64(3, 'UTC') COMMENT 'First packet of the conversation in this summary.',
    `last_seen` DateTime64(3, 'UTC') COMMENT 'Last packet of the conversation in this summary.',
    `agent` LowCardinality(String) COMMENT 'Node the sampling agent runs on.',
    `capture_if` LowCardinality(String) COMMENT 'Interface captured on (host end of the pod\'s port on the bridge).',
    `capture_pod` String COMMENT 'Pod of that interface (OVS external_ids), at capture time.',
    `capture_namespace` LowCardinality(String) COMMENT 'Namespace of that pod (OVS external_ids).',
    `src_addr` IPv6 COMMENT 'Client address (who sent the query / hello / request).',
    `dst_addr` IPv6 COMMENT 'Server address.',
    `src_port` UInt16 COMMENT 'Client port.',
    `dst_port` UInt16 COMMENT 'Server port.',
    `proto` UInt8 COMMENT 'IANA protocol number.',
    `l7_protocol` LowCardinality(String) COMMENT 'dns, tls, http, or \'\' (payload seen, protocol not recognised).',
    `encryption` LowCardinality(String) COMMENT 'tls (encrypted), plaintext (HTTP or printable text), opaque (binary, not TLS), \'\'.',
    `packets` UInt32 COMMENT 'Packets of the conversation the agent looked at.',
    `dns_qname` String COMMENT 'DNS query name (hashed or truncated per tenant by config).',
    `dns_qname_length` UInt16 COMMENT 'Length of the query name as seen (before privacy).',
    `dns_qtype` UInt16 COMMENT 'DNS query type (1 A, 28 AAAA, 16 TXT, ...).',
    `dns_rcode` UInt16 COMMENT 'DNS response code (0 NOERROR, 3 NXDOMAIN, ...).',
    `dns_answers` String COMMENT 'Answer addresses / names, comma separated (at most 16).',
    `tls_version` LowCardinality(String) COMMENT 'TLS version: negotiated (ServerHello) or highest offered (ClientHello only).',
    `tls_cipher` LowCardinality(String) COMMENT 'Cipher suite the server chose (0x....).',
    `tls_sni` String COMMENT 'Server name the client asked for (hashed or truncated by config).',
    `tls_alpn` LowCardinality(String) COMMENT 'ALPN protocols offered/chosen.',
    `tls_ja3` String COMMENT 'JA3 of the ClientHello.',
    `tls_ja4` String COMMENT 'JA4 of the ClientHello.',
    `http_method` LowCardinality(String) COMMENT 'HTTP request method.',
    `http_host` String COMMENT 'HTTP Host header (hashed or truncated like names).',
    `http_path` String COMMENT 'Path template (numbers and ids replaced by {}; no query).',
    `http_status` UInt16 COMMENT 'HTTP response status.',
    `src_pod` String COMMENT 'pod of the src end at the packet\'s time.',
    `src_namespace` LowCardinality(String) COMMENT 'namespace of the src end at the packet\'s time.',
    `src_workload` LowCardinality(String) COMMENT 'workload of the src end at the packet\'s time.',
    `src_node` LowCardinality(String) COMMENT 'node of the src end at the packet\'s time.',
    `src_tenant` LowCardinality(String) COMMENT 'tenant of the src end at the packet\'s time.',
    `src_zone` LowCardinality(String) COMMENT 'zone of the src end at the packet\'s time.',
    `src_center` LowCardinality(String) COMMENT 'center of the src end at the packet\'s time.',
    `dst_pod` String COMMENT 'pod of the dst end at the packet\'s time.',
    `dst_namespace` LowCardinality(String) COMMENT 'namespace of the dst end at the packet\'s time.',
    `dst_workload` LowCardinality(String) COMMENT 'workload of the dst end at the packet\'s time.',
    `dst_node` LowCardinality(String) COMMENT 'node of the dst end at the packet\'s time.',
    `dst_tenant` LowCardinality(String) COMMENT 'tenant of the dst end at the packet\'s time.',
    `dst_zone` LowCardinality(String) COMMENT 'zone of the dst end at the packet\'s time.',
    `dst_center` LowCardinality(String) COMMENT 'center of the dst end at the packet\'s time.'
)
ENGINE = MergeTree
PARTITION BY toDate(time_received)
ORDER BY (toStartOfHour(time_received), capture_pod, src_addr, dst_addr, time_received)
TTL toDateTime(time_received) + toIntervalDay(90)
SETTINGS index_granularity = 8192, non_replicated_deduplication_window = 1000;

CREATE TABLE netobs.packet_samples
(
    `time_received` DateTime64(3, 'UTC') COMMENT 'When the collector received the datagram.' CODEC(Delta(8), ZSTD(1)),
    `packet_time` DateTime64(3, 'UTC') COMMENT 'When the packet was captured.' CODEC(Delta(8), ZSTD(1)),
    `agent` LowCardinality(String) COMMENT 'Node the sampling agent runs on.',
    `capture_if` LowCardinality(String) COMMENT 'Interface captured on (host end of the pod\'s port on the bridge).',
    `capture_pod` String COMMENT 'Pod of that interface (OVS external_ids), at capture time.',
    `capture_namespace` LowCardinality(String) COMMENT 'Namespace of that pod (OVS external_ids).',
    `direction` LowCardinality(String) COMMENT 'from_pod (the pod sent it) or to_pod.',
    `src_addr` IPv6 COMMENT 'Source address (inner, pod, address for tunnelled traffic).',
    `dst_addr` IPv6 COMMENT 'Destination address (inner for tunnelled traffic).',
    `src_port` UInt16 COMMENT 'Source port (0 for ICMP).',
    `dst_port` UInt16 COMMENT 'Destination port (ICMP: type*256+code).',
    `proto` UInt8 COMMENT 'IANA protocol number.',
    `tcp_flags` UInt16 COMMENT 'TCP flags.',
    `tos` UInt8 COMMENT 'IP TOS / traffic class.',
    `ttl` UInt8 COMMENT 'IP TTL / hop limit.',
    `vlan` UInt16 COMMENT '802.1Q VLAN id (0: untagged).',
    `etype` UInt16 COMMENT 'EtherType.',
    `wire_len` UInt32 COMMENT 'Frame length on the wire (bytes).',
    `payload_len` UInt32 COMMENT 'Transport payload length (from the headers; never the bytes).',
    `payload_class` LowCardinality(String) COMMENT 'What the payload\'s first bytes look like: none, tls, http, dns, text, binary.',
    `sampling_rate` UInt32 COMMENT '1:N packet sampling of the agent (scale counts by it).',
    `sampling_mode` LowCardinality(String) COMMENT 'deterministic (every Nth) or random (probability 1/N).',
    `src_pod` String COMMENT 'pod of the src end at the packet\'s time.',
    `src_namespace` LowCardinality(String) COMMENT 'namespace of the src end at the packet\'s time.',
    `src_workload` LowCardinality(String) COMMENT 'workload of the src end at the packet\'s time.',
    `src_node` LowCardinality(String) COMMENT 'node of the src end at the packet\'s time.',
    `src_tenant` LowCardinality(String) COMMENT 'tenant of the src end at the packet\'s time.',
    `src_zone` LowCardinality(String) COMMENT 'zone of the src end at the packet\'s time.',
    `src_center` LowCardinality(String) COMMENT 'center of the src end at the packet\'s time.',
    `dst_pod` String COMMENT 'pod of the dst end at the packet\'s time.',
    `dst_namespace` LowCardinality(String) COMMENT 'namespace of the dst end at the packet\'s time.',
    `dst_workload` LowCardinality(String) COMMENT 'workload of the dst end at the packet\'s time.',
    `dst_node` LowCardinality(String) COMMENT 'node of the dst end at the packet\'s time.',
    `dst_tenant` LowCardinality(String) COMMENT 'tenant of the dst end at the packet\'s time.',
    `dst_zone` LowCardinality(String) COMMENT 'zone of the dst end at the packet\'s time.',
    `dst_center` LowCardinality(String) COMMENT 'center of the dst end at the packet\'s time.'
)
ENGINE = MergeTree
PARTITION BY toDate(time_received)
ORDER BY (toStartOfHour(time_received), capture_pod, src_addr, dst_addr, time_received)
TTL toDateTime(time_received) + toIntervalDay(7)
SETTINGS index_granularity = 8192, non_replicated_deduplication_window = 1000;

CREATE MATERIALIZED VIEW netobs.counting_1m_mv TO netobs.counting_1m
(
    `time` DateTime('UTC'),
    `exporter` IPv6,
    `type` LowCardinality(String),
    `observer` LowCardinality(String),
    `count_reason` LowCardinality(String),
    `counted` UInt8,
    `named` UInt8,
    `flows` UInt64,
    `bytes` UInt64
)
AS SELECT
    toStartOfMinute(toDateTime(time_received, 'UTC')) AS time,
    exporter,
    type,
    observer,
    count_reason,
    counted,
    ((src_pod != '') OR (src_namespace != '') OR (src_node != '') OR (src_subnet != '') OR (dst_pod != '') OR (dst_namespace != '') OR (dst_node != '') OR (dst_subnet != '')) AS named,
    count() AS flows,
    sum(f.bytes * if(f.sampling_rate = 0, 1, f.sampling_rate)) AS bytes
FROM netobs.flows AS f
GROUP BY
    time,
    exporter,
    type,
    observer,
    count_reason,
    counted,
    named;

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
    `initiator` LowCardinality(String),
    `bytes` Float64,
    `packets` Float64,
    `raw_bytes` Float64,
    `raw_packets` Float64,
    `flows` Float64
)
AS SELECT
    toStartOfHour(f.time) AS time,
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
    initiator,
    sum(f.bytes) AS bytes,
    sum(f.packets) AS packets,
    sum(f.raw_bytes) AS raw_bytes,
    sum(f.raw_packets) AS raw_packets,
    sum(f.flows) AS flows
FROM netobs.flows_1m AS f
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
    direction,
    initiator;

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
    `initiator` LowCardinality(String),
    `bytes` Float64,
    `packets` Float64,
    `raw_bytes` Float64,
    `raw_packets` Float64,
    `flows` Float64
)
AS WITH
    toUnixTimestamp64Milli(f.event_end) AS _ee,
    toUnixTimestamp64Milli(f.event_start) AS _es,
    if(_ee > _es, intDiv(_ee - 1, 60000), intDiv(_ee, 60000)) AS _last,
    if(_ee > _es, (least(_ee, (_m + 1) * 60000) - greatest(_es, _m * 60000)) / (_ee - _es), 1) AS _w
SELECT
    toStartOfMinute(toDateTime(intDiv(_m * 60000, 1000), 'UTC')) AS time,
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
    initiator,
    sum((f.bytes * if(f.sampling_rate = 0, 1, f.sampling_rate)) * _w) AS bytes,
    sum((f.packets * if(f.sampling_rate = 0, 1, f.sampling_rate)) * _w) AS packets,
    sum(f.bytes * _w) AS raw_bytes,
    sum(f.packets * _w) AS raw_packets,
    sum(_w) AS flows
FROM netobs.flows AS f
ARRAY JOIN range(toUInt64(intDiv(_es, 60000)), toUInt64(_last) + 1) AS _m
WHERE counted = 1
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
    direction,
    initiator;

CREATE VIEW netobs.interface_counter_rates
AS SELECT
    time,
    interval_s,
    exporter,
    observation_domain,
    source_id,
    if_index,
    if_name,
    if_speed,
    exporter_node,
    exporter_center,
    reset,
    in_octets,
    out_octets,
    in_unicast_packets,
    in_multicast_packets,
    in_broadcast_packets,
    out_unicast_packets,
    out_multicast_packets,
    out_broadcast_packets,
    in_errors,
    out_errors,
    in_discards,
    out_discards,
    in_unknown_protos,
    fcs_errors,
    (in_unicast_packets + in_multicast_packets) + in_broadcast_packets AS in_packets,
    (out_unicast_packets + out_multicast_packets) + out_broadcast_packets AS out_packets,
    (in_octets * 8) / interval_s AS in_bps,
    (out_octets * 8) / interval_s AS out_bps,
    in_packets / interval_s AS in_pps,
    out_packets / interval_s AS out_pps,
    if(if_speed = 0, NULL, in_bps / if_speed) AS in_utilisation,
    if(if_speed = 0, NULL, out_bps / if_speed) AS out_utilisation
FROM
(
    SELECT
        time,
        interval_s,
        exporter,
        observation_domain,
        source_id,
        if_index,
        if_name,
        if_speed,
        exporter_node,
        exporter_center,
        toUInt8(((s.in_octets < s.prev_in_octets) AND (NOT ((s.in_octets < s.prev_in_octets) AND (toUInt64((s.in_octets - s.prev_in_octets)) <= (((if_speed / 8) * interval_s) * 1.5))))) OR ((s.out_octets < s.prev_out_octets) AND (NOT ((s.out_octets < s.prev_out_octets) AND (toUInt64((s.out_octets - s.prev_out_octets)) <= (((if_speed / 8) * interval_s) * 1.5)))))) AS reset,
        multiIf(reset = 1, toUInt64(s.in_octets), s.in_octets >= s.prev_in_octets, toUInt64(s.in_octets - s.prev_in_octets), ((s.in_octets < s.prev_in_octets) AND (toUInt64((s.in_octets - s.prev_in_octets)) <= (((if_speed / 8) * interval_s) * 1.5))), toUInt64((s.in_octets - s.prev_in_octets)), toUInt64(s.in_octets)) AS in_octets,
        multiIf(reset = 1, toUInt64(s.out_octets), s.out_octets >= s.prev_out_octets, toUInt64(s.out_octets - s.prev_out_octets), ((s.out_octets < s.prev_out_octets) AND (toUInt64((s.out_octets - s.prev_out_octets)) <= (((if_speed / 8) * interval_s) * 1.5))), toUInt64((s.out_octets - s.prev_out_octets)), toUInt64(s.out_octets)) AS out_octets,
        multiIf(reset = 1, toUInt64(s.in_unicast_packets), s.in_unicast_packets >= s.prev_in_unicast_packets, toUInt64(s.in_unicast_packets - s.prev_in_unicast_packets), ((s.in_unicast_packets < s.prev_in_unicast_packets) AND (toUInt64(toUInt32((s.in_unicast_packets - s.prev_in_unicast_packets))) <= (((if_speed / 512) * interval_s) * 1.5))), toUInt64(toUInt32((s.in_unicast_packets - s.prev_in_unicast_packets))), toUInt64(s.in_unicast_packets)) AS in_unicast_packets,
        multiIf(reset = 1, toUInt64(s.in_multicast_packets), s.in_multicast_packets >= s.prev_in_multicast_packets, toUInt64(s.in_multicast_packets - s.prev_in_multicast_packets), ((s.in_multicast_packets < s.prev_in_multicast_packets) AND (toUInt64(toUInt32((s.in_multicast_packets - s.prev_in_multicast_packets))) <= (((if_speed / 512) * interval_s) * 1.5))), toUInt64(toUInt32((s.in_multicast_packets - s.prev_in_multicast_packets))), toUInt64(s.in_multicast_packets)) AS in_multicast_packets,
        multiIf(reset = 1, toUInt64(s.in_broadcast_packets), s.in_broadcast_packets >= s.prev_in_broadcast_packets, toUInt64(s.in_broadcast_packets - s.prev_in_broadcast_packets), ((s.in_broadcast_packets < s.prev_in_broadcast_packets) AND (toUInt64(toUInt32((s.in_broadcast_packets - s.prev_in_broadcast_packets))) <= (((if_speed / 512) * interval_s) * 1.5))), toUInt64(toUInt32((s.in_broadcast_packets - s.prev_in_broadcast_packets))), toUInt64(s.in_broadcast_packets)) AS in_broadcast_packets,
        multiIf(reset = 1, toUInt64(s.out_unicast_packets), s.out_unicast_packets >= s.prev_out_unicast_packets, toUInt64(s.out_unicast_packets - s.prev_out_unicast_packets), ((s.out_unicast_packets < s.prev_out_unicast_packets) AND (toUInt64(toUInt32((s.out_unicast_packets - s.prev_out_unicast_packets))) <= (((if_speed / 512) * interval_s) * 1.5))), toUInt64(toUInt32((s.out_unicast_packets - s.prev_out_unicast_packets))), toUInt64(s.out_unicast_packets)) AS out_unicast_packets,
        multiIf(reset = 1, toUInt64(s.out_multicast_packets), s.out_multicast_packets >= s.prev_out_multicast_packets, toUInt64(s.out_multicast_packets - s.prev_out_multicast_packets), ((s.out_multicast_packets < s.prev_out_multicast_packets) AND (toUInt64(toUInt32((s.out_multicast_packets - s.prev_out_multicast_packets))) <= (((if_speed / 512) * interval_s) * 1.5))), toUInt64(toUInt32((s.out_multicast_packets - s.prev_out_multicast_packets))), toUInt64(s.out_multicast_packets)) AS out_multicast_packets,
        multiIf(reset = 1, toUInt64(s.out_broadcast_packets), s.out_broadcast_packets >= s.prev_out_broadcast_packets, toUInt64(s.out_broadcast_packets - s.prev_out_broadcast_packets), ((s.out_broadcast_packets < s.prev_out_broadcast_packets) AND (toUInt64(toUInt32((s.out_broadcast_packets - s.prev_out_broadcast_packets))) <= (((if_speed / 512) * interval_s) * 1.5))), toUInt64(toUInt32((s.out_broadcast_packets - s.prev_out_broadcast_packets))), toUInt64(s.out_broadcast_packets)) AS out_broadcast_packets,
        multiIf(reset = 1, toUInt64(s.in_errors), s.in_errors >= s.prev_in_errors, toUInt64(s.in_errors - s.prev_in_errors), ((s.in_errors < s.prev_in_errors) AND (toUInt64(toUInt32((s.in_errors - s.prev_in_errors))) <= (((if_speed / 512) * interval_s) * 1.5))), toUInt64(toUInt32((s.in_errors - s.prev_in_errors))), toUInt64(s.in_errors)) AS in_errors,
        multiIf(reset = 1, toUInt64(s.out_errors), s.out_errors >= s.prev_out_errors, toUInt64(s.out_errors - s.prev_out_errors), ((s.out_errors < s.prev_out_errors) AND (toUInt64(toUInt32((s.out_errors - s.prev_out_errors))) <= (((if_speed / 512) * interval_s) * 1.5))), toUInt64(toUInt32((s.out_errors - s.prev_out_errors))), toUInt64(s.out_errors)) AS out_errors,
        multiIf(reset = 1, toUInt64(s.in_discards), s.in_discards >= s.prev_in_discards, toUInt64(s.in_discards - s.prev_in_discards), ((s.in_discards < s.prev_in_discards) AND (toUInt64(toUInt32((s.in_discards - s.prev_in_discards))) <= (((if_speed / 512) * interval_s) * 1.5))), toUInt64(toUInt32((s.in_discards - s.prev_in_discards))), toUInt64(s.in_discards)) AS in_discards,
        multiIf(reset = 1, toUInt64(s.out_discards), s.out_discards >= s.prev_out_discards, toUInt64(s.out_discards - s.prev_out_discards), ((s.out_discards < s.prev_out_discards) AND (toUInt64(toUInt32((s.out_discards - s.prev_out_discards))) <= (((if_speed / 512) * interval_s) * 1.5))), toUInt64(toUInt32((s.out_discards - s.prev_out_discards))), toUInt64(s.out_discards)) AS out_discards,
        multiIf(reset = 1, toUInt64(s.in_unknown_protos), s.in_unknown_protos >= s.prev_in_unknown_protos, toUInt64(s.in_unknown_protos - s.prev_in_unknown_protos), ((s.in_unknown_protos < s.prev_in_unknown_protos) AND (toUInt64(toUInt32((s.in_unknown_protos - s.prev_in_unknown_protos))) <= (((if_speed / 512) * interval_s) * 1.5))), toUInt64(toUInt32((s.in_unknown_protos - s.prev_in_unknown_protos))), toUInt64(s.in_unknown_protos)) AS in_unknown_protos,
        multiIf(reset = 1, toUInt64(s.fcs_errors), s.fcs_errors >= s.prev_fcs_errors, toUInt64(s.fcs_errors - s.prev_fcs_errors), ((s.fcs_errors < s.prev_fcs_errors) AND (toUInt64(toUInt32((s.fcs_errors - s.prev_fcs_errors))) <= (((if_speed / 512) * interval_s) * 1.5))), toUInt64(toUInt32((s.fcs_errors - s.prev_fcs_errors))), toUInt64(s.fcs_errors)) AS fcs_errors
    FROM
    (
        SELECT
            time_received AS time,
            exporter,
            observation_domain,
            source_id,
            if_index,
            if_name,
            if_speed,
            exporter_node,
            exporter_center,
            in_octets,
            out_octets,
            in_unicast_packets,
            in_multicast_packets,
            in_broadcast_packets,
            out_unicast_packets,
            out_multicast_packets,
            out_broadcast_packets,
            in_errors,
            out_errors,
            in_discards,
            out_discards,
            in_unknown_protos,
            fcs_errors,
            row_number() OVER w AS nth,
            dateDiff('millisecond', lagInFrame(time_received) OVER w, time_received) / 1000 AS interval_s,
            lagInFrame(in_octets) OVER w AS prev_in_octets,
            lagInFrame(out_octets) OVER w AS prev_out_octets,
            lagInFrame(in_unicast_packets) OVER w AS prev_in_unicast_packets,
            lagInFrame(in_multicast_packets) OVER w AS prev_in_multicast_packets,
            lagInFrame(in_broadcast_packets) OVER w AS prev_in_broadcast_packets,
            lagInFrame(out_unicast_packets) OVER w AS prev_out_unicast_packets,
            lagInFrame(out_multicast_packets) OVER w AS prev_out_multicast_packets,
            lagInFrame(out_broadcast_packets) OVER w AS prev_out_broadcast_packets,
            lagInFrame(in_errors) OVER w AS prev_in_errors,
            lagInFrame(out_errors) OVER w AS prev_out_errors,
            lagInFrame(in_discards) OVER w AS prev_in_discards,
            lagInFrame(out_discards) OVER w AS prev_out_discards,
            lagInFrame(in_unknown_protos) OVER w AS prev_in_unknown_protos,
            lagInFrame(fcs_errors) OVER w AS prev_fcs_errors
        FROM netobs.interface_counters
        WHERE (time_received >= ({start:DateTime64(3, 'UTC')} - toIntervalSecond(3600))) AND (time_received < {end:DateTime64(3, 'UTC')})
        WINDOW w AS (PARTITION BY exporter, observation_domain, source_id, if_index ORDER BY time_received ASC ROWS BETWEEN 1 PRECEDING AND CURRENT ROW)
    ) AS s
    WHERE (nth > 1) AND (interval_s > 0) AND (time >= {start:DateTime64(3, 'UTC')})
)
ORDER BY
    exporter ASC,
    observation_domain ASC,
    source_id ASC,
    if_index ASC,
    time ASC
