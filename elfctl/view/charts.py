"""A small inline SVG line chart (the run page's loss curve): no plotting library, nothing fetched. Series differ
by dash pattern as well as colour, so they stay apart in greyscale."""

from __future__ import annotations

import math
from typing import Sequence

from elfctl.view.document import esc

# Okabe-Ito colours (colour-blind safe), each with its own dash pattern
STYLES = (("#0072B2", ""), ("#D55E00", "6 3"), ("#009E73", "2 3"), ("#CC79A7", "8 3 2 3"), ("#000000", "1 2"))


def nice_ticks(lo: float, hi: float, n: int = 5) -> list[float]:
    """About ``n`` round tick values covering [lo, hi] (steps of 1, 2 or 5 times a power of ten)."""
    if not (math.isfinite(lo) and math.isfinite(hi)):
        return []
    if hi <= lo:
        return [lo]
    raw = (hi - lo) / max(n - 1, 1)
    mag = 10 ** math.floor(math.log10(raw))
    step = next(m * mag for m in (1, 2, 5, 10) if m * mag >= raw)
    first = math.ceil(lo / step - 1e-9) * step
    out, k = [], 0
    while first + k * step <= hi + 1e-9 * step:
        out.append(round(first + k * step, 12))
        k += 1
    return out


def _label(v: float) -> str:
    return f"{v:g}" if abs(v) < 1e5 else f"{v:.3g}"


def line_chart(series: dict[str, Sequence[tuple[float, float]]], *, xlabel: str, ylabel: str, width: int = 640,
               height: int = 280) -> str:
    """An SVG of one line per series (points (x, y); non-finite y skipped)."""
    pts = {k: [(float(x), float(y)) for x, y in v if math.isfinite(float(y))] for k, v in series.items()}
    pts = {k: v for k, v in pts.items() if v}
    if not pts:
        return '<p class="note">nothing to plot</p>'
    xs = [x for v in pts.values() for x, _ in v]
    ys = [y for v in pts.values() for _, y in v]
    x0, x1, y0, y1 = min(xs), max(xs), min(ys), max(ys)
    if x1 == x0:
        x1 = x0 + 1
    if y1 == y0:
        y0, y1 = y0 - 0.5, y1 + 0.5
    left, right, top, bottom = 58, 14, 12, 40
    pw, ph = width - left - right, height - top - bottom

    def sx(x):
        return left + (x - x0) / (x1 - x0) * pw

    def sy(y):
        return top + (1 - (y - y0) / (y1 - y0)) * ph

    parts = [f'<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" viewBox="0 0 {width} '
             f'{height}" role="img" aria-label="{esc(ylabel)} against {esc(xlabel)}" style="max-width:100%;'
             f'font:12px system-ui,sans-serif;background:#fff">',
             f'<rect x="{left}" y="{top}" width="{pw}" height="{ph}" fill="none" stroke="#bbb"/>']
    for t in nice_ticks(y0, y1):
        y = sy(t)
        parts.append(f'<line x1="{left}" x2="{left + pw}" y1="{y:.1f}" y2="{y:.1f}" stroke="#eee"/>'
                     f'<text x="{left - 6}" y="{y + 4:.1f}" text-anchor="end" fill="#555">{_label(t)}</text>')
    for t in nice_ticks(x0, x1):
        x = sx(t)
        parts.append(f'<line x1="{x:.1f}" x2="{x:.1f}" y1="{top + ph}" y2="{top + ph + 4}" stroke="#999"/>'
                     f'<text x="{x:.1f}" y="{top + ph + 17}" text-anchor="middle" fill="#555">{_label(t)}</text>')
    parts.append(f'<text x="{left + pw / 2:.1f}" y="{height - 4}" text-anchor="middle" fill="#333">'
                 f'{esc(xlabel)}</text><text x="12" y="{top + ph / 2:.1f}" text-anchor="middle" fill="#333" '
                 f'transform="rotate(-90 12 {top + ph / 2:.1f})">{esc(ylabel)}</text>')
    for i, (name, v) in enumerate(pts.items()):
        color, dash = STYLES[i % len(STYLES)]
        stroke = f'stroke="{color}" stroke-width="2"' + (f' stroke-dasharray="{dash}"' if dash else "")
        line = " ".join(f"{sx(x):.1f},{sy(y):.1f}" for x, y in v)
        parts.append(f'<polyline fill="none" {stroke} points="{line}"/>')
        if len(pts) > 1:
            ly = top + 14 + 16 * i
            parts.append(f'<line x1="{left + pw - 110}" x2="{left + pw - 84}" y1="{ly - 4}" y2="{ly - 4}" {stroke}/>'
                         f'<text x="{left + pw - 78}" y="{ly}" fill="#333">{esc(name)}</text>')
    parts.append("</svg>")
    return "".join(parts)
