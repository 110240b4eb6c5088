"""Prometheus names of the transports and the spool."""

from netobs.metrics import counter, gauge

delivered = counter(
    "netobs_transport_delivered_rows_total", "Rows the transport confirmed (Kafka: acknowledged)", ("kind",)
)
spooled = counter(
    "netobs_transport_spooled_rows_total",
    "Rows written to the spool because the transport could not take them",
    ("kind",),
)
replayed = counter(
    "netobs_transport_replayed_rows_total", "Spooled rows handed to the transport later", ("kind",)
)
dropped = counter(
    "netobs_transport_dropped_rows_total",
    "Rows lost before the transport took them, per exporter and reason (spool_full, disk_full, expired, "
    "spool_error)",
    ("exporter", "kind", "reason"),
)
spool_records = gauge("netobs_transport_spool_records", "Records in the spool, not yet delivered", ())
spool_bytes = gauge("netobs_transport_spool_bytes", "Bytes the spool holds on disk", ())
spool_oldest_age = gauge(
    "netobs_transport_spool_oldest_age_seconds", "Age of the oldest spooled segment (0: spool empty)", ()
)
transport_up = gauge(
    "netobs_transport_up", "1 while the transport takes batches directly, 0 while they go to the spool", ()
)
consumer_lag = gauge(
    "netobs_transport_consumer_lag_records",
    "Kafka records between the consumer's position and the partition's high watermark",
    ("topic", "partition"),
)
