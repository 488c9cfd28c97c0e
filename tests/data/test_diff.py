"""Diffs between versions, and tamper findings when data no longer matches its manifest."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from donjon.cli.main import main
from donjon.data import build_manifest, diff, load_manifest, verify_manifest
from donjon.soc import read_events


def frame(n: int = 200, seed: int = 0) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    df = pd.DataFrame(rng.normal(size=(n, 3)), columns=["a", "b", "c"])
    df["id"] = np.arange(n)
    df["label"] = rng.integers(0, 3, n)
    return df


def test_diff_without_ids_reports_added_removed_and_relabelled(tmp_path: Path) -> None:
    old = frame()
    new = old.copy()
    new.loc[[3, 4, 5], "label"] = 9
    new = new.drop(index=[10, 11])
    new.loc[500] = [1.0, 2.0, 3.0, 500, 1]
    old.drop(columns="id").to_csv(tmp_path / "old.csv", index=False)
    new.drop(columns="id").to_csv(tmp_path / "new.csv", index=False)
    report = diff(tmp_path / "old.csv", tmp_path / "new.csv", label_column="label")
    r = report.records
    assert sorted(p[0] for p in r.relabelled) == [3, 4, 5]
    assert all(p[3] == "9" for p in r.relabelled)
    assert sorted(r.removed) == [10, 11]
    assert r.added == (len(new) - 1,)
    assert r.unchanged == 200 - 5
    assert report.class_counts_new["9"] == 3
    assert [f.rule.id for f in report.findings] == ["DJ-DAT-011"]


def test_diff_with_ids_reports_changed_records_and_schema(tmp_path: Path) -> None:
    old = frame()
    new = old.copy()
    new.loc[7, "a"] = 100.0
    new["extra"] = 1
    old.to_parquet(tmp_path / "old.parquet")
    new.to_parquet(tmp_path / "new.parquet")
    report = diff(
        tmp_path / "old.parquet", tmp_path / "new.parquet", label_column="label", id_column="id"
    )
    assert report.schema_added == ("extra",)
    assert report.records.keyed_by == "id"
    assert len(report.records.changed) == 200  # every row gained a column
    assert {f.rule.id for f in report.findings} == {"DJ-DAT-010"}


def test_tampered_data_behind_a_manifest_is_a_finding(tmp_path: Path) -> None:
    df = frame()
    df.to_csv(tmp_path / "d.csv", index=False)
    build_manifest(tmp_path / "d.csv", tmp_path / "v1.json", label_column="label", id_column="id")
    manifest = load_manifest(tmp_path / "v1.json")
    assert verify_manifest(manifest) == ()
    df.loc[42, "label"] = (df.loc[42, "label"] + 1) % 3
    df.to_csv(tmp_path / "d.csv", index=False)
    (finding,) = verify_manifest(manifest)
    assert finding.rule.id == "DJ-DAT-001"
    assert finding.evidence["relabelled_rows"] == [[42, 42]]


def test_cli_manifest_verify_and_diff(
    tmp_path: Path, donjon_home: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    df = frame()
    df.to_csv(tmp_path / "d.csv", index=False)
    assert main(["data", "manifest", str(tmp_path / "d.csv"), "--label-column", "label"]) == 0
    manifest = tmp_path / "d.csv.manifest.json"
    assert manifest.is_file()
    assert main(["data", "verify", str(manifest)]) == 0
    capsys.readouterr()
    df.loc[1, "label"] = (df.loc[1, "label"] + 1) % 3
    df.to_csv(tmp_path / "d.csv", index=False)
    assert main(["data", "verify", str(manifest)]) == 1
    assert "TAMPERED" in capsys.readouterr().out
    df.to_csv(tmp_path / "new.csv", index=False)
    code = main(
        [
            "--format",
            "json",
            "data",
            "diff",
            str(manifest),
            str(tmp_path / "new.csv"),
            "--label-column",
            "label",
        ]
    )
    assert code == 1  # the tamper finding is high
    report = json.loads(capsys.readouterr().out)
    assert report["relabelled"] == 1
    assert {f["rule"] for f in report["findings"]} == {"DJ-DAT-001", "DJ-DAT-011"}
    events = list(read_events(donjon_home / "events.jsonl"))
    assert "DJ-DAT-001" in {e.finding.rule.id for e in events if e.finding}


def test_cli_bad_input_exits_2(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["data", "manifest", str(tmp_path / "missing.csv")]) == 2
    assert "does not exist" in capsys.readouterr().err
    (tmp_path / "x.txt").write_text("hello")
    assert main(["data", "manifest", str(tmp_path / "x.txt")]) == 2
