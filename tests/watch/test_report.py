"""The watch in ``donjon report`` (SVG plots over time) and in ``donjon watch status``."""

from __future__ import annotations

import json
import re
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from donjon.cli.main import main
from donjon.core.bus import EventBus
from donjon.core.events import SecurityEvent
from donjon.soc.jsonl import JsonLinesSink
from donjon.watch.findings import activity, failed_finding, finding_event

START = datetime(2026, 3, 1, tzinfo=UTC)


def _at(event: SecurityEvent, hours: float) -> SecurityEvent:
    from dataclasses import replace

    return replace(event, time=START + timedelta(hours=hours))


def _history() -> list[SecurityEvent]:
    events = []
    for day, (median, low, high) in enumerate([(0.31, 0.25, 0.36), (0.30, 0.24, 0.35),
                                               (0.17, 0.12, 0.21)]):  # fmt: skip
        probe = activity(
            "probe", "probe", model="fraud-clf", version=day + 1, robustness=median,
            robustness_low=low, robustness_high=high, **{"transfer_pgd_at_0.1": 0.1 * day},
        )  # fmt: skip
        events.append(_at(probe, 24 * day))
    for bucket in range(30):
        score = 9.5 if bucket >= 28 else 0.3 + 0.01 * bucket
        drift = activity(
            "drift", "drift", model="fraud-clf", drift_score=score, p_value=10**-score,
            drift_feature=3, psi=0.01, class_score=0.2, rows=200,
        )  # fmt: skip
        events.append(_at(drift, 48 + bucket / 60))
    events.append(_at(activity("check", "same", model="fraud-clf", version=3), 49))
    failed = failed_finding("fraud-clf", 3, "http://127.0.0.1:9/predict", "did not answer")
    events.append(_at(finding_event(failed), 50))
    return events


def _write(path: Path) -> None:
    sink = JsonLinesSink(path)
    try:
        EventBus([sink]).publish_all(_history())
    finally:
        sink.close()


def test_the_report_draws_robustness_and_drift_over_time(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    events = tmp_path / "events.jsonl"
    _write(events)
    out = tmp_path / "report.html"
    main(["--format", "json", "report", "--file", str(events), "--output", str(out)])
    capsys.readouterr()
    page = out.read_text()
    section = page[page.index('<h2 id="watch">') :]
    assert '<h3 id="watch-fraud-clf">fraud-clf</h3>' in section
    assert 'class="bad">failed</span> (1 of 2 checks passed)' in section
    figures = re.findall(r"<figure><svg.*?</figure>", section, flags=re.S)
    assert len(figures) == 2
    robustness, drift = figures
    # three probes: a line through three points, the CI as a band, the transfer as a line
    (points,) = re.findall(r'<polyline[^>]*stroke="#036"[^>]*points="([^"]+)"', robustness)
    ys = [float(p.split(",")[1]) for p in points.split()]
    assert len(ys) == 3
    assert ys[2] > ys[1]  # the drop of the third version is drawn lower (SVG y grows down)
    assert "<polygon" in robustness
    assert "95 % interval" in robustness
    assert "median perturbation (relative L2) 2026-03-03 00:00: 0.17" in robustness
    # thirty drift buckets and the alert threshold
    assert len(re.findall(r'<circle[^>]*fill="#036"', drift)) == 30
    assert "alert threshold 5" in drift


def test_an_empty_history_says_none(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    events = tmp_path / "events.jsonl"
    events.write_text("")
    out = tmp_path / "report.html"
    main(["report", "--file", str(events), "--output", str(out)])
    assert '<p id="watch-none" class="none">none</p>' in out.read_text()


def test_status_shows_the_robustness_trend_and_the_last_drift(
    donjon_home: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("COLUMNS", "300")
    from donjon.storage.sql import open_database, sqlite_url
    from donjon.storage.watchlist import SqlWatchRows
    from donjon.watch.watchlist import Watched, WatchList

    donjon_home.mkdir(parents=True)
    _write(donjon_home / "events.jsonl")
    database = open_database(sqlite_url(donjon_home / "donjon.db"))
    watchlist = WatchList(SqlWatchRows(database))
    watchlist.enrolled(Watched("fraud-clf", 3, "http://127.0.0.1:9/predict", "sha256:ab", 200,
                               START.isoformat()))  # fmt: skip
    for robustness in (0.31, 0.30, 0.17):
        probe = {"status": "done", "robustness": robustness, "robustness_low": robustness - 0.05,
                 "robustness_high": robustness + 0.04, "transfer_pgd_at_0.1": 0.25,
                 "time": START.isoformat()}  # fmt: skip
        watchlist.checked("fraud-clf@3", probe, "probes")
    database.dispose()
    assert main(["--format", "json", "watch", "status"]) == 0
    (status,) = json.loads(capsys.readouterr().out)
    assert status["drift"]["drift_score"] == 9.5
    assert [p["robustness"] for p in status["probes"]] == [0.31, 0.30, 0.17]
    assert main(["watch", "status"]) == 0
    text = capsys.readouterr().out
    assert "0.31 -> 0.3 -> 0.17 [0.12, 0.21]" in " ".join(text.split())
    assert "ALERT p = 3.2e-10 (feature 3)" in " ".join(text.split())
