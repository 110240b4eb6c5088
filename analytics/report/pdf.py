"""The report as PDF (fpdf2, pure Python): same sections as the HTML, charts drawn as rectangles.

Byte-stable: the creation date is the period end (not the time of generation), so fpdf2's
content-derived file /ID is stable too; fonts are embedded from fixed files (DejaVu when
installed, for non-Latin names; Helvetica otherwise).
"""

from __future__ import annotations

from datetime import datetime
from pathlib import Path
from typing import Any

from fpdf import FPDF
from fpdf.enums import TableCellFillMode
from fpdf.fonts import FontFace

from analytics.report.charts import bars, colour
from analytics.report.data import (
    EVIDENCE_HEADER,
    EXPORTER_HEADER,
    RULE_HEADER,
    entity_name,
    evidence_rows,
    exporter_rows,
    rule_rows,
)

_DEJAVU = Path("/usr/share/fonts/truetype/dejavu")
_HEADING = (215, 215, 215)
_ZEBRA = (244, 244, 244)
_ASCII_DASHES = str.maketrans({"–": "-", "—": "-"})


class _Doc(FPDF):
    def __init__(self, title: str):
        super().__init__(orientation="L", unit="mm", format="A4")
        self.title_text = title
        self.unicode = (_DEJAVU / "DejaVuSans.ttf").exists()
        if self.unicode:
            self.add_font("body", "", str(_DEJAVU / "DejaVuSans.ttf"))
            self.add_font("body", "B", str(_DEJAVU / "DejaVuSans-Bold.ttf"))
        self.family = "body" if self.unicode else "Helvetica"
        self.set_auto_page_break(True, margin=12)

    def text_of(self, v: Any) -> str:
        s = (
            ", ".join(map(str, v))
            if isinstance(v, list | tuple)
            else (f"{v:,}" if isinstance(v, int) else str(v))
        )
        if self.unicode:
            return s
        # The core fonts are latin-1: dashes become their ASCII look-alike rather than '?'.
        return s.translate(_ASCII_DASHES).encode("latin-1", "replace").decode("latin-1")

    def footer(self) -> None:
        self.set_y(-10)
        self.set_font(self.family, "", 7)
        self.cell(0, 5, self.text_of(f"{self.title_text} · page {self.page_no()}"), align="C")

    def heading(self, text: str, size: int = 13) -> None:
        self.set_font(self.family, "B", size)
        self.ln(2)
        self.multi_cell(0, 7, self.text_of(text), align="L", new_x="LMARGIN", new_y="NEXT")
        self.set_font(self.family, "", 8)

    def para(self, text: str) -> None:
        self.set_font(self.family, "", 8)
        self.multi_cell(0, 4.5, self.text_of(text), align="L", new_x="LMARGIN", new_y="NEXT")
        self.ln(1)

    def grid(self, headers: list[str], rows: list[list[Any]]) -> None:
        """A table: bold headings on grey, body rows white and light grey in turn (zebra)."""
        self.set_font(self.family, "", 7)
        self.set_fill_color(255, 255, 255)  # the body's base colour; charts change the fill colour
        with self.table(
            text_align="LEFT",
            line_height=4,
            first_row_as_headings=True,
            headings_style=FontFace(emphasis="BOLD", fill_color=_HEADING),
            cell_fill_color=_ZEBRA,
            cell_fill_mode=TableCellFillMode.ROWS,
        ) as t:
            t.row([self.text_of(h) for h in headers])
            for row in rows or [["none"] + [""] * (len(headers) - 1)]:
                t.row([self.text_of(c) for c in row])
        self.ln(2)

    def chart(self, series: dict[str, list[int]], labels: list[str], w: float = 250, h: float = 35) -> None:
        if self.will_page_break(h + 12):
            self.add_page()
        x0, y0 = self.l_margin, self.get_y()
        self.set_fill_color(247, 247, 247)
        self.rect(x0, y0, w, h, style="F")
        for x, y, bw, bh, c in bars(series, w, h):
            self.set_fill_color(*_rgb(c))
            self.rect(x0 + x, y0 + y, bw, bh, style="F")
        self.set_xy(x0, y0 + h + 1)
        self.set_font(self.family, "", 6)
        if labels:
            self.cell(w / 2, 3.5, self.text_of(labels[0]))
            self.cell(w / 2, 3.5, self.text_of(labels[-1]), align="R", new_x="LMARGIN", new_y="NEXT")
        x = x0
        for k, name in enumerate(series):
            self.set_fill_color(*_rgb(colour(name, k)))
            self.rect(x, self.get_y() + 0.5, 2.5, 2.5, style="F")
            self.set_x(x + 3)
            label = self.text_of(name)
            self.cell(self.get_string_width(label) + 4, 3.5, label)
            x = self.get_x()
        self.ln(6)


