"""``donjon data check`` end to end: reports, exit codes, events, and a Dask cluster."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from distributed import Client, LocalCluster

from donjon.cli.main import main
from donjon.data.checks import check
from donjon.soc import read_events
from tests.data.conftest import badnets

FAST = ["--detector", "trigger_search", "--detector", "near_duplicates"]


def test_check_npz_json_report_lists_each_flagged_record(
    tmp_path: Path,
    donjon_home: Path,
    digits: tuple[np.ndarray, np.ndarray],
    capsys: pytest.CaptureFixture[str],
) -> None:
    X, y = digits
    poisoned, labels, rows = badnets(X, y, 25)
    np.savez(tmp_path / "d.npz", X=poisoned.reshape(-1, 8, 8), y=labels)
    code = main(["--format", "json", "data", "check", str(tmp_path / "d.npz"), *FAST])
    assert code == 1
    report = json.loads(capsys.readouterr().out)
    flagged = {r["row"]: r for r in report["flagged"]}
    assert set(flagged) == set(rows.tolist())
    first = flagged[int(rows[0])]
    assert first["detectors"] == ["trigger_search"]
    assert 0.5 < first["score"] <= 1.0
    assert "patch" in first["reasons"][0]
    assert report["risk"]["level"] == "high"
    finding = next(f for f in report["findings"] if f["rule"] == "DJ-DAT-004")
    assert {"AML.T0020", "AML.T0043.004", "AML.T0018.000"} <= set(finding["atlas"])
    assert {"ML02", "ML10"} <= set(finding["owasp"])
    events = [e for e in read_events(donjon_home / "events.jsonl") if e.finding]
    assert "DJ-DAT-004" in {e.finding.rule.id for e in events if e.finding}


def test_check_csv_clean_exits_0_and_writes_html(
    tmp_path: Path, digits: tuple[np.ndarray, np.ndarray], capsys: pytest.CaptureFixture[str]
) -> None:
    X, y = digits
    frame = pd.DataFrame(X, columns=[f"p{i}" for i in range(64)])
    frame["digit"] = y
    frame["uid"] = [f"id-{i}" for i in range(len(y))]
    frame.to_csv(tmp_path / "d.csv", index=False)
    out = tmp_path / "report.html"
    argv = ["data", "check", str(tmp_path / "d.csv"), "--label-column", "digit",
            "--report", "html", "--out", str(out), "--image-shape", "8x8", *FAST]  # fmt: skip
    assert main(argv) == 0
    page = out.read_text()
    assert page.startswith("<!doctype html>")
    assert "Data check" in page
    assert main(argv) == 2  # never overwrites a report
    assert "already exists" in capsys.readouterr().err


def test_check_text_report_and_bad_input(
    tmp_path: Path, digits: tuple[np.ndarray, np.ndarray], capsys: pytest.CaptureFixture[str]
) -> None:
    X, y = digits
    poisoned, labels, _ = badnets(X, y, 25)
    np.savez(tmp_path / "d.npz", X=poisoned, y=labels)
    assert main(["data", "check", str(tmp_path / "d.npz"), *FAST]) == 1
    out = capsys.readouterr().out
    assert "backdoor trigger: 2x2 patch at (6, 6) -> '0'" in out
    argv = ["data", "check", str(tmp_path / "d.npz"), "--detector", "nope"]
    assert main(argv) == 2
    assert "unknown detector" in capsys.readouterr().err
    (tmp_path / "bad.csv").write_text("a,b\n1,2\n")
    assert main(["data", "check", str(tmp_path / "bad.csv"), "--label-column", "zz"]) == 2
    assert main(["data", "check", str(tmp_path / "d.npz"), "--image-shape", "8by8"]) == 2


def test_checks_run_on_a_dask_cluster(
    tmp_path: Path, digits: tuple[np.ndarray, np.ndarray], capsys: pytest.CaptureFixture[str]
) -> None:
    X, y = digits
    poisoned, labels, rows = badnets(X, y, 25)
    np.savez(tmp_path / "d.npz", X=poisoned, y=labels)
    local = check(poisoned, labels, detectors=["trigger_search", "near_duplicates"])
    with (
        LocalCluster(
            n_workers=1, threads_per_worker=2, processes=False, dashboard_address=None
        ) as cluster,
        Client(cluster) as client,
    ):
        remote = check(
            poisoned, labels, detectors=["trigger_search", "near_duplicates"], dask=client
        )
        assert remote.flagged_rows == local.flagged_rows == sorted(rows.tolist())
        argv = ["--format", "json", "data", "check", str(tmp_path / "d.npz"),
                "--dask-scheduler", cluster.scheduler_address, *FAST]  # fmt: skip
        assert main(argv) == 1
    report = json.loads(capsys.readouterr().out)
    assert {r["row"] for r in report["flagged"]} == set(rows.tolist())


def test_unreachable_dask_scheduler_is_a_clear_error(
    tmp_path: Path, digits: tuple[np.ndarray, np.ndarray], capsys: pytest.CaptureFixture[str]
) -> None:
    X, y = digits
    np.savez(tmp_path / "d.npz", X=X, y=y)
    argv = ["data", "check", str(tmp_path / "d.npz"), "--dask-scheduler",
            "tcp://127.0.0.1:9", *FAST]  # fmt: skip
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert "Dask scheduler" in err
    assert "refused" in err  # said at once, not after the client's 10 s of retries
