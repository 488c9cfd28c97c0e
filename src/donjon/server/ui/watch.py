"""The Gateway page's watch section: fingerprint checks, robustness and drift over time.

``donjon watch`` records everything as ledger events (source ``watch``):
``watch.enrol`` when a version's fingerprint is taken, ``watch.check`` for a
check that found the same model, a DJ-WT-001 finding for one that did not and a
DJ-WT-002 finding for one that could not run; ``watch.probe`` with the measured
robustness (median perturbation and its interval) and ``watch.drift`` per
traffic bucket with the input and class-share PSI. The fingerprints themselves
are ``fingerprint`` attachments of the model versions. This module reads those
and draws the trends as SVG polylines (no script, no inline style).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from donjon.registry import Attachment, AttachmentKind, Kind, Registry
from donjon.server.ui.events import Entry

WIDTH, HEIGHT, PAD = 560.0, 150.0, 6.0
MAX_POINTS = 200  # per series: the newest
CHANGED, FAILED = "DJ-WT-001", "DJ-WT-002"


@dataclass
class Watched:
    """One watched model version and what its checks found, newest first."""

    ref: str
    endpoint: str = ""
    enrolled: datetime | None = None
    fingerprints: int = 0
    checks: list[dict[str, Any]] = field(default_factory=list)

    @property
    def last(self) -> dict[str, Any] | None:
        return self.checks[0] if self.checks else None


@dataclass(frozen=True)
class Chart:
    """Series of (time, value) drawn in a fixed viewBox."""

    label: str
    lines: list[tuple[str, str, float]]  # (series name, SVG points, last value)
    low: float
    high: float
    start: datetime | None
    end: datetime | None


def chart(label: str, series: Mapping[str, list[tuple[datetime, float]]]) -> Chart | None:
    kept = {k: sorted(v)[-MAX_POINTS:] for k, v in series.items() if v}
    if not kept:
        return None
    times = [t for v in kept.values() for t, _ in v]
    values = [x for v in kept.values() for _, x in v]
    start, end = min(times), max(times)
    low, high = min(0.0, min(values)), max(values)
    span = (end - start).total_seconds() or 1.0
    scale = (high - low) or 1.0
    lines = []
    for name, points in sorted(kept.items()):
        xy = " ".join(
            f"{PAD + (WIDTH - 2 * PAD) * (t - start).total_seconds() / span:.1f},"
            f"{HEIGHT - PAD - (HEIGHT - 2 * PAD) * (x - low) / scale:.1f}"
            for t, x in points
        )
        lines.append((name, xy, points[-1][1]))
    return Chart(label, lines, low, high, start, end)


def _number(value: Any) -> float | None:
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    return float(value)


def watch_view(
    entries: Iterable[Entry], fingerprints: Mapping[str, list[Attachment]]
) -> dict[str, Any]:
    """The watch section of the Gateway page; ``present`` False when there is no watch data."""
    watched: dict[str, Watched] = {}
    robustness: dict[str, list[tuple[datetime, float]]] = {}
    drift: dict[str, list[tuple[datetime, float]]] = {}
    for entry in entries:  # newest first
        if entry.source != "watch":
            continue
        attrs = entry.attributes
        model = str(attrs.get("model") or entry.model.split("@")[0])
        ref = f"{model}@{attrs['version']}" if "version" in attrs else entry.model or model
        if entry.action == "watch.enrol":
            item = watched.setdefault(ref, Watched(ref))
            item.enrolled = item.enrolled or entry.time
            item.endpoint = item.endpoint or str(attrs.get("endpoint", ""))
        elif entry.action == "watch.check" or entry.rule in (CHANGED, FAILED):
            item = watched.setdefault(ref, Watched(ref))
            status = {CHANGED: "differs", FAILED: "could not run"}.get(entry.rule, "same")
            item.checks.append(
                {"time": entry.time, "status": status, "message": entry.message, "seq": entry.seq}
            )
        elif entry.action == "watch.probe":
            value = _number(attrs.get("robustness"))
            if value is not None:
                robustness.setdefault(ref, []).append((entry.time, value))
        elif entry.action == "watch.drift":
            for key, name in (("psi", "input"), ("class_psi", "classes")):
                value = _number(attrs.get(key))
                if value is not None:
                    drift.setdefault(f"{model} {name}", []).append((entry.time, value))
    for ref, found in fingerprints.items():
        watched.setdefault(ref, Watched(ref)).fingerprints = len(found)
        if found and not watched[ref].endpoint:
            watched[ref].endpoint = str(found[-1].summary.get("endpoint", ""))
    return {
        "present": bool(watched or robustness or drift),
        "watched": sorted(watched.values(), key=lambda w: w.ref),
        "robustness": chart("Robustness: median perturbation a probe needed", robustness),
        "drift": chart("Drift: PSI of the inputs and class shares per traffic bucket", drift),
    }


def fingerprint_attachments(registry: Registry) -> dict[str, list[Attachment]]:
    """The fingerprint attachments of every model version, by ``name@number`` (one query)."""
    store: Any = registry.store
    if not hasattr(store, "kind_attachments"):
        return {}
    found: dict[str, list[Attachment]] = {}
    for (name, number), rows in store.kind_attachments(Kind.MODEL.value).items():
        kept = [a for a in map(Attachment.from_row, rows) if a.kind is AttachmentKind.FINGERPRINT]
        if kept:
            found[f"{name}@{number}"] = kept
    return found
