"""The posture report's watch section: robustness and drift of deployed models over time.

Read from the recorded events alone (the SOC layer does not import the watch):
``watch.probe`` events give each model's robustness (median perturbation, its
bootstrap interval, the transfer attack's success), ``watch.drift`` events its
input and class drift scores, ``watch.check`` events and DJ-WT findings its
fingerprint checks. Each model gets two inline SVG line charts (no script):
robustness with its 95 % interval as a band, and the drift score with the alert
threshold drawn.
"""

from __future__ import annotations

import html
import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from donjon.core.events import SecurityEvent

DRIFT_THRESHOLD = 5.0  # -log10(1e-5): the monitor's default drift rule
CHECK_RULES = {"DJ-WT-001": "differs", "DJ-WT-002": "failed"}


@dataclass
class ModelTrend:
    """One model's watch history, oldest first."""

    robustness: list[tuple[datetime, float, float | None, float | None]] = field(
        default_factory=list
    )  # time, median, CI low, CI high
    transfer: list[tuple[datetime, float]] = field(default_factory=list)  # PGD success at 0.1
    drift: list[tuple[datetime, float]] = field(default_factory=list)
    class_drift: list[tuple[datetime, float]] = field(default_factory=list)
    checks: list[tuple[datetime, str]] = field(default_factory=list)  # same, differs, failed


def watch_trends(events: Iterable[SecurityEvent]) -> dict[str, ModelTrend]:
    trends: dict[str, ModelTrend] = {}
    for e in events:
        attrs = e.attributes
        model = attrs.get("model")
        if e.finding is not None and e.finding.rule.id in CHECK_RULES:
            model = str(e.finding.subject.model or "").split("@", 1)[0]
        if not isinstance(model, str) or not model:
            continue
        if e.finding is not None and e.finding.rule.id in CHECK_RULES:
            trends.setdefault(model, ModelTrend()).checks.append(
                (e.time, CHECK_RULES[e.finding.rule.id])
            )
        elif e.action == "watch.check":
            trends.setdefault(model, ModelTrend()).checks.append((e.time, "same"))
        elif e.action == "watch.probe" and _number(attrs.get("robustness")) is not None:
            trend = trends.setdefault(model, ModelTrend())
            trend.robustness.append(
                (
                    e.time,
                    float(attrs["robustness"]),
                    _number(attrs.get("robustness_low")),
                    _number(attrs.get("robustness_high")),
                )
            )
            transfer = _number(attrs.get("transfer_pgd_at_0.1"))
            if transfer is not None:
                trend.transfer.append((e.time, transfer))
        elif e.action == "watch.drift":
            trend = trends.setdefault(model, ModelTrend())
            for key, into in (("drift_score", trend.drift), ("class_score", trend.class_drift)):
                value = _number(attrs.get(key))
                if value is not None:
                    into.append((e.time, value))
    for trend in trends.values():
        for series in (trend.robustness, trend.transfer, trend.drift, trend.class_drift):
            series.sort(key=lambda point: point[0])
        trend.checks.sort()
    return trends


def _number(value: Any) -> float | None:
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    return float(value) if math.isfinite(value) else None


