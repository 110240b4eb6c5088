"""Prometheus names of the collector."""

from netobs.metrics import counter, gauge, histogram

datagrams = counter("netobs_collector_datagrams_total", "Datagrams received", ("exporter", "listener"))
records = counter("netobs_collector_flows_total", "Flow records decoded", ("exporter", "type"))
decode_errors = counter(
    "netobs_collector_decode_errors_total",
    "Datagrams or records that failed to decode",
    ("exporter", "reason"),
)
#: Sequence-number findings, one metric per unit counted (a metric has one unit).
sequence = {
    unit: counter(
        f"netobs_collector_sequence_{unit}_total",
        f"Sequence-number findings per exporter, in {unit}: kind=missing ({unit} skipped), late "
        f"(reordered {unit}), reset (exporter restarts, counted once each). Loss estimate: missing - late.",
        ("exporter", "type", "kind"),
    )
    for unit in ("datagrams", "samples", "records")
}
unsampled = counter(
    "netobs_collector_unsampled_flows_total",
    "Flows whose sampling rate neither the export nor the configuration (exporter_sampling, "
    "default_sampling_rate) gives; stored with sampling_rate 0 and counted once",
    ("exporter",),
)
rejected = counter(
    "netobs_collector_rejected_total", "Datagrams dropped before decoding", ("listener", "reason")
)
published = counter("netobs_collector_published_flows_total", "Flows handed to the transport", ())
publish_errors = counter(
    "netobs_collector_publish_errors_total", "Flows lost because the transport refused them", ()
)
lost = counter(
    "netobs_collector_lost_flows_total",
    "Flows (reason counters_*: interface counter records) the transport refused, per exporter; what the "
    "spool drops is in netobs_transport_dropped_rows_total",
    ("exporter", "reason"),
)
published_counters = counter(
    "netobs_collector_published_counters_total", "Interface counter records handed to the transport", ()
)
counter_publish_errors = counter(
    "netobs_collector_counter_publish_errors_total",
    "Interface counter records lost because the transport refused them",
    (),
)
publish_latency = histogram("netobs_collector_publish_seconds", "Time to hand one batch to the transport", ())
socket_drops = counter(
    "netobs_collector_socket_drops_total",
    "Datagrams the kernel dropped for a listener (receive buffer full)",
    ("listener",),
)

sampler_packets = counter(
    "netobs_sampler_packets_total",
    "Pod packets seen by the sampling agent, by result: seen, sampled, l7 (dissected), capped (per-pod "
    "sample cap), l7_capped (per-pod L7 cap or buffer), kernel_drops (ring full), shed (agent over its bounds)",
    ("result",),
)
sampler_rows = counter("netobs_sampler_rows_total", "Rows the sampling agent published, by kind", ("kind",))
sampler_interfaces = gauge("netobs_sampler_interfaces", "Pod interfaces being captured", ())
sampler_errors = counter(
    "netobs_sampler_errors_total",
    "Sampling agent errors, by reason (ovs, ring, dissect, publish)",
    ("reason",),
)
