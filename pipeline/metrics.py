"""Prometheus names of the pipeline."""

from netobs.metrics import counter, gauge, histogram

consumed = counter("netobs_pipeline_consumed_messages_total", "Transport messages consumed", ())
bad_messages = counter(
    "netobs_pipeline_bad_messages_total", "Messages that could not be read (kept aside)", ("reason",)
)
rows_inserted = counter(
    "netobs_pipeline_rows_inserted_total",
    "Rows the store confirmed it stored (duplicates it dropped apart)",
    (),
)
rows_deduplicated = counter(
    "netobs_pipeline_rows_deduplicated_total",
    "Rows sent whose block the store dropped as a duplicate (a replayed batch; on servers without "
    "deduplication tokens also a distinct block identical to a recent one)",
    ("target",),
)
counter_rows_inserted = counter(
    "netobs_pipeline_counter_rows_inserted_total", "Interface counter rows inserted into the store", ()
)
insert_failures = counter(
    "netobs_pipeline_insert_failures_total",
    "Inserts that failed and were retried, by category (transient: disk full, too many parts, read-only "
    "replica, network; unknown: unclassified, retried pipeline.max_unknown_retries times)",
    ("category",),
)
quarantined_rows = counter(
    "netobs_pipeline_quarantined_rows_total",
    "Rows the store cannot take (time out of range, values refused by the store), set aside alone to the "
    "dead-letter destination while the rest of their batch went in",
    ("reason",),
)
lost_rows = counter(
    "netobs_pipeline_lost_rows_total",
    "Rows set aside with no dead-letter destination to keep them",
    ("reason",),
)
duplicate_messages = counter(
    "netobs_pipeline_duplicate_messages_total",
    "Messages not inserted because one with the same message id was taken before (a producer sent "
    "it again after a delivery that timed out in flight had been stored after all)",
    (),
)
duplicate_rows = counter(
    "netobs_pipeline_duplicate_rows_total", "Rows of the messages counted in duplicate_messages", ()
)
buffered_rows = gauge("netobs_pipeline_buffered_rows", "Rows waiting for the next insert", ())
insert_latency = histogram("netobs_pipeline_insert_seconds", "Duration of one insert", ())
dead_letters = counter(
    "netobs_pipeline_dead_letters_total", "Messages sent to the dead-letter destination", ("reason",)
)
dropped_on_rebalance = counter(
    "netobs_pipeline_rebalance_dropped_rows_total", "Buffered rows dropped when partitions were revoked", ()
)
paused = gauge("netobs_pipeline_paused", "1 while consumption is paused (buffer full or store down)", ())
refused_retention = counter(
    "netobs_pipeline_refused_retention_total",
    "Flow records refused because they were received longer ago than the store keeps (store.retention_days)",
    (),
)
counted_records = counter(
    "netobs_pipeline_counting_records_total",
    "Flow records by what the counting model did with them (netobs.counting.REASONS)",
    ("reason",),
)
