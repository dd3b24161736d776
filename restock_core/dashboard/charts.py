"""Small inline SVG bar charts (no JavaScript, no CDN), with a <title> per bar for hover and
an accessible name; the page shows the same figures as a table."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import date
from html import escape

WIDTH, HEIGHT, PAD = 600, 160, 24


def bars(points: Sequence[tuple[date, int]], label: str) -> str:
    top = max((n for _, n in points), default=0)
    scale = (HEIGHT - PAD * 2) / top if top else 0.0
    step = (WIDTH - PAD * 2) / max(len(points), 1)
    parts = [
        f'<svg class="chart" viewBox="0 0 {WIDTH} {HEIGHT}" role="img" aria-label="{escape(label)}, '
        f'{len(points)} days, highest {top}" xmlns="http://www.w3.org/2000/svg">',
        f'<line x1="{PAD}" y1="{HEIGHT - PAD}" x2="{WIDTH - PAD}" y2="{HEIGHT - PAD}" class="axis"/>',
        f'<text x="{PAD}" y="{PAD - 8}" class="label">{top}</text>',
    ]
    for i, (day, n) in enumerate(points):
        h = n * scale
        x = PAD + i * step + step * 0.1
        y = HEIGHT - PAD - h
        parts.append(
            f'<rect x="{x:.1f}" y="{y:.1f}" width="{step * 0.8:.1f}" height="{h:.1f}" class="bar">'
            f"<title>{day.isoformat()}: {n}</title></rect>"
        )
    if points:
        parts.append(
            f'<text x="{PAD}" y="{HEIGHT - 6}" class="label">{points[0][0].isoformat()}</text>'
        )
        parts.append(
            f'<text x="{WIDTH - PAD}" y="{HEIGHT - 6}" class="label" text-anchor="end">'
            f"{points[-1][0].isoformat()}</text>"
        )
    parts.append("</svg>")
    return "".join(parts)
