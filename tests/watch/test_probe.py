"""``donjon watch probe``: random rays to the endpoint's boundary within its budget, as monitor
series."""

from __future__ import annotations

import json
import math
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from donjon.cli.main import main
from donjon.core.events import EventKind, SecurityEvent
from donjon.errors import WatchError
from donjon.monitor.baseline import evaluate
from donjon.monitor.series import build_series
from donjon.watch.pairing import paired
from donjon.watch.ports import Answers
from donjon.watch.probe import TRANSFER_SHARE, probe
from tests.watch.conftest import MODEL, Lab, held_out_rows


def _enrol(lab: Lab, version: int, *extra: str) -> None:
    assert main([
        "watch", "enrol", MODEL, str(version), "--endpoint", lab.endpoint, "--data",
        str(lab.data), "--drop-column", "label", "--private-key", str(lab.key), *extra,
    ]) == 0  # fmt: skip


def _probe_cli(lab: Lab, version: int) -> int:
    return main([
        "--format", "json", "watch", "probe", MODEL, str(version), "--public-key",
        str(lab.public), "--rows", "10", "--budget", "700",
    ])  # fmt: skip


def test_a_probe_measures_robustness_and_a_brittler_next_version_is_a_finding(
    lab: Lab, donjon_home: Path, capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    _enrol(lab, 1, "--boundary", "20")
    capsys.readouterr()
    before = lab.victim.queries
    assert _probe_cli(lab, 1) == 0
    (result,) = json.loads(capsys.readouterr().out)
    assert 0 < result["robustness"] < 10
    assert result["attacked"] >= 9  # a last row the budget would cut short is left out
    assert result["queries"] == lab.victim.queries - before <= 700
    assert 0.0 <= result["success_at_0.1"] <= 1.0
    assert result["robustness_low"] <= result["robustness"] <= result["robustness_high"]
    assert 0.0 <= result["transfer_pgd_at_0.1"] <= 1.0
    assert result["transfer_queries"] == round(TRANSFER_SHARE * 700)  # its share, spent first
    assert "paired_version" not in result  # no version before it
    # version 2 answers as version 1 on the data, which spans 6 of the 8 features (two are
    # sums of others), but amplifies moves off that span 20 times: each row's distance to its
    # boundary can only shrink, as with a model trained without noise augmentation
    promoted = lab.models["promoted"].predict_proba  # type: ignore[attr-defined]
    span = np.linalg.svd(held_out_rows(), full_matrices=False)[2][:6]
    off = np.eye(8) - span.T @ span
    lab.victim.scores = lambda rows: promoted(np.asarray(rows) + 20.0 * np.asarray(rows) @ off)
    (tmp_path / "v2.bin").write_bytes(b"weights of version 2")
    assert main(["models", "push", MODEL, str(tmp_path / "v2.bin")]) == 0
    _enrol(lab, 2, "--boundary", "0")  # the same held-out rows: the probes pair row by row
    capsys.readouterr()
    assert _probe_cli(lab, 2) == 1
    (brittle,) = json.loads(capsys.readouterr().out)
    assert brittle["rows_digest"] == result["rows_digest"]
    assert brittle["paired_version"] == 1
    assert brittle["paired_rows"] >= 8
    assert brittle["paired_ratio"] < 0.7
    assert brittle["paired_p_value"] < 0.01
    assert brittle["less_robust"] is True
    events = [json.loads(line) for line in (donjon_home / "events.jsonl").read_text().splitlines()]
    assert sum(e["action"] == "watch.probe" for e in events) == 2
    assert sum("DJ-WT-003" in json.dumps(e) for e in events) == 1
    assert main(["--format", "json", "watch", "status"]) == 0
    first, second = json.loads(capsys.readouterr().out)
    assert first["probes"][-1]["robustness"] == result["robustness"]
    assert second["probes"][-1]["less_robust"] is True


def _probe(model: str, robustness: float, when: datetime) -> SecurityEvent:
    return SecurityEvent(
        kind=EventKind.ACTIVITY, source="watch", action="watch.probe", message="probe",
        attributes={"model": model, "version": 1, "robustness": robustness}, time=when,
    )  # fmt: skip


def test_a_drop_in_robustness_is_a_monitor_alert_and_a_rise_is_not() -> None:
    start = datetime(2026, 1, 1, tzinfo=UTC)
    values = {
        "brittle-next": [0.30, 0.31, 0.29, 0.30, 0.18],
        "sturdier": [0.30, 0.31, 0.29, 0.30, 0.45],
    }
    events = [
        _probe(model, value, start + timedelta(hours=i))
        for model, series in values.items()
        for i, value in enumerate(series)
    ]
    alerts = evaluate(build_series(events, bucket_seconds=3600))
    assert [(a.metric, a.kind) for a in alerts] == [("robustness:brittle-next", "breach")]


class _Local:
    """A scikit-learn model answering in process (the Model port), queries counted."""

    def __init__(self, model: Any) -> None:
        self.model = model
        self.queries = 0

    def answer(self, rows: np.ndarray) -> Answers:
        rows = np.atleast_2d(rows)
        self.queries += len(rows)
        scores = self.model.predict_proba(rows)
        return Answers(tuple(str(v) for v in scores.argmax(axis=1)), scores)


def test_the_transfer_attack_moves_a_model_its_surrogate_resembles() -> None:
    """A linear victim: the linear surrogate's FGSM/PGD examples transfer; the probe's
    median lies inside its bootstrap interval; the budget holds; the same probe twice is
    the same, row by row (the paired design)."""
    from sklearn.datasets import make_classification
    from sklearn.linear_model import LogisticRegression

    x, y = make_classification(n_samples=400, n_features=8, n_informative=6, random_state=3)
    victim = LogisticRegression(max_iter=500).fit(x[:300], y[:300])
    first, again = (
        probe(_Local(victim), x[300:310], x[310:340], budget=500, transfer_queries=75, seed=1)
        for _ in range(2)
    )
    assert first.queries <= 500
    assert first.transfer is not None
    assert first.transfer.agreement >= 0.8
    assert first.transfer.pgd[0.2] >= 0.3  # a linear model is moved by its surrogate's gradient
    assert first.transfer.pgd[0.2] >= first.transfer.pgd[0.05]
    low, high = first.interval
    assert low <= first.robustness <= high
    assert first.perturbations == again.perturbations
    same = paired(first.perturbations, again.perturbations)
    assert (same["rows"], same["higher"]) == (first.attacked, 0)
    assert math.isnan(same["p_value"])  # no row differs: nothing to test


class _Linear:
    """A binary linear model (the Model port): a row's exact L2 distance to its decision
    boundary is ``|w.x + b| / ||w||``."""

    def __init__(self, weights: np.ndarray, bias: float) -> None:
        self.weights, self.bias = weights, bias
        self.queries = 0

    def answer(self, rows: np.ndarray) -> Answers:
        rows = np.atleast_2d(rows)
        self.queries += len(rows)
        p = 1.0 / (1.0 + np.exp(-(rows @ self.weights + self.bias)))
        return Answers(tuple(str(int(v)) for v in p > 0.5), np.column_stack([1 - p, p]))

    def distance(self, rows: np.ndarray) -> np.ndarray:
        margin = np.abs(rows @ self.weights + self.bias) / np.linalg.norm(self.weights)
        relative: np.ndarray = margin / np.linalg.norm(rows, axis=1)
        return relative


def test_the_probe_tracks_true_robustness_and_tells_a_brittle_version_from_a_robust_one() -> None:
    """The brittle version adds weight along features the data never varies (the way a model
    trained without noise augmentation does): every row's true distance shrinks by sqrt 2,
    while its answers to the data stay the same. Each probe's closest crossing bounds every
    row's true distance from above, its estimates rank the rows as the truth does and are
    near it (the boundary is flat), and the paired test separates the two."""
    from scipy.stats import spearmanr
    from sklearn.datasets import make_classification
    from sklearn.linear_model import LogisticRegression

    x, y = make_classification(n_samples=300, n_features=6, n_informative=5, n_redundant=0,
                               random_state=4)  # fmt: skip
    x = np.hstack([x + 3.0, np.zeros((len(x), 4))])  # four features the data never varies
    fitted = LogisticRegression().fit(x[:200], y[:200])
    weights = fitted.coef_[0]
    unused = np.zeros_like(weights)
    unused[6:] = np.linalg.norm(weights) / 2.0  # as long as the used weights: sqrt 2 nearer
    robust = _Linear(weights, float(fitted.intercept_[0]))
    brittle = _Linear(weights + unused, robust.bias)
    rows = x[200:240]
    results = [probe(model, rows, rows, budget=2000, seed=2) for model in (brittle, robust)]
    for model, result in zip((brittle, robust), results, strict=True):
        truth = model.distance(rows)
        assert result.queries == model.queries <= 2000
        assert result.attacked == len(rows)
        assert all(np.asarray(result.bounds) >= truth * (1 - 1e-6))  # found: upper bounds
        assert spearmanr(result.perturbations, truth).statistic > 0.6
        assert 0.7 < np.median(np.asarray(result.perturbations) / truth) < 1.4
    assert results[0].robustness < results[1].robustness
    pair = paired(results[0].perturbations, results[1].perturbations)
    assert pair["p_value"] < 0.01
    assert pair["ratio"] > 1.2


def test_the_budget_is_enforced_by_the_probe_whatever_it_is() -> None:
    from sklearn.datasets import make_classification
    from sklearn.linear_model import LogisticRegression

    x, y = make_classification(n_samples=200, n_features=5, random_state=1)
    victim = LogisticRegression().fit(x[:100], y[:100])
    for budget in (60, 130, 333):
        model = _Local(victim)
        result = probe(model, x[100:130], x[130:160], budget=budget, seed=0)
        assert result.queries == model.queries <= budget
        assert result.attacked < result.rows  # too few queries for every row: left out
    with pytest.raises(WatchError, match="exceed its budget"):
        probe(_Local(victim), x[100:130], x[130:160], budget=59)
