"""Small inline SVG charts for the report: drawn as text, so a page needs no script and no network to show them.

Each function returns one `<svg>` element; colours come from `SERIES_COLOURS` by series order, and every chart has
a `<title>` per mark so that hovering shows the number.
"""
from __future__ import annotations

import html
import math
from typing import Optional, Sequence

SERIES_COLOURS = ("#1f6fb4", "#e8731a", "#6b6b6b", "#2a9d4a", "#b23a8f")


def colour(index: int) -> str:
    return SERIES_COLOURS[index % len(SERIES_COLOURS)]


def number_text(value: Optional[float], digits: int = 4) -> str:
    """How reports and summaries show a number: "" for none or a non-finite one, a whole number without a
    fraction, else `digits` significant digits."""
    if value is None or (isinstance(value, float) and not math.isfinite(value)):
        return ""
    if isinstance(value, float) and value.is_integer() and abs(value) < 1e12:
        return str(int(value))
    return f"{value:.{digits}g}"


def histogram_overlay(series: Sequence[tuple[str, Sequence[tuple[float, float, float]]]], width: int = 240,
                      height: int = 64) -> str:
    """Histograms of the same feature in several datasets (train, eval, the previous run's train), drawn as step
    lines of density over a common value range, so that datasets of different sizes and bucket edges compare.
    `series`: [(label, [(low, high, count)])]."""
    drawn = [(label, [(lo, hi, n) for lo, hi, n in buckets if math.isfinite(lo) and math.isfinite(hi)])
             for label, buckets in series]
    drawn = [(label, buckets) for label, buckets in drawn if buckets and sum(n for _, _, n in buckets) > 0]
    if not drawn:
        return ""
    low = min(lo for _, buckets in drawn for lo, _, _ in buckets)
    high = max(hi for _, buckets in drawn for _, hi, _ in buckets)
    span = (high - low) or 1.0
    densities = []
    for label, buckets in drawn:
        total = sum(n for _, _, n in buckets)
        densities.append((label, [(lo, hi, n / total / max(hi - lo, span / 1000)) for lo, hi, n in buckets]))
    peak = max(d for _, buckets in densities for _, _, d in buckets) or 1.0

    def x(value: float) -> float:
        return 2 + (value - low) / span * (width - 4)

    def y(value: float) -> float:
        return height - 12 - value / peak * (height - 16)

    marks = []
    for index, (label, buckets) in enumerate(densities):
        points = [f"{x(buckets[0][0]):.1f},{y(0):.1f}"]
        for lo, hi, d in buckets:
            points += [f"{x(lo):.1f},{y(d):.1f}", f"{x(hi):.1f},{y(d):.1f}"]
        points.append(f"{x(buckets[-1][1]):.1f},{y(0):.1f}")
        dash = ' stroke-dasharray="3,2"' if index >= 2 else ""
        marks.append(f'<polyline fill="none" stroke="{colour(index)}" stroke-width="1.5"{dash} '
                     f'points="{" ".join(points)}"><title>{html.escape(label)}</title></polyline>')
    axis = (f'<line x1="2" y1="{height - 12}" x2="{width - 2}" y2="{height - 12}" stroke="#999"/>'
            f'<text x="2" y="{height - 1}" font-size="9">{number_text(low)}</text>'
            f'<text x="{width - 2}" y="{height - 1}" font-size="9" text-anchor="end">{number_text(high)}</text>')
    return (f'<svg class="chart" width="{width}" height="{height}" viewBox="0 0 {width} {height}" '
            f'role="img">{axis}{"".join(marks)}</svg>')


def grouped_bars(rows: Sequence[tuple[str, Sequence[Optional[float]]]], labels: Sequence[str], width: int = 240,
                 bar: int = 6, unit: str = "", scale_max: Optional[float] = None) -> str:
    """Horizontal bars: one group per row (a category value, a slice), one bar per series in `labels`.
    `rows`: [(row label, [value per series or None])]. Values are drawn from 0 to `scale_max` (default: the
    largest value)."""
    values = [v for _, vs in rows for v in vs if v is not None and math.isfinite(v)]
    if not rows or not values:
        return ""
    top = scale_max or max(values) or 1.0
    label_width, gap = 90, 4
    group = bar * len(labels) + gap
    height = group * len(rows) + 2
    marks = []
    for r, (name, vs) in enumerate(rows):
        y0 = 1 + r * group
        short = name if len(name) <= 16 else name[:15] + "…"
        marks.append(f'<text x="{label_width - 4}" y="{y0 + bar * len(labels) / 2 + 3:.1f}" font-size="9" '
                     f'text-anchor="end">{html.escape(short)}<title>{html.escape(name)}</title></text>')
        for s, value in enumerate(vs):
            if value is None or not math.isfinite(value):
                continue
            length = max(0.0, value) / top * (width - label_width - 2)
            marks.append(f'<rect x="{label_width}" y="{y0 + s * bar}" width="{length:.1f}" height="{bar - 1}" '
                         f'fill="{colour(s)}"><title>{html.escape(labels[s])}: {number_text(value)}{unit}</title>'
                         f'</rect>')
    return (f'<svg class="chart" width="{width}" height="{height}" viewBox="0 0 {width} {height}" '
            f'role="img">{"".join(marks)}</svg>')


