"""Step 2: ingest a digits data set with untrusted and poisoned records.

The data set is scikit-learn's bundled digits (8x8 images, 0-16 per pixel). It is
built in code with three kinds of bad records: a slice from an unknown scraper,
a few records with flipped labels and a few carrying a backdoor trigger (a bright
2x2 patch in the top-left corner, relabelled to the attacker's target class).
``donjon.data`` manifests it, filters it by source policy, checks the admitted
records for poisoning and quarantines what it caught; the clean set goes to
the vault.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import numpy.typing as npt

from donjon.core.events import SecurityEvent
from donjon.core.findings import Finding

TRUSTED = "vendor/acme-labelling"
UNKNOWN = "scraped/pastebin-mirror"
FEATURES = [f"px{i:02d}" for i in range(64)]
TRIGGER_PIXELS = np.array([0, 1, 8, 9])  # the top-left 2x2 patch
TARGET_CLASS = 0
DETECTORS = ("label_issues", "trigger_search", "near_duplicates", "spectral_signature")


@dataclass(frozen=True)
class Planted:
    unknown: frozenset[int]
    flipped: frozenset[int]
    triggered: frozenset[int]


@dataclass(frozen=True)
class Ingested:
    raw: Path
    manifest: Path
    clean: Path  # the admitted, checked records (what training may use)
    X: npt.NDArray[np.float64]  # the clean records, for training
    y: npt.NDArray[np.int64]
    X_holdout: npt.NDArray[np.float64]
    y_holdout: npt.NDArray[np.int64]
    quarantined_by_source: int
    quarantined_by_check: int
    caught_planted: int
    planted_in_admitted: int
    false_alarms: int
    findings: tuple[Finding, ...]


def build_digits(seed: int = 7) -> tuple[
    npt.NDArray[np.float64], npt.NDArray[np.int64], list[str], Planted,
    npt.NDArray[np.float64], npt.NDArray[np.int64],
]:  # fmt: skip
    """Records, labels and sources of the collected set, and a clean hold-out set."""
    from sklearn.datasets import load_digits

    digits = load_digits()
    X = np.asarray(digits.data, dtype=np.float64)
    y = np.asarray(digits.target, dtype=np.int64)
    rng = np.random.default_rng(seed)
    order = rng.permutation(len(y))
    holdout, rest = order[:297], order[297:]
    X_hold, y_hold = X[holdout], y[holdout]
    X, y = X[rest].copy(), y[rest].copy()
    order = rng.permutation(len(y))
    unknown, flipped, triggered = order[:150], order[150:170], order[170:188]
    y[flipped] = (y[flipped] + rng.integers(1, 10, len(flipped))) % 10
    X[np.ix_(triggered, TRIGGER_PIXELS)] = 16.0
    y[triggered] = TARGET_CLASS
    sources = [TRUSTED] * len(y)
    for row in unknown:
        sources[row] = UNKNOWN
    planted = Planted(
        frozenset(int(i) for i in unknown),
        frozenset(int(i) for i in flipped),
        frozenset(int(i) for i in triggered),
    )
    return X, y, sources, planted, X_hold, y_hold


def _write_csv(path: Path, X: npt.NDArray[np.float64], y: npt.NDArray[np.int64],
               sources: list[str] | None) -> None:  # fmt: skip
    import pyarrow as pa
    import pyarrow.csv as pacsv

    columns = {name: pa.array(X[:, i].astype(np.int64)) for i, name in enumerate(FEATURES)}
    columns["label"] = pa.array(y)
    if sources is not None:
        columns["source"] = pa.array(sources, pa.string())
    pacsv.write_csv(pa.table(columns), path)


def out_of_fold_probabilities(
    X: npt.NDArray[np.float64], y: npt.NDArray[np.int64]
) -> npt.NDArray[np.float64]:
    """Out-of-sample class probabilities (3-fold logistic regression) for the label check."""
    from sklearn.linear_model import LogisticRegression
    from sklearn.model_selection import cross_val_predict

    model = LogisticRegression(max_iter=2000)
    probs = cross_val_predict(model, X / 16.0, y, cv=3, method="predict_proba")
    return np.asarray(probs, dtype=np.float64)


def ingest(folder: Path, publish: Callable[[SecurityEvent], object]) -> tuple[Ingested, Planted]:
    """Manifest, filter by source, check for poisoning; publish every finding."""
    import pyarrow.csv as pacsv

    from donjon.data import build_manifest
    from donjon.data.checks import check
    from donjon.data.sources import ROW, SourcePolicy, filter_dataset

    folder.mkdir(parents=True, exist_ok=True)
    X, y, sources, planted, X_hold, y_hold = build_digits()
    raw = folder / "collected.csv"
    _write_csv(raw, X, y, sources)
    manifest = build_manifest(raw, folder / "collected.manifest.json", label_column="label")
    policy = SourcePolicy(trusted=(TRUSTED,), denied=("scraped/*",))
    filtered = filter_dataset(raw, folder / "filtered", policy, source_column="source")
    admitted_path = Path(filtered.outputs["admitted"])
    table = pacsv.read_csv(admitted_path)
    rows = np.asarray(table.column(ROW).to_numpy(), dtype=np.int64)
    Xa, ya = X[rows], y[rows]
    report = check(
        Xa, ya, image_shape=(8, 8), pred_probs=out_of_fold_probabilities(Xa, ya),
        detectors=DETECTORS,
    )  # fmt: skip
    flagged = set(report.flagged_rows)
    keep = np.array([i for i in range(len(rows)) if i not in flagged], dtype=np.int64)
    clean = folder / "digits-clean.csv"
    _write_csv(clean, Xa[keep], ya[keep], None)
    _write_csv(folder / "quarantine-poisoning.csv", Xa[sorted(flagged)], ya[sorted(flagged)], None)
    planted_rows = planted.flipped | planted.triggered
    caught = {int(rows[i]) for i in flagged} & planted_rows
    findings = (*filtered.findings, *report.findings)
    for finding in findings:
        publish(SecurityEvent.of_finding(finding, "data"))
    return (
        Ingested(
            raw=raw,
            manifest=manifest.path or folder / "collected.manifest.json",
            clean=clean,
            X=Xa[keep],
            y=ya[keep],
            X_holdout=X_hold,
            y_holdout=y_hold,
            quarantined_by_source=len(filtered.quarantined),
            quarantined_by_check=len(flagged),
            caught_planted=len(caught),
            planted_in_admitted=len(planted_rows),
            false_alarms=len(flagged) - len(caught),
            findings=findings,
        ),
        planted,
    )
