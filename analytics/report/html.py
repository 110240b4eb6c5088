"""The report as one self-contained HTML file (inline CSS, SVG charts), byte-stable."""

from __future__ import annotations

from collections.abc import Iterable
from html import escape
from typing import Any

from analytics.report.charts import svg
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

_CSS = (
    "body{font-family:DejaVu Sans,Helvetica,Arial,sans-serif;margin:2em;color:#222}"
    "table{border-collapse:collapse;margin:0.5em 0 1.5em}td,th{border:1px solid #ccc;padding:3px 6px;"
    "font-size:12px;text-align:left}th{background:#eee}.num{text-align:right}h2{border-bottom:2px solid #444}"
    ".critical{color:#b2182b;font-weight:bold}.high{color:#d6604d}"
    # cells wrap between words only (a timestamp, an address or a name is never cut); a table wider
    # than the window scrolls on screen instead of overflowing the page
    ".t{white-space:nowrap}.wide{overflow-x:auto;max-width:100%}.cap{font-size:12px;margin:0.8em 0 0.2em}"
    "h2,h3,.cap{break-after:avoid}tr,svg{break-inside:avoid}"
    "@page{size:A4 landscape;margin:12mm}@media print{body{margin:0}td,th{font-size:9px}"
    ".wide{overflow:visible}}"
)


def _words(text: str) -> str:
    """``text`` with each word unbreakable: lines wrap at spaces only (never inside a timestamp,
    an address, a name or a date, which a browser would otherwise cut after any hyphen)."""
    return " ".join(f'<span class="t">{escape(w)}</span>' if "-" in w or "/" in w else escape(w)
                    for w in text.split(" "))  # fmt: skip


def _cell(v: Any) -> str:
    if isinstance(v, int | float) and not isinstance(v, bool):
        return f'<td class="num">{v:,}</td>'
    if isinstance(v, list | tuple):
        v = ", ".join(str(x) for x in v)
    return f"<td>{_words(str(v))}</td>"


def table(headers: list[str], rows: Iterable[Iterable[Any]]) -> str:
    head = "".join(f"<th>{escape(h)}</th>" for h in headers)
    body = "".join("<tr>" + "".join(_cell(c) for c in row) + "</tr>" for row in rows)
    return (
        f'<div class="wide"><table><tr>{head}</tr>{body or "<tr><td colspan=99>none</td></tr>"}</table></div>'
    )


def _scope(s: dict[str, Any]) -> str:
    exporters = table(EXPORTER_HEADER, exporter_rows(s))
    centers = table(["center", "counted records"], ([c["center"], c["flows"]] for c in s["centers"]))
    c = s["counting"]
    excluded = table(
        ["category", "records", "reason"],
        ([r["category"], category_count(r), r["reason"]] for r in s["categories"]),
    )  # fmt: skip
    return (
        "<h2>1. Scope and data coverage</h2>"
        f"<p>{c['records']:,} flow records received in the period; {c['counted']:,} counted (each packet "
        f"once, at the first observation point that saw it); {s['enriched_share']:.1%} of the counted "
        f"records name a pod, a node or a known network on at least one end ({c['counted_unnamed']:,} name "
        f"neither end). Coverage is measured in {s['buckets']} buckets of "
        f"{s['bucket_seconds']} s; a gap is a bucket without any record from the exporter, i.e. "
        "traffic that was <b>not observed</b>.</p>"
        f"<h3>Every record, by category</h3>{excluded}"
        f"<h3>Centers</h3><p>Counted records with an end in the center (a record between two centers "
        f"counts in both).</p>{centers}<h3>Exporters</h3>{exporters}"
    )


def _chart(title: str, p: dict[str, Any], key: str = "trend_by_severity") -> str:
    """A trend chart with its title and what its axes mean (as the PDF's)."""
    return (
        f'<p class="cap"><b>{escape(title)}</b>: x, bucket start (UTC); y, conversations violating in the '
        "bucket (a conversation seen in several buckets counts in each)</p>" + svg(p[key], p["trend_buckets"])
    )


