"""``donjon watch probe``: HopSkipJump against the endpoint within its budget, as monitor series."""

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
from donjon.monitor.baseline import evaluate
from donjon.monitor.series import build_series
from donjon.watch.ports import Answers
from donjon.watch.probe import TRANSFER_SHARE, paired, probe
from tests.watch.conftest import MODEL, Lab


def test_a_probe_measures_robustness_within_its_query_budget(
    lab: Lab, donjon_home: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main([
        "watch", "enrol", MODEL, "1", "--endpoint", lab.endpoint, "--data", str(lab.data),
        "--drop-column", "label", "--private-key", str(lab.key),
    ]) == 0  # fmt: skip
    capsys.readouterr()
    before = lab.victim.queries
    assert main([
        "--format", "json", "watch", "probe", "--public-key", str(lab.public),
        "--rows", "3", "--budget", "400",
    ]) == 0  # fmt: skip
    (result,) = json.loads(capsys.readouterr().out)
    assert 0 < result["robustness"] < 10
    assert result["attacked"] >= 1
    assert result["queries"] == lab.victim.queries - before <= 400
    assert 0.0 <= result["success_at_0.1"] <= 1.0
    assert result["robustness_low"] <= result["robustness"] <= result["robustness_high"]
    assert 0.0 <= result["transfer_pgd_at_0.1"] <= 1.0
    assert result["transfer_queries"] == round(TRANSFER_SHARE * 400)  # its share, spent first
    probes = [
        json.loads(line)
        for line in (donjon_home / "events.jsonl").read_text().splitlines()
        if '"watch.probe"' in line
    ]
    assert len(probes) == 1
    assert main(["--format", "json", "watch", "status"]) == 0
    (status,) = json.loads(capsys.readouterr().out)
    assert status["probes"][-1]["robustness"] == result["robustness"]


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
    """A linear victim: the linear surrogate's FGSM/PGD examples transfer; HopSkipJump's
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
    same = paired(first, again)
    assert (same["rows"], same["higher"]) == (first.attacked, 0)
    assert math.isnan(same["p_value"])  # no row differs: nothing to test
