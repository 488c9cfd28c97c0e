"""``check``: run the detectors on one data set version and combine their evidence.

Detectors come in two kinds. *Primary* detectors (label issues, trigger patterns,
near-duplicates) carry enough evidence on their own: a record they flag is flagged. The
*corroborating* ones (spectral signatures, activation clustering, outliers) test
statistics that natural data can also produce (sub-styles of a class, rare but genuine
records): a record is flagged on their word only when two of them agree, otherwise it is
listed as a suspect. A record's score combines its detectors' scores as a noisy-or,
``1 - prod(1 - s_i)``.

With a Dask ``distributed`` client (or scheduler address) each detector runs as one task
on the cluster.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from donjon.core.artifacts import ArtifactRef
from donjon.core.findings import Finding, Location, Subject
from donjon.core.severity import Severity
from donjon.data import rules
from donjon.data.dataset import Loaded, from_arrays, from_frame, from_path
from donjon.data.detectors.base import DetectorResult, LabelledData, RecordFlag
from donjon.data.detectors.clusters import detect_activation_clusters, detect_spectral
from donjon.data.detectors.labels import detect_label_issues
from donjon.data.detectors.neighbours import detect_near_duplicates, detect_outliers
from donjon.data.detectors.shift import ShiftResult, detect_shift
from donjon.data.detectors.triggers import detect_triggers
from donjon.errors import DataError, InputError

Detector = Callable[[LabelledData], DetectorResult]
DETECTORS: dict[str, Detector] = {
    "label_issues": detect_label_issues,
    "trigger_search": detect_triggers,
    "near_duplicates": detect_near_duplicates,
    "spectral_signature": detect_spectral,
    "activation_clustering": detect_activation_clusters,
    "outliers": detect_outliers,
}
PRIMARY = frozenset({"label_issues", "trigger_search", "near_duplicates"})
MAX_FINDING_ROWS = 1000
MIN_RECORDS = 10


@dataclass(frozen=True)
class RecordVerdict:
    row: int
    flagged: bool
    score: float
    detectors: tuple[str, ...]
    reasons: tuple[str, ...]
    label: str | None = None

    def to_dict(self) -> dict[str, Any]:
        return {
            "row": self.row,
            "flagged": self.flagged,
            "score": round(self.score, 4),
            "label": self.label,
            "detectors": list(self.detectors),
            "reasons": list(self.reasons),
        }


@dataclass(frozen=True)
class CheckReport:
    source: str
    records: int
    classes: tuple[str, ...]
    results: tuple[DetectorResult, ...]
    verdicts: tuple[RecordVerdict, ...]  # every record any detector named
    shift: ShiftResult | None = None
    findings: tuple[Finding, ...] = ()
    dropped_columns: tuple[str, ...] = ()
    notes: tuple[str, ...] = field(default_factory=tuple)

    @property
    def flagged(self) -> tuple[RecordVerdict, ...]:
        return tuple(v for v in self.verdicts if v.flagged)

    @property
    def flagged_rows(self) -> list[int]:
        return [v.row for v in self.verdicts if v.flagged]

    def risk(self) -> dict[str, Any]:
        flagged = self.flagged
        per_detector = Counter(d for v in flagged for d in v.detectors)
        triggers: list[Any] = next(
            (r.summary.get("triggers", []) for r in self.results if r.detector == "trigger_search"),
            [],
        )
        rate = len(flagged) / self.records if self.records else 0.0
        if triggers or rate >= 0.01:
            level = "high"
        elif flagged or (
            self.shift is not None and (self.shift.features or self.shift.class_shift)
        ):
            level = "medium"
        elif self.verdicts:
            level = "low"
        else:
            level = "none"
        return {
            "level": level,
            "records": self.records,
            "flagged": len(flagged),
            "flagged_rate": round(rate, 5),
            "suspects": len(self.verdicts) - len(flagged),
            "by_detector": dict(per_detector.most_common()),
            "backdoor_triggers": len(triggers),
            "mean_score_flagged": round(float(np.mean([v.score for v in flagged])), 4)
            if flagged
            else 0.0,
        }

    def to_dict(self) -> dict[str, Any]:
        return {
            "source": self.source,
            "records": self.records,
            "classes": list(self.classes),
            "risk": self.risk(),
            "detectors": {
                r.detector: {
                    "rule": r.rule.id,
                    "flagged": len(r.flags),
                    "summary": r.summary,
                    "error": r.error,
                }
                for r in self.results
            },
            "flagged": [v.to_dict() for v in self.flagged],
            "suspects": [v.to_dict() for v in self.verdicts if not v.flagged],
            "shift": None
            if self.shift is None
            else {
                "features_tested": self.shift.tested,
                "shifted_features": list(self.shift.features),
                "class_balance": self.shift.class_balance,
            },
            "findings": [
                {
                    "rule": f.rule.id,
                    "severity": f.level.label,
                    "message": f.message,
                    "atlas": list(f.rule.atlas),
                    "owasp": list(f.rule.owasp),
                    "fingerprint": f.fingerprint,
                }
                for f in self.findings
            ],
            "dropped_columns": list(self.dropped_columns),
            "notes": list(self.notes),
        }


def combine(results: Sequence[DetectorResult], data: LabelledData) -> tuple[RecordVerdict, ...]:
    by_row: dict[int, list[RecordFlag]] = {}
    for result in results:
        for flag in result.flags:
            by_row.setdefault(flag.row, []).append(flag)
    verdicts = []
    for row in sorted(by_row):
        flags = by_row[row]
        names = tuple(dict.fromkeys(f.detector for f in flags))
        primary = any(n in PRIMARY for n in names)
        corroborating = sum(1 for n in names if n not in PRIMARY)
        score = 1.0 - float(np.prod([1.0 - min(max(f.score, 0.0), 1.0) for f in flags]))
        label = None if data.y is None else data.label_name(int(data.y[row]))
        verdicts.append(
            RecordVerdict(
                row,
                primary or corroborating >= 2,
                score,
                names,
                tuple(f.reason for f in flags),
                label,
            )
        )
    return tuple(verdicts)


def _findings(
    source: str, results: Sequence[DetectorResult], verdicts: Sequence[RecordVerdict]
) -> list[Finding]:
    subject = Subject(artifact=ArtifactRef(source, kind="dataset"))
    flagged = {v.row for v in verdicts if v.flagged}
    findings = []
    for result in results:
        if not result.flags:
            continue
        rows = sorted({f.row for f in result.flags})
        confirmed = [r for r in rows if r in flagged]
        severity = result.rule.severity if confirmed else Severity.LOW
        findings.append(
            Finding(
                result.rule,
                subject,
                f"{result.detector}: {len(rows)} record(s) ({len(confirmed)} flagged) in {source}",
                Location(record=f"rows:{len(rows)}"),
                severity=severity,
                evidence={
                    "detector": result.detector,
                    "rows": rows[:MAX_FINDING_ROWS],
                    "summary": result.summary,
                },
            )
        )
    return findings


def _shift_findings(source: str, shift: ShiftResult) -> list[Finding]:
    subject = Subject(artifact=ArtifactRef(source, kind="dataset"))
    out = []
    if shift.features:
        names = ", ".join(f["feature"] for f in shift.features[:5])
        out.append(
            Finding(
                rules.FEATURE_SHIFT,
                subject,
                f"{len(shift.features)} of {shift.tested} feature(s) shifted from the baseline "
                f"({names})",
                evidence={"features": list(shift.features[:50])},
            )
        )
    if shift.class_shift:
        out.append(
            Finding(
                rules.CLASS_BALANCE_SHIFT,
                subject,
                f"class balance changed from the baseline (chi-square p="
                f"{shift.class_balance['p']:.2g})",
                evidence=shift.class_balance,
            )
        )
    return out


def load(
    data: Any,
    y: Any | None = None,
    *,
    label_column: str | None = None,
    exclude: tuple[str, ...] = (),
    image_shape: tuple[int, ...] | None = None,
    pred_probs: Any | None = None,
) -> Loaded:
    """Arrays (``data`` = X, with ``y``), a pandas DataFrame, or a path."""
    import pandas as pd

    if isinstance(data, str | Path):
        return from_path(
            Path(data),
            label_column,
            exclude=exclude,
            image_shape=image_shape,
            pred_probs=pred_probs,
        )
    if isinstance(data, pd.DataFrame):
        return from_frame(
            data, label_column, exclude=exclude, image_shape=image_shape, pred_probs=pred_probs
        )
    return from_arrays(data, y, image_shape=image_shape, pred_probs=pred_probs)


def _run(
    detectors: Sequence[str],
    data: LabelledData,
    dask: Any | None,
    progress: Callable[[int], None] | None,
) -> list[DetectorResult]:
    unknown = [d for d in detectors if d not in DETECTORS]
    if unknown:
        raise InputError(f"unknown detector(s) {unknown}; choose from {sorted(DETECTORS)}")
    if dask is None:
        results = []
        for name in detectors:
            results.append(DETECTORS[name](data))
            if progress:
                progress(1)
        return results
    return _run_on_dask(detectors, data, dask, progress)


def _run_on_dask(
    detectors: Sequence[str],
    data: LabelledData,
    dask: Any,
    progress: Callable[[int], None] | None,
) -> list[DetectorResult]:
    try:
        from distributed import Client, as_completed
    except ImportError as e:  # pragma: no cover - depends on the install
        raise DataError("--dask-scheduler needs the 'dask' extra (pip install donjon[dask])") from e
    owned = isinstance(dask, str)
    try:
        if owned:
            _refuse_closed_port(dask)
        client = Client(dask, timeout="10s") if owned else dask  # type: ignore[no-untyped-call]
    except (OSError, TimeoutError) as e:
        raise DataError(f"cannot reach the Dask scheduler {dask}: {e}") from e
    try:
        shared = client.scatter(data, broadcast=True)
        futures = {
            client.submit(DETECTORS[name], shared, key=f"donjon-{name}-{id(data)}"): name
            for name in detectors
        }
        done: dict[str, DetectorResult] = {}
        for future in as_completed(futures):  # type: ignore[no-untyped-call]
            done[futures[future]] = future.result()
            if progress:
                progress(1)
        return [done[name] for name in detectors]
    finally:
        if owned:
            client.close()


def _refuse_closed_port(address: str) -> None:
    """Fail at once on a TCP scheduler address nothing listens on (connection refused),
    rather than after the client's 10 s of retries; other schemes are left to Dask."""
    import socket
    from urllib.parse import urlsplit

    if "://" in address and not address.startswith("tcp://"):
        return
    parts = urlsplit(address if "://" in address else f"tcp://{address}")
    if parts.hostname is None or parts.port is None:
        return
    with socket.create_connection((parts.hostname, parts.port), timeout=2):
        pass