def _posture(p: dict[str, Any]) -> str:
    sev = ", ".join(f"{k}: {v}" for k, v in p["by_severity"].items())
    rules = table(
        RULE_HEADER,
        rule_rows(p),
    )
    rollup = lambda rows: table(  # noqa: E731
        ["name", "conversations", "flows", "bytes"],
        ([r["name"], r["violations"], r["flows"], r["bytes"]] for r in rows),
    )
    return (
        "<h2>2. Posture summary</h2>"
        f"<p>{p['violations']} violating conversations ({sev}); {p['rules_compliant']} of {p['rules_total']} rules "
        "without any violation.</p>"
        + _chart("Violating conversations by severity", p)
        + "<h2>3. Violations by rule</h2>"
        + rules
        + _chart("Violating conversations by rule", p, "trend_by_rule")
        + "<h3>By client tenant</h3>"
        + rollup(p["by_tenant"])
        + "<h3>By center pair (client -> server)</h3>"
        + rollup(p["by_center"])
    )


def render_html(data: dict[str, Any]) -> str:
    """The report document; every byte depends only on ``data``."""
    ex = table(
        [
            "id",
            "rule",
            "client",
            "server",
            "ports",
            "approver",
            "reason",
            "ticket",
            "starts",
            "expires",
            "in force",
            "review",
        ],
        (
            [
                e["id"],
                e["rule"],
                e["from"],
                e["to"],
                e["ports"],
                e["approver"],
                e["reason"],
                e["ticket"],
                e["starts"],
                e["expires"],
                e["in_force"],
                e["review"],
            ]
            for e in data["exemptions"]
        ),
    )
    listing = table(
        ["rule", "severity", "client", "server", "port", "flows", "packets", "bytes", "first seen", "last seen",
         "exemption considered", "id"],
        (
            [v["rule"], v["severity"], entity_name(v["client"]), entity_name(v["server"]), port_text(v["port"], v["proto"]),
             v["flows"], v["packets"], v["bytes"], short_time(v["first_seen"]), short_time(v["last_seen"]),
             v.get("exemptions_considered", "") or "none", v["id"]]
            for v in data["violations"]
        ),
    )  # fmt: skip
    evidence = "".join(
        f"<h3>{escape(e['rule'])} · {escape(e['id'])}</h3>"
        + table(
            EVIDENCE_HEADER,
            evidence_rows(e),
        )
        for e in data["evidence"]
    )
    pol = data["policy"]
    return (
        f'<!DOCTYPE html><html lang="en"><head><meta charset="utf-8"><title>{escape(data["title"])}</title>'
        f"<style>{_CSS}</style></head><body><h1>{escape(data['title'])}</h1>"
        f"<p>Period: {data['period']['start']} – {data['period']['end']} (UTC, end exclusive); generated "
        f"{data['generated']}. Every figure counts records the counting model counts (each packet once); "
        "violations are conversations (client, server, server port, protocol) per rule. "
        f"Policy <b>{escape(pol['name'])}</b>, SHA-256 <code>{pol['sha256']}</code>. "
        "Bytes and packets are scaled by the sampling rate.</p>"
        + _scope(data["scope"])
        + _posture(data["posture"])
        + "<h2>4. Exemptions in force during the period</h2>"
        + ex
        + "<h2>5. Violating conversations</h2>"
        + f"<p>{data['violations_total']:,} violating conversations; shown: the largest {len(data['violations'])} "
        f"(up to {data.get('evidence_limit', 5)} per rule). The full list is the attached CSV "
        f"<code>{escape(data.get('csv_name', 'violations.csv'))}</code>; the manifest records its SHA-256.</p>"
        + listing
        + "<h2>Appendix: sample flows of the conversations shown</h2>"
        + (evidence or "<p>none</p>")
        + "</body></html>\n"
    )