def line_chart(points: Sequence[tuple[str, Optional[float]]], width: int = 320, height: int = 90) -> str:
    """A metric over runs: `points` [(run label, value or None)] in run order."""
    known = [(i, v) for i, (_, v) in enumerate(points) if v is not None and math.isfinite(v)]
    if not known:
        return ""
    low, high = min(v for _, v in known), max(v for _, v in known)
    span = (high - low) or abs(high) or 1.0
    left = 48  # room for the value labels
    step = (width - left - 6) / max(len(points) - 1, 1)

    def xy(i: int, v: float) -> tuple[float, float]:
        return left + i * step, height - 14 - (v - low) / span * (height - 24)

    path = " ".join(f"{x:.1f},{y:.1f}" for x, y in (xy(i, v) for i, v in known))
    dots = "".join(f'<circle cx="{xy(i, v)[0]:.1f}" cy="{xy(i, v)[1]:.1f}" r="2.5" fill="{colour(0)}">'
                   f'<title>{html.escape(points[i][0])}: {number_text(v)}</title></circle>' for i, v in known)
    axis = (f'<text x="{left - 4}" y="{height - 12}" font-size="9" text-anchor="end">{number_text(low)}</text>'
            f'<text x="{left - 4}" y="12" font-size="9" text-anchor="end">{number_text(high)}</text>'
            f'<line x1="{left - 1}" y1="{height - 14}" x2="{width - 4}" y2="{height - 14}" stroke="#999"/>')
    return (f'<svg class="chart" width="{width}" height="{height}" viewBox="0 0 {width} {height}" role="img">'
            f'{axis}<polyline fill="none" stroke="{colour(0)}" stroke-width="1.5" points="{path}"/>{dots}</svg>')


def calibration_chart(points: Sequence[tuple[float, float, float]], size: int = 200) -> str:
    """Mean label against mean prediction per bucket, over the diagonal a calibrated model follows: `points`
    [(mean prediction, mean label, examples)]."""
    if not points:
        return ""
    pad = 24

    def xy(prediction: float, label: float) -> tuple[float, float]:
        return pad + prediction * (size - pad - 4), size - pad - label * (size - pad - 4)

    top = max(n for _, _, n in points) or 1.0
    dots = "".join(
        f'<circle cx="{xy(p, y)[0]:.1f}" cy="{xy(p, y)[1]:.1f}" r="{2 + 4 * math.sqrt(n / top):.1f}" '
        f'fill="{colour(0)}" fill-opacity="0.7"><title>predicted {number_text(p)}, observed {number_text(y)}, '
        f'{number_text(n)} examples</title></circle>' for p, y, n in points)
    (x0, y0), (x1, y1) = xy(0, 0), xy(1, 1)
    axes = (f'<line x1="{x0}" y1="{y0}" x2="{x1:.1f}" y2="{y1:.1f}" stroke="#999" stroke-dasharray="3,2"/>'
            f'<line x1="{x0}" y1="{y0}" x2="{x1:.1f}" y2="{y0}" stroke="#999"/>'
            f'<line x1="{x0}" y1="{y0}" x2="{x0}" y2="{y1:.1f}" stroke="#999"/>'
            f'<text x="{(x0 + x1) / 2:.0f}" y="{size - 4}" font-size="9" text-anchor="middle">mean prediction</text>'
            f'<text x="9" y="{(y0 + y1) / 2:.0f}" font-size="9" text-anchor="middle" '
            f'transform="rotate(-90 9 {(y0 + y1) / 2:.0f})">mean label</text>')
    return (f'<svg class="chart" width="{size}" height="{size}" viewBox="0 0 {size} {size}" role="img">'
            f'{axes}{dots}</svg>')


def legend(labels: Sequence[str]) -> str:
    return "".join(f'<span class="key"><i style="background:{colour(i)}"></i>{html.escape(label)}</span>'
                   for i, label in enumerate(labels))