def check(
    data: Any,
    y: Any | None = None,
    *,
    label_column: str | None = None,
    exclude: tuple[str, ...] = (),
    baseline: Any | None = None,
    baseline_y: Any | None = None,
    image_shape: tuple[int, ...] | None = None,
    pred_probs: Any | None = None,
    detectors: Sequence[str] | None = None,
    dask: Any | None = None,
    progress: Callable[[int], None] | None = None,
) -> CheckReport:
    """Check a data set version for poisoning; optionally compare it with a baseline version.

    ``data``: X (with ``y``), a DataFrame or a path (CSV, Parquet, ``.npz``). ``dask``: a
    ``distributed.Client`` or a scheduler address to run the detectors on.
    """
    loaded = load(
        data,
        y,
        label_column=label_column,
        exclude=exclude,
        image_shape=image_shape,
        pred_probs=pred_probs,
    )
    labelled = loaded.data
    if labelled.n < MIN_RECORDS:
        raise DataError(
            f"{loaded.source} has {labelled.n} record(s): a poisoning check compares records "
            f"with each other and needs at least {MIN_RECORDS}"
        )
    names = list(detectors or DETECTORS)
    notes = list(loaded.notes)
    if labelled.y is None:
        names = [n for n in names if n in {"near_duplicates", "outliers"}]
        notes.append("no labels: only the duplicate and outlier detectors ran")
    results = _run(names, labelled, dask, progress)
    verdicts = combine(results, labelled)
    findings = _findings(loaded.source, results, verdicts)
    shift = None
    if baseline is not None:
        base = load(baseline, baseline_y, label_column=label_column, exclude=exclude).data
        if base.X.shape[1] != labelled.X.shape[1]:
            notes.append("baseline has other features: only class balance compared")
        shift = detect_shift(
            base.X,
            labelled.X,
            labelled.feature_names,
            [base.label_name(int(v)) for v in base.y] if base.y is not None else None,
            [labelled.label_name(int(v)) for v in labelled.y] if labelled.y is not None else None,
        )
        findings += _shift_findings(loaded.source, shift)
    notes += [f"{r.detector}: {r.error}" for r in results if r.error]
    return CheckReport(
        loaded.source,
        labelled.n,
        labelled.classes,
        tuple(results),
        verdicts,
        shift,
        tuple(findings),
        loaded.dropped_columns,
        tuple(notes),
    )
