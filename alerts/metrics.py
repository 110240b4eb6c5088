"""Prometheus metrics of the alert notifier."""

from __future__ import annotations

from netobs.metrics import counter, gauge

read_rows = counter("netobs_alerts_read_rows_total", "Findings/violations rows read", ("source",))
dropped_rows = counter(
    "netobs_alerts_dropped_rows_total",
    "Rows not made into alerts (reason=malformed) and alerts no route matched (reason=unrouted)",
    ("source", "reason"),
)
sent = counter("netobs_alerts_sent_total", "Alerts delivered", ("route", "sink", "state"))
delivery_failures = counter(
    "netobs_alerts_delivery_failures_total", "Failed deliveries (retried next run)", ("route", "sink")
)
runs = counter("netobs_alerts_runs_total", "Notifier runs")
run_errors = counter("netobs_alerts_run_errors_total", "Notifier runs that failed (store down, ...)")
pending = gauge("netobs_alerts_pending", "Deliveries due but not yet successful", ("route", "sink"))

__all__ = ["delivery_failures", "dropped_rows", "pending", "read_rows", "run_errors", "runs", "sent"]
