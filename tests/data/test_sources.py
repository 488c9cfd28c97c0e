"""Provenance filtering: trusted sources admitted, the rest quarantined with reasons."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow.parquet as pq
import pytest

from donjon.cli.main import main
from donjon.data.sources import SourcePolicy, filter_dataset
from donjon.data.tabular import read_npz
from donjon.errors import InputError

POLICY = """
[sources]
trusted = ["vendor-a", "team/*"]
denied = ["team/intern-*"]
"""


def frame() -> pd.DataFrame:
    return pd.DataFrame(
        {
            "x": [0.1, 0.2, 0.3, 0.4, 0.5, 0.6],
            "label": [0, 1, 0, 1, 0, 1],
            "source": ["vendor-a", "team/bob", "scraper", None, "team/intern-3", "vendor-a"],
        }
    )


def test_policy_judges_trusted_denied_and_unknown(tmp_path: Path) -> None:
    (tmp_path / "p.toml").write_text(POLICY)
    policy = SourcePolicy.load(tmp_path / "p.toml")
    assert policy.judge("vendor-a") is None
    assert policy.judge("team/alice") is None
    assert "denied" in (policy.judge("team/intern-1") or "")
    assert "not trusted" in (policy.judge("elsewhere") or "")
    assert policy.judge(None) == "no source recorded"
    (tmp_path / "bad.toml").write_text("[sources]\ntrusted = 'x'\nsurprise = 1\n")
    with pytest.raises(InputError, match="unknown key"):
        SourcePolicy.load(tmp_path / "bad.toml")


def test_filter_column_keeps_every_record(tmp_path: Path) -> None:
    (tmp_path / "p.toml").write_text(POLICY)
    frame().to_parquet(tmp_path / "d.parquet")
    result = filter_dataset(
        tmp_path / "d.parquet",
        tmp_path / "out",
        SourcePolicy.load(tmp_path / "p.toml"),
        source_column="source",
    )
    assert result.admitted == (0, 1, 5)
    assert [r for r, _, _ in result.quarantined] == [2, 3, 4]
    quarantine = pq.read_table(tmp_path / "out" / "quarantine.parquet").to_pandas()
    admitted = pq.read_table(tmp_path / "out" / "admitted.parquet").to_pandas()
    assert len(quarantine) + len(admitted) == 6
    assert list(quarantine["_donjon_row"]) == [2, 3, 4]
    assert quarantine["_donjon_reason"].str.len().min() > 0
    assert result.findings[0].rule.id == "DJ-DAT-002"
    with pytest.raises(InputError, match="refusing to overwrite"):
        filter_dataset(
            tmp_path / "d.parquet",
            tmp_path / "out",
            SourcePolicy.load(tmp_path / "p.toml"),
            source_column="source",
        )


def test_filter_npz_with_sidecar_through_the_cli(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    (tmp_path / "p.toml").write_text(POLICY)
    np.savez(tmp_path / "d.npz", X=np.arange(12).reshape(4, 3), y=np.array([0, 1, 0, 1]))
    (tmp_path / "sources.csv").write_text("row,source\n0,vendor-a\n1,scraper\n3,team/x\n")
    argv = [
        "--format", "json", "data", "filter", str(tmp_path / "d.npz"),
        "--policy", str(tmp_path / "p.toml"), "--out-dir", str(tmp_path / "out"),
        "--sources", str(tmp_path / "sources.csv"), "--fail-on", "medium",
    ]  # fmt: skip
    assert main(argv) == 1
    report = json.loads(capsys.readouterr().out)
    assert report["admitted"] == 2
    assert {r["row"] for r in report["quarantined_rows"]} == {1, 2}
    quarantine = read_npz(tmp_path / "out" / "quarantine.npz")
    assert quarantine["_donjon_row"].tolist() == [1, 2]
    assert quarantine["X"].tolist() == [[3, 4, 5], [6, 7, 8]]
    assert (tmp_path / "out" / "filter-report.json").is_file()


def test_filter_needs_a_source(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    (tmp_path / "p.toml").write_text(POLICY)
    frame().to_csv(tmp_path / "d.csv", index=False)
    argv = ["data", "filter", str(tmp_path / "d.csv"), "-p", str(tmp_path / "p.toml"), "-o",
            str(tmp_path / "out")]  # fmt: skip
    assert main(argv) == 2
    assert "exactly one" in capsys.readouterr().err
    assert not (tmp_path / "out").exists()
