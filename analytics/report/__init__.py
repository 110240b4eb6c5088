"""Compliance reports: scope and coverage, posture, violations, exemptions, evidence.

``gather`` collects the report as data from the store, ``render_html``/``render_pdf`` lay it
out byte-stably, ``ledger`` chains reports by SHA-256; ``analytics.report.cli.add_parsers``
registers ``netobs report`` and ``netobs report verify``.
"""

from analytics.report.data import gather
from analytics.report.html import render_html
from analytics.report.ledger import record, verify
from analytics.report.pdf import render_pdf

__all__ = ["gather", "record", "render_html", "render_pdf", "verify"]
