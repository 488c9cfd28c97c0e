"""``donjon watch probe``: HopSkipJump against the endpoint within its budget, as monitor series."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from donjon.cli.main import main
from donjon.core.events import EventKind, SecurityEvent
from donjon.monitor.baseline import evaluate
from donjon.monitor.series import build_series
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
