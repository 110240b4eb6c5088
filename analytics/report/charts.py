"""Trend charts as geometry: one computation, drawn as SVG (HTML) or with PDF primitives.

Stacked bars per bucket, one colour per series (the Okabe–Ito palette, distinguishable with
the common colour-vision deficiencies and dark enough to see on white), a y axis with round
ticks, x tick labels that never crowd, and each bar's total above it. Coordinates are rounded
so the output is byte-stable.
"""

from __future__ import annotations

import math
from datetime import datetime
from html import escape

#: Okabe & Ito (2008), without its yellow (too light on white).
PALETTE = ("#0072B2", "#E69F00", "#009E73", "#CC79A7", "#56B4E9", "#D55E00", "#000000", "#999999")
SEVERITY_COLOURS = {
    "critical": "#D55E00",
    "high": "#E69F00",
    "medium": "#CC79A7",
    "low": "#0072B2",
    "info": "#999999",
}


def ticks(peak: int, n: int = 4) -> list[int]:
    """Round y ticks from 0 covering ``peak`` (1, 2 or 5 times a power of ten apart)."""
    if peak <= 0:
        return [0, 1]
    raw = peak / n
    mag = 10 ** math.floor(math.log10(raw)) if raw >= 1 else 1
    step = next(m * mag for m in (1, 2, 5, 10) if m * mag >= raw)
    step = max(int(step), 1)
    return list(range(0, int(math.ceil(peak / step)) * step + 1, step))


def x_labels(labels: list[str], most: int = 12) -> list[tuple[int, str]]:
    """(bucket index, text) of the x tick labels: at most ``most``, evenly spaced, short."""
    if not labels:
        return []
    every = max(1, math.ceil(len(labels) / most))
    times = [datetime.fromisoformat(x.replace("Z", "+00:00")) for x in labels]
    daily = len(times) < 2 or (times[1] - times[0]).total_seconds() >= 86400
    fmt = "%Y-%m-%d" if daily else "%m-%d %H:%M"
    return [(i, times[i].strftime(fmt)) for i in range(0, len(labels), every)]


def totals(series: dict[str, list[int]]) -> list[int]:
    if not series:
        return []
    n = len(next(iter(series.values())))
    return [sum(s[i] for s in series.values()) for i in range(n)]


def colour(name: str, i: int) -> str:
    return SEVERITY_COLOURS.get(name, PALETTE[i % len(PALETTE)])


def bars(
    series: dict[str, list[int]], width: float, height: float, top: int | None = None
) -> list[tuple[float, float, float, float, str]]:
    """Rectangles (x, y, w, h, colour) of a stacked bar chart with the origin at the top left;
    ``top`` is the value at the top of the plot (default: the highest bar)."""
    if not series:
        return []
    n = len(next(iter(series.values())))
    peak = top or max(totals(series)) or 1
    slot = width / max(n, 1)
    out = []
    for i in range(n):
        y = height
        for k, (name, values) in enumerate(series.items()):
            h = round(values[i] / peak * height, 2)
            if h > 0:
                y = round(y - h, 2)
                out.append((round(i * slot + slot * 0.1, 2), y, round(slot * 0.8, 2), h, colour(name, k)))
    return out


def svg(series: dict[str, list[int]], labels: list[str], width: int = 720, height: int = 200) -> str:
    """A stacked bar chart with axes, ticks, bar totals and a legend, as inline SVG."""
    left, plot_w, plot_h = 40, width - 50, height - 60
    top = ticks(max(totals(series) or [0]))[-1]
    parts = [
        f'<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" '
        f'viewBox="0 0 {width} {height}" role="img" font-family="DejaVu Sans, sans-serif">',
    ]
    for t in ticks(max(totals(series) or [0])):
        y = round(10 + plot_h - t / top * plot_h, 2)
        parts.append(f'<line x1="{left}" y1="{y}" x2="{left + plot_w}" y2="{y}" stroke="#dddddd"/>')
        parts.append(f'<text x="{left - 4}" y="{y + 3}" font-size="10" text-anchor="end">{t}</text>')
    for x, y, w, h, c in bars(series, plot_w, plot_h, top):
        parts.append(f'<rect x="{left + x}" y="{10 + y}" width="{w}" height="{h}" fill="{c}"/>')
    n = len(labels)
    slot = plot_w / max(n, 1)
    for i, total in enumerate(totals(series)):
        if total and n <= 48:
            y = round(10 + plot_h - total / top * plot_h - 2, 2)
            parts.append(
                f'<text x="{round(left + (i + 0.5) * slot, 2)}" y="{y}" font-size="9" text-anchor="middle">{total}</text>'
            )
    parts.append(
        f'<line x1="{left}" y1="{10 + plot_h}" x2="{left + plot_w}" y2="{10 + plot_h}" stroke="#444"/>'
    )
    parts.append(f'<line x1="{left}" y1="10" x2="{left}" y2="{10 + plot_h}" stroke="#444"/>')
    for i, text in x_labels(labels):
        x = round(left + i * slot, 2)
        parts.append(f'<line x1="{x}" y1="{10 + plot_h}" x2="{x}" y2="{14 + plot_h}" stroke="#444"/>')
        parts.append(f'<text x="{x}" y="{24 + plot_h}" font-size="10">{escape(text)}</text>')
    x = left
    for k, name in enumerate(series):
        parts.append(f'<rect x="{x}" y="{height - 16}" width="10" height="10" fill="{colour(name, k)}"/>')
        parts.append(f'<text x="{x + 14}" y="{height - 7}" font-size="10">{escape(name)}</text>')
        x += 14 + 7 * len(name) + 12
    parts.append("</svg>")
    return "".join(parts)
