"""The report as PDF (fpdf2, pure Python): same sections as the HTML, charts drawn with axes.

The creation date is the generation time (``data['generated']``); rendered from the same data,
the bytes are the same. Fonts are embedded from fixed files (DejaVu when installed, for
non-Latin names; Helvetica otherwise); fontTools' subsetting chatter is silenced.
"""

from __future__ import annotations

import logging
from datetime import datetime
from pathlib import Path
from typing import Any

from fpdf import FPDF
from fpdf.enums import TableCellFillMode
from fpdf.fonts import FontFace

from analytics.report.charts import bars, colour, ticks, totals, x_labels
from analytics.report.data import (
    EVIDENCE_HEADER,
    EXPORTER_HEADER,
    RULE_HEADER,
    category_count,
    entity_name,
    evidence_rows,
    exporter_rows,
    port_text,
    rule_rows,
    short_time,
)

# fontTools logs every glyph table it subsets at INFO (~75 lines a PDF): not for the user's terminal.
logging.getLogger("fontTools").setLevel(logging.WARNING)

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

    def heading(self, text: str, size: int = 13, keep: float = 35) -> None:
        if self.will_page_break(keep):  # never a heading stranded at the foot of a page
            self.add_page()
        self.set_font(self.family, "B", size)
        self.ln(2)
        self.multi_cell(0, 7, self.text_of(text), align="L", new_x="LMARGIN", new_y="NEXT")
        self.set_font(self.family, "", 8)

    def para(self, text: str) -> None:
        self.set_font(self.family, "", 8)
        self.multi_cell(0, 4.5, self.text_of(text), align="L", new_x="LMARGIN", new_y="NEXT")
        self.ln(1)

    def grid(
        self, headers: list[str], rows: list[list[Any]], widths: tuple[float, ...] | None = None
    ) -> None:
        """A table: bold headings on grey, body rows white and light grey in turn (zebra); numbers
        right-aligned; every column at least as wide as its longest word (names, addresses and
        timestamps wrap at spaces, never inside)."""
        self.set_font(self.family, "", 7)
        self.set_fill_color(255, 255, 255)  # the body's base colour; charts change the fill colour
        rows = rows or [["none"] + [""] * (len(headers) - 1)]
        widths = self.fit(headers, rows, widths)
        with self.table(
            text_align="LEFT",
            line_height=4,
            first_row_as_headings=True,
            headings_style=FontFace(emphasis="BOLD", fill_color=_HEADING),
            cell_fill_color=_ZEBRA,
            cell_fill_mode=TableCellFillMode.ROWS,
            col_widths=widths,
        ) as t:
            t.row([self.text_of(h) for h in headers])
            for row in rows:
                r = t.row()
                for c in row:
                    number = isinstance(c, int | float) and not isinstance(c, bool)
                    r.cell(self.text_of(c), align="RIGHT" if number else "LEFT")
        self.ln(2)

    def fit(
        self, headers: list[str], rows: list[list[Any]], widths: tuple[float, ...] | None
    ) -> tuple[float, ...]:
        """Column widths (mm, summing to the page width): the given proportions (default: even),
        each column raised to its longest word (+ padding), the others giving way in proportion."""
        page = self.epw
        want = [float(w) for w in widths] if widths else [1.0] * len(headers)
        want = [w / sum(want) * page for w in want]
        need = []
        for i, h in enumerate(headers):
            self.set_font(self.family, "B", 7)
            longest = max((self.get_string_width(w) for w in self.text_of(h).split()), default=0)
            self.set_font(self.family, "", 7)
            for row in rows:
                words = self.text_of(row[i]).split() if i < len(row) else []
                longest = max([longest, *(self.get_string_width(w) for w in words)])
            need.append(longest + 2.5)
        if sum(need) >= page:  # cannot fit every word: proportional to the needs
            return tuple(n / sum(need) * page for n in need)
        out = list(want)
        for _ in range(len(out)):
            short = [i for i, w in enumerate(out) if w < need[i] - 1e-6]
            if not short:
                break
            for i in short:
                out[i] = need[i]
            spare = [i for i, w in enumerate(out) if w > need[i] + 1e-6]
            excess = sum(out) - page
            room = sum(out[i] - need[i] for i in spare)
            for i in spare:
                out[i] -= excess * (out[i] - need[i]) / room
        return tuple(out)

    def chart(
        self, series: dict[str, list[int]], labels: list[str], title: str, w: float = 255, h: float = 40
    ) -> None:
        """Stacked bars with a y axis (round ticks, grid), x tick labels, each bar's total and a legend."""
        if self.will_page_break(h + 22):
            self.add_page()
        self.set_font(self.family, "", 7)
        self.cell(0, 4, self.text_of(title), new_x="LMARGIN", new_y="NEXT")
        left = 12
        x0, y0, pw = self.l_margin + left, self.get_y() + 2, w - left
        peak = max(totals(series) or [0])
        scale = ticks(peak)
        top = scale[-1]
        self.set_draw_color(221, 221, 221)
        self.set_font(self.family, "", 6)
        for t in scale:
            y = y0 + h - t / top * h
            self.line(x0, y, x0 + pw, y)
            self.set_xy(self.l_margin, y - 1.5)
            self.cell(left - 1.5, 3, str(t), align="R")
        for x, y, bw, bh, c in bars(series, pw, h, top):
            self.set_fill_color(*_rgb(c))
            self.rect(x0 + x, y0 + y, bw, bh, style="F")
        n = len(labels)
        slot = pw / max(n, 1)
        if n <= 48:
            for i, total in enumerate(totals(series)):
                if total:
                    self.set_xy(x0 + i * slot, y0 + h - total / top * h - 3.2)
                    self.cell(slot, 3, str(total), align="C")
        self.set_draw_color(68, 68, 68)
        self.line(x0, y0 + h, x0 + pw, y0 + h)
        self.line(x0, y0, x0, y0 + h)
        for i, text in x_labels(labels):
            self.line(x0 + i * slot, y0 + h, x0 + i * slot, y0 + h + 1)
            self.set_xy(x0 + i * slot - 1, y0 + h + 1)
            self.cell(25, 3, text)
        self.set_xy(self.l_margin, y0 + h + 5)
        self.cell(
            0,
            3,
            "bucket start (UTC); y: violating conversations in the bucket",
            new_x="LMARGIN",
            new_y="NEXT",
        )
        x = x0
        for k, name in enumerate(series):
            self.set_fill_color(*_rgb(colour(name, k)))
            self.rect(x, self.get_y() + 0.5, 2.5, 2.5, style="F")
            self.set_x(x + 3)
            label = self.text_of(name)
            self.cell(self.get_string_width(label) + 4, 3.5, label)
            x = self.get_x()
        self.set_draw_color(0, 0, 0)
        self.ln(7)


