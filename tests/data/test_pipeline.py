"""One command's real output is the next one's input: ``data filter`` then ``data check``."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from donjon.cli.main import main
from tests.data.conftest import badnets

FAST = ["--detector", "trigger_search", "--detector", "near_duplicates"]


def test_filter_output_feeds_check_without_bookkeeping_columns(
    tmp_path: Path,
    donjon_home: Path,
    digits: tuple[np.ndarray, np.ndarray],
    capsys: pytest.CaptureFixture[str],
) -> None:
    X, y = digits
    poisoned, labels, rows = badnets(X, y, 25)
    frame = pd.DataFrame(poisoned, columns=[f"p{i}" for i in range(64)])
    frame["label"] = labels
    frame["source"] = ["scraper" if i % 10 == 9 else "vendor" for i in range(len(y))]
    frame.to_csv(tmp_path / "train.csv", index=False)
    (tmp_path / "sources.toml").write_text('[sources]\ntrusted = ["vendor"]\n')
    argv = ["data", "filter", str(tmp_path / "train.csv"), "--policy",
            str(tmp_path / "sources.toml"), "--source-column", "source",
            "-o", str(tmp_path / "split")]  # fmt: skip
    assert main(argv) in (0, 1)
    admitted = tmp_path / "split" / "admitted.csv"
    assert "_donjon_row" in pd.read_csv(admitted).columns  # filter's own bookkeeping
    capsys.readouterr()
    argv = ["--format", "json", "data", "check", str(admitted), "--label-column", "label",
            "--exclude", "source", *FAST]  # fmt: skip
    assert main(argv) == 1
    report = json.loads(capsys.readouterr().out)
    assert "_donjon_row" in report["dropped_columns"]
    assert any("bookkeeping" in note for note in report["notes"])
    triggers = report["detectors"]["trigger_search"]["summary"]["triggers"]
    assert len(triggers) == 1
    assert triggers[0]["target"] == "0"
    kept = pd.read_csv(admitted)["_donjon_row"].to_numpy()
    expected = set(np.flatnonzero(np.isin(kept, rows)).tolist())
    assert {r["row"] for r in report["flagged"]} == expected


def test_check_warns_on_an_id_like_column(
    tmp_path: Path, digits: tuple[np.ndarray, np.ndarray], capsys: pytest.CaptureFixture[str]
) -> None:
    X, y = digits
    frame = pd.DataFrame(X[:200], columns=[f"p{i}" for i in range(64)])
    frame.insert(0, "record_no", np.arange(1000, 1200))
    frame["digit"] = y[:200]
    frame.to_csv(tmp_path / "d.csv", index=False)
    argv = ["data", "check", str(tmp_path / "d.csv"), "--label-column", "digit", "--detector",
            "near_duplicates"]  # fmt: skip
    assert main(argv) in (0, 1)
    captured = capsys.readouterr()
    assert "'record_no' looks like an id" in captured.out
    assert "--exclude record_no" in captured.out
    assert main([*argv, "--exclude", "record_no"]) in (0, 1)
    assert "looks like an id" not in capsys.readouterr().out
