"""Trend charts as geometry: one computation, drawn as SVG (HTML) or with PDF primitives.

Stacked bars per bucket, one colour per series; coordinates are rounded so the output is
byte-stable.
"""

from __future__ import annotations

from html import escape

PALETTE = ("#b2182b", "#ef8a62", "#fddbc7", "#67a9cf", "#2166ac", "#999999", "#1b7837", "#762a83")
SEVERITY_COLOURS = {
    "critical": "#b2182b",
    "high": "#ef8a62",
    "medium": "#f4c542",
    "low": "#67a9cf",
    "info": "#999999",
}


def colour(name: str, i: int) -> str:
    return SEVERITY_COLOURS.get(name, PALETTE[i % len(PALETTE)])


def bars(
    series: dict[str, list[int]], width: float, height: float
) -> list[tuple[float, float, float, float, str]]:
    """Rectangles (x, y, w, h, colour) of a stacked bar chart with the origin at the top left."""
    if not series:
        return []
    n = len(next(iter(series.values())))
    totals = [sum(s[i] for s in series.values()) for i in range(n)]
    peak = max(totals) or 1
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


def svg(series: dict[str, list[int]], labels: list[str], width: int = 640, height: int = 160) -> str:
    """A stacked bar chart with a legend and first/last bucket labels, as inline SVG."""
    plot_h = height - 40
    parts = [
        f'<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" '
        f'viewBox="0 0 {width} {height}" role="img">',
        f'<rect x="0" y="0" width="{width}" height="{plot_h}" fill="#f7f7f7"/>',
    ]
    for x, y, w, h, c in bars(series, width, plot_h):
        parts.append(f'<rect x="{x}" y="{y}" width="{w}" height="{h}" fill="{c}"/>')
    if labels:
        parts.append(f'<text x="0" y="{plot_h + 14}" font-size="10">{escape(labels[0])}</text>')
        parts.append(
            f'<text x="{width}" y="{plot_h + 14}" font-size="10" text-anchor="end">{escape(labels[-1])}</text>'
        )
    x = 0
    for k, name in enumerate(series):
        parts.append(f'<rect x="{x}" y="{plot_h + 22}" width="10" height="10" fill="{colour(name, k)}"/>')
        parts.append(f'<text x="{x + 14}" y="{plot_h + 31}" font-size="10">{escape(name)}</text>')
        x += 14 + 7 * len(name) + 12
    parts.append("</svg>")
    return "".join(parts)