def svg_lines(
    lines: Sequence[tuple[str, str, Sequence[tuple[datetime, float]]]],
    label: str,
    *,
    band: Sequence[tuple[datetime, float, float]] = (),
    threshold: float | None = None,
    width: int = 640,
    height: int = 160,
) -> str:
    """Line charts over time as inline SVG: ``lines`` of (name, colour, points), an optional
    shaded ``band`` (time, low, high) and a dashed ``threshold``."""
    points = [p for _, _, series in lines for p in series]
    if not points:
        return f'<p class="none">{html.escape(label)}: none</p>'
    times = [t for t, _ in points] + [t for t, _, _ in band]
    values = [v for _, v in points] + [v for _, lo, hi in band for v in (lo, hi)]
    if threshold is not None:
        values.append(threshold)
    t0, t1 = min(times), max(times)
    low, high = min(0.0, min(values)), max(values) * 1.1 or 1.0
    pad = 30
    span = (t1 - t0).total_seconds() or 1.0

    def x(t: datetime) -> float:
        return pad + (width - 2 * pad) * (t - t0).total_seconds() / span

    def y(v: float) -> float:
        return height - pad - (height - 2 * pad) * (v - low) / (high - low)

    shapes = []
    if band:
        outline = [(x(t), y(hi)) for t, _, hi in band] + [(x(t), y(lo)) for t, lo, _ in band[::-1]]
        shapes.append(
            '<polygon fill="#9bc" fill-opacity="0.4" points="'
            + " ".join(f"{a:.1f},{b:.1f}" for a, b in outline)
            + '"><title>95 % interval</title></polygon>'
        )
    if threshold is not None:
        shapes.append(
            f'<line x1="{pad}" x2="{width - pad}" y1="{y(threshold):.1f}" '
            f'y2="{y(threshold):.1f}" stroke="#b00" stroke-dasharray="4 3">'
            f"<title>alert threshold {threshold:g}</title></line>"
        )
    for name, colour, series in lines:
        if not series:
            continue
        path = " ".join(f"{x(t):.1f},{y(v):.1f}" for t, v in series)
        shapes.append(
            f'<polyline fill="none" stroke="{colour}" stroke-width="2" points="{path}">'
            f"<title>{html.escape(name)}</title></polyline>"
        )
        shapes += [
            f'<circle cx="{x(t):.1f}" cy="{y(v):.1f}" r="2.5" fill="{colour}">'
            f"<title>{html.escape(name)} {t:%Y-%m-%d %H:%M}: {v:.3g}</title></circle>"
            for t, v in series
        ]
    axis = (
        f'<text x="2" y="{y(high / 1.1) + 4:.1f}" font-size="10">{high / 1.1:.3g}</text>'
        f'<text x="2" y="{y(low) + 4:.1f}" font-size="10">{low:.3g}</text>'
    )
    legend = "".join(
        f'<text x="{pad + 220 * i}" y="12" font-size="11" fill="{colour}">'
        f"&#9644; {html.escape(name)}</text>"
        for i, (name, colour, series) in enumerate(lines)
        if series
    )
    caption = f"{html.escape(label)}, {t0:%Y-%m-%d %H:%M} to {t1:%Y-%m-%d %H:%M} UTC"
    return (
        f'<figure><svg xmlns="http://www.w3.org/2000/svg" role="img" width="{width}" '
        f'height="{height}" viewBox="0 0 {width} {height}" aria-label="{caption}">'
        f"{axis}{legend}{''.join(shapes)}</svg><figcaption>{caption}</figcaption></figure>"
    )


def watch_section(trends: dict[str, ModelTrend]) -> list[str]:
    """The HTML of the section (heading, one figure pair and a line per model)."""
    parts = ['<h2 id="watch">Deployed models: robustness and drift</h2>']
    if not trends:
        return [*parts, '<p id="watch-none" class="none">none</p>']
    for model, t in sorted(trends.items()):
        name = html.escape(model)
        last = t.checks[-1] if t.checks else None
        checks = (
            f"last fingerprint check {last[0]:%Y-%m-%d %H:%M} UTC: "
            f'<span class="{"ok" if last[1] == "same" else "bad"}">{last[1]}</span>'
            f" ({sum(c == 'same' for _, c in t.checks)} of {len(t.checks)} checks passed)"
            if last
            else "no fingerprint check recorded"
        )
        parts.append(f'<h3 id="watch-{name}">{name}</h3><p>{checks}</p>')
        parts.append(
            svg_lines(
                [
                    (
                        "median perturbation (relative L2)",
                        "#036",
                        [(ti, v) for ti, v, _, _ in t.robustness],
                    ),
                    ("transfer success at 0.1 (PGD)", "#a60", t.transfer),
                ],
                f"{model}: robustness per probe (band: 95 % interval of the median)",
                band=[
                    (ti, lo, hi)
                    for ti, _, lo, hi in t.robustness
                    if lo is not None and hi is not None
                ],
            )
        )
        parts.append(
            svg_lines(
                [("input drift", "#036", t.drift), ("class drift", "#a60", t.class_drift)],
                f"{model}: drift score per bucket (-log10 p; dashed: the alert threshold)",
                threshold=DRIFT_THRESHOLD if t.drift or t.class_drift else None,
            )
        )
    return parts