def _rgb(c: str) -> tuple[int, int, int]:
    return int(c[1:3], 16), int(c[3:5], 16), int(c[5:7], 16)


def render_pdf(data: dict[str, Any]) -> bytes:
    """The report as PDF bytes; every byte depends only on ``data``."""
    doc = _Doc(data["title"])
    end = datetime.fromisoformat(data["period"]["end"].replace("Z", "+00:00"))
    doc.set_creation_date(end)
    doc.set_producer("netobs")
    doc.set_title(data["title"])
    doc.add_page()
    doc.heading(data["title"], 16)
    pol = data["policy"]
    doc.para(
        f"Period {data['period']['start']} to {data['period']['end']} (UTC, end exclusive). "
        f"Policy {pol['name']}, SHA-256 {pol['sha256']}. Bytes and packets are scaled by the sampling rate."
    )
    _scope(doc, data["scope"])
    _posture(doc, data["posture"])
    doc.heading("4. Exemptions in force")
    doc.grid(
        ["id", "rule", "from", "to", "ports", "approver", "reason", "ticket", "expires"],
        [
            [
                e["id"],
                e["rule"],
                e["from"],
                e["to"],
                e["ports"],
                e["approver"],
                e["reason"],
                e["ticket"],
                e["expires"],
            ]
            for e in data["exemptions"]
        ],
    )
    doc.heading("5. Violations")
    doc.grid(
        ["window", "rule", "severity", "source", "destination", "flows", "bytes", "first seen", "last seen"],
        [
            [
                v["window"]["start"],
                v["rule"],
                v["severity"],
                entity_name(v["src"]),
                entity_name(v["dst"]),
                v["flows"],
                v["bytes"],
                v["first_seen"],
                v["last_seen"],
            ]
            for v in data["violations"]
        ],
    )
    doc.heading("Appendix: evidence")
    for e in data["evidence"]:
        doc.para(f"{e['rule']} · {e['id']}")
        doc.grid(
            EVIDENCE_HEADER,
            evidence_rows(e),
        )
    return bytes(doc.output())


def _scope(doc: _Doc, s: dict[str, Any]) -> None:
    doc.heading("1. Scope and data coverage")
    c = s["counting"]
    doc.para(
        f"{c['records']:,} flow records received; {c['counted']:,} counted (each packet once, at the first "
        f"observation point that saw it); {s['enriched_share']:.1%} of the counted records name a pod, a node "
        f"or a known network on at least one end ({c['counted_unnamed']:,} name neither). Coverage in "
        f"{s['buckets']} buckets of {s['bucket_seconds']} s; a gap is a bucket without any record from the "
        "exporter (traffic that was not observed)."
    )
    if c["not_counted"]:
        doc.grid(
            ["not counted", "records", "why"],
            [[r["reason"], r["records"], r["why"]] for r in c["not_counted"]],
        )
    doc.grid(["center", "flow records"], [[c["center"], c["flows"]] for c in s["centers"]])
    doc.grid(EXPORTER_HEADER, exporter_rows(s))


def _posture(doc: _Doc, p: dict[str, Any]) -> None:
    doc.heading("2. Posture summary")
    sev = ", ".join(f"{k}: {v}" for k, v in p["by_severity"].items())
    doc.para(
        f"{p['violations']} violations ({sev}); {p['rules_compliant']} of {p['rules_total']} rules "
        "without any violation."
    )
    doc.chart(p["trend_by_severity"], p["trend_buckets"])
    doc.heading("3. Violations by rule")
    doc.grid(
        RULE_HEADER,
        rule_rows(p),
    )
    doc.chart(p["trend_by_rule"], p["trend_buckets"])
    for title, rows in (("By source tenant", p["by_tenant"]), ("By center pair", p["by_center"])):
        doc.heading(title, 10)
        doc.grid(
            ["name", "violations", "flows", "bytes"],
            [[r["name"], r["violations"], r["flows"], r["bytes"]] for r in rows],
        )