def _rgb(c: str) -> tuple[int, int, int]:
    return int(c[1:3], 16), int(c[3:5], 16), int(c[5:7], 16)


def render_pdf(data: dict[str, Any]) -> bytes:
    """The report as PDF bytes; every byte depends only on ``data`` (its generation time included)."""
    doc = _Doc(data["title"])
    doc.set_creation_date(datetime.fromisoformat(data["generated"].replace("Z", "+00:00")))
    doc.set_producer("netobs")
    doc.set_creator("netobs report")
    doc.set_title(data["title"])
    doc.set_subject(f"{data['policy']['name']} {data['period']['start']} - {data['period']['end']}")
    doc.add_page()
    doc.heading(data["title"], 16)
    pol = data["policy"]
    doc.para(
        f"Period {short_time(data['period']['start'])} to {short_time(data['period']['end'])} UTC (end exclusive); "
        f"generated {short_time(data['generated'])} UTC. Policy {pol['name']}, SHA-256 {pol['sha256']}. "
        "Every figure counts flow records the counting model counts (each packet once); violations are "
        "conversations (client, server, server port, protocol) per rule; bytes and packets are scaled by "
        "the sampling rate."
    )
    _scope(doc, data["scope"])
    _posture(doc, data["posture"])
    doc.heading("4. Exemptions in force during the period")
    doc.grid(
        ["id", "rule", "client", "server", "ports", "approver", "reason", "ticket", "expires", "in force",
         "review"],
        [
            [e["id"], e["rule"], e["from"], e["to"], e["ports"], e["approver"], e["reason"], e["ticket"],
             short_time(e["expires"]) if e["expires"] != "never" else "never", e["in_force"], e["review"]]
            for e in data["exemptions"]
        ],
    )  # fmt: skip
    doc.heading("5. Violating conversations")
    doc.para(
        f"{data['violations_total']:,} violating conversations in the period; shown: the largest "
        f"{len(data['violations'])} (by bytes, up to {data.get('evidence_limit', 5)} per rule). The full list is the "
        f"attached CSV ({data.get('csv_name', 'violations.csv')}), whose SHA-256 the report's manifest records."
    )
    doc.grid(
        ["rule", "severity", "client", "server", "port", "flows", "bytes", "first seen", "last seen", "exemption considered"],
        [
            [v["rule"], v["severity"], entity_name(v["client"]), entity_name(v["server"]), port_text(v["port"], v["proto"]),
             v["flows"], v["bytes"], short_time(v["first_seen"]), short_time(v["last_seen"]),
             v.get("exemptions_considered", "") or "none"]
            for v in data["violations"]
        ],
        widths=(14, 7, 24, 24, 7, 5, 9, 9, 9, 14),
    )  # fmt: skip
    doc.heading("Appendix: sample flows of the conversations shown")
    for e in data["evidence"]:
        rows = evidence_rows(e)
        if doc.will_page_break(6 + 4.5 * (len(rows) + 1) * 2):  # a sample with its caption, not split
            doc.add_page()
        doc.para(f"{e['rule']} · {e['id']}")
        doc.grid(EVIDENCE_HEADER, rows)
    return bytes(doc.output())


