"""Compliance reports: scope and coverage, posture, violations, exemptions, evidence.

``gather`` collects the report as data from the store, ``render_html``/``render_pdf`` lay it
out byte-stably, ``ledger`` chains reports by SHA-256; ``analytics.report.cli.add_parsers``
registers ``netobs report`` and ``netobs report verify``.
"""

import importlib
from typing import Any

__all__ = ["gather", "record", "render_html", "render_pdf", "verify"]

#: Public name → module; imported on first use so that ``netobs --help`` does not load the PDF engine.
_WHERE = {
    "gather": "analytics.report.data",
    "render_html": "analytics.report.html",
    "record": "analytics.report.ledger",
    "verify": "analytics.report.ledger",
    "render_pdf": "analytics.report.pdf",
}


def __getattr__(name: str) -> Any:
    if name not in _WHERE:
        raise AttributeError(name)
    return getattr(importlib.import_module(_WHERE[name]), name)
