"""Charts as inline SVG, drawn on the server: no chart library in the browser, no CDN, and a
page that reads the same with scripts off. Two shapes cover the dashboard: stacked columns
over time and horizontal bars. Labels are escaped (a department may be called anything).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from html import escape
from typing import Protocol

from markupsafe import Markup


class Named(Protocol):
    name: str


PALETTE = {"allow": "#2f855a", "deny": "#c53030", "needs_approval": "#d69e2e", "mask": "#6b46c1"}
DEFAULT_COLORS = ["#2b6cb0", "#2f855a", "#d69e2e", "#c53030", "#6b46c1", "#718096"]


def color_of(name: str, i: int) -> str:
    return PALETTE.get(name, DEFAULT_COLORS[i % len(DEFAULT_COLORS)])


def columns(
    labels: Sequence[str], series: Mapping[str, Sequence[float]], *, title: str, width: int = 560, height: int = 180
) -> Markup:
    """Stacked columns, one per label (a time bucket), one colour per series, with a legend."""
    top, bottom, left = 22, 28, 36
    plot_h, plot_w = height - top - bottom, width - left - 8
    totals = [sum(values[i] for values in series.values()) for i in range(len(labels))]
    peak = max(totals, default=0) or 1
    step = plot_w / max(len(labels), 1)
    parts = [
        f'<text x="{left}" y="14" class="chart-title">{escape(title)}</text>',
        f'<text x="{left - 4}" y="{top + 8}" text-anchor="end" class="tick">{_num(peak)}</text>',
        f'<line x1="{left}" y1="{top + plot_h}" x2="{width - 8}" y2="{top + plot_h}" class="axis"/>',
    ]
    for i, label in enumerate(labels):
        y: float = top + plot_h
        for j, (name, values) in enumerate(series.items()):
            h = values[i] / peak * plot_h
            if h > 0:
                y -= h
                tip = f"{escape(label)} · {escape(name)}: {_num(values[i])}"
                parts.append(
                    f'<rect x="{left + i * step + 1:.1f}" y="{y:.1f}" width="{max(step - 2, 1):.1f}" height="{h:.1f}" '
                    f'fill="{color_of(name, j)}"><title>{tip}</title></rect>'
                )
        if i % max(len(labels) // 6, 1) == 0:
            parts.append(f'<text x="{left + i * step:.1f}" y="{height - 10}" class="tick">{escape(label)}</text>')
    legend = "".join(f'<tspan fill="{color_of(name, j)}">■</tspan> {escape(name)}  ' for j, name in enumerate(series))
    parts.append(f'<text x="{width - 8}" y="14" text-anchor="end" class="legend">{legend}</text>')
    return _svg(width, height, title, parts)


def bars(items: Sequence[tuple[str, float]], *, title: str, unit: str = "", width: int = 360) -> Markup:
    """Horizontal bars, largest first as given, each with its value."""
    row, top, left = 18, 22, 120
    height = top + row * max(len(items), 1) + 6
    peak = max((v for _, v in items), default=0) or 1
    parts = [f'<text x="0" y="14" class="chart-title">{escape(title)}</text>']
    if not items:
        parts.append(f'<text x="0" y="{top + 12}" class="tick">nothing in this window</text>')
    for i, (label, value) in enumerate(items):
        y = top + i * row
        w = value / peak * (width - left - 70)
        parts.append(f'<text x="{left - 6}" y="{y + 12}" text-anchor="end" class="tick">{escape(label[:18])}</text>')
        parts.append(f'<rect x="{left}" y="{y + 2}" width="{w:.1f}" height="{row - 5}" fill="#2b6cb0"/>')
        parts.append(f'<text x="{left + w + 4:.1f}" y="{y + 12}" class="tick">{_num(value)}{escape(unit)}</text>')
    return _svg(width, height, title, parts)


def pairs(items: Sequence[Named], value: str) -> list[tuple[str, float]]:
    """``(name, item.<value>)`` for each item: what :func:`bars` draws."""
    return [(item.name, float(getattr(item, value))) for item in items]


def _svg(width: int, height: int, title: str, parts: list[str]) -> Markup:
    body = "".join(parts)
    return Markup(
        f'<svg class="chart" role="img" aria-label="{escape(title)}" viewBox="0 0 {width} {height}" '
        f'width="{width}" height="{height}" xmlns="http://www.w3.org/2000/svg">{body}</svg>'
    )


def _num(value: float) -> str:
    if value >= 1000:
        return f"{value:,.0f}"
    return f"{value:.4g}" if value != int(value) else str(int(value))