def _scope(doc: _Doc, s: dict[str, Any]) -> None:
    doc.heading("1. Scope and data coverage")
    c = s["counting"]
    doc.para(
        f"{c['records']:,} flow records received with an event time in the period; {c['counted']:,} counted "
        f"(each packet once, at the first observation point that saw it); {s['enriched_share']:.1%} of the "
        f"counted records name a pod, a node or a known network on at least one end. Every record is in one "
        "category below. Exporter coverage in "
        f"{s['buckets']} buckets of {s['bucket_seconds']} s; a gap is a bucket without any record from the "
        "exporter (traffic that was not observed)."
    )
    doc.grid(
        ["category", "records", "reason"],
        [[r["category"], category_count(r), r["reason"]] for r in s["categories"]],
    )
    doc.grid(
        ["center", "counted records with an end in the center (a record between two centers counts in both)"],
        [[c["center"], c["flows"]] for c in s["centers"]],
        widths=(1, 3),
    )
    doc.grid(EXPORTER_HEADER, exporter_rows(s))


def _posture(doc: _Doc, p: dict[str, Any]) -> None:
    doc.heading("2. Posture summary", keep=80)  # with its chart
    sev = ", ".join(f"{k}: {v}" for k, v in p["by_severity"].items())
    doc.para(
        f"{p['violations']} violating conversations ({sev}); {p['rules_compliant']} of {p['rules_total']} rules "
        "without any violation."
    )
    doc.chart(p["trend_by_severity"], p["trend_buckets"], "Violating conversations by severity")
    doc.heading("3. Violations by rule")
    doc.grid(
        RULE_HEADER,
        rule_rows(p),
    )
    doc.chart(p["trend_by_rule"], p["trend_buckets"], "Violating conversations by rule")
    for title, rows in (
        ("By client tenant", p["by_tenant"]),
        ("By center pair (client -> server)", p["by_center"]),
    ):
        doc.heading(title, 10)
        doc.grid(
            ["name", "conversations", "flows", "bytes"],
            [[r["name"], r["violations"], r["flows"], r["bytes"]] for r in rows],
        )
