"""A table as spreadsheets write it goes through every data command, each fed the last one's
output: manifest -> verify -> filter -> check -> gateway profile.

Excel's "CSV UTF-8" (a byte-order mark), "Unicode text" and PowerShell 5's ``>`` (UTF-16),
Windows line ends, semicolons (locales with a decimal comma) and ``.tsv`` are read as the
same records: one Merkle root for all of them. ``data filter`` writes the records back as
the text they held, with the input's delimiter, so the next command reads what the first
one did; text that is not UTF-8 is refused before anything is written.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from donjon.cli.main import main

HEADER = ["zip", "amount", "velocity", "label", "source"]
POLICY = '[sources]\ntrusted = ["vendor-*"]\ndenied = ["scraped/*"]\n'


def _rows() -> list[list[str]]:
    rows = []
    for i in range(60):
        source = "scraped/forum" if i % 6 == 0 else "vendor-a"
        amount = f"{10 + (i * 7) % 53}.{i % 10}0"  # "17.10": a trailing zero to keep
        rows.append([f"{i:05d}", amount, str((i * 13) % 17), str(i % 2), source])
    return rows


def _write(path: Path, delimiter: str, encoding: str, newline: str) -> Path:
    lines = [delimiter.join(HEADER)] + [delimiter.join(row) for row in _rows()]
    path.write_bytes((newline.join(lines) + newline).encode(encoding))
    return path


VARIANTS = {
    "plain.csv": (",", "utf-8", "\n"),
    "excel bom.csv": (",", "utf-8-sig", "\r\n"),
    "unicode text.csv": (",", "utf-16", "\r\n"),
    "-point-virgule é.CSV": (";", "utf-8", "\n"),
    "tabs.tsv": ("\t", "utf-8", "\n"),
}


def _json(capsys: pytest.CaptureFixture[str]) -> dict[str, object]:
    out = json.loads(capsys.readouterr().out)
    assert isinstance(out, dict)
    return out


@pytest.mark.parametrize("name", sorted(VARIANTS))
def test_one_table_in_any_encoding_flows_through_the_data_commands(
    name: str, workdir: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    tmp_path = workdir
    reference = _write(tmp_path / "reference.csv", *VARIANTS["plain.csv"])
    data = _write(tmp_path / name, *VARIANTS[name])
    (tmp_path / "sources.toml").write_text(POLICY)

    roots = []
    for table in (reference, data):
        out = f"./{table.name}.manifest.json"
        assert main(["-f", "json", "data", "manifest", f"./{table.name}", "-o", out]) == 0
        roots.append(_json(capsys)["root"])
        assert main(["data", "verify", out]) == 0
        assert "matches" in capsys.readouterr().out
    assert roots[0] == roots[1]  # the same records, however the file was written

    argv = ["data", "filter", f"./{name}", "--policy", "sources.toml", "--source-column"]
    assert main([*argv, "source", "-o", "split"]) == 0
    assert "admitted: 50  quarantined: 10" in capsys.readouterr().out
    suffix = Path(name).suffix.lower()
    admitted = tmp_path / "split" / f"admitted{suffix}"
    quarantine = tmp_path / "split" / f"quarantine{suffix}"
    text = admitted.read_text(encoding="utf-8")
    delimiter = VARIANTS[name][0]
    assert text.splitlines()[0] == delimiter.join([*HEADER, "_donjon_row"])
    kept = [delimiter.join([*row, str(j)]) for j, row in enumerate(_rows()) if j % 6]
    assert text.splitlines()[1:] == kept  # "00042" and "17.10" as they were written
    assert len(quarantine.read_text(encoding="utf-8").splitlines()) == 1 + 10

    # the next commands read the filter's output as the first read its input
    diff = ["-f", "json", "data", "diff", f"./{name}", str(admitted), "--label-column", "label"]
    assert main(diff) == 0
    changes = _json(capsys)
    assert (changes["unchanged"], changes["removed"], changes["added"]) == (50, 10, 0)
    assert changes["removed_rows"] == list(range(0, 60, 6))  # what the filter took out
    check = ["-f", "json", "data", "check", str(admitted), "--label-column", "label"]
    assert main([*check, "--exclude", "source", "--exclude", "zip", "--detector", "outliers"]) == 0
    assert _json(capsys)["records"] == 50
    assert main(["-f", "json", "data", "manifest", str(admitted), "--label-column", "label"]) == 0
    assert _json(capsys)["count"] == 50
    profile = ["-f", "json", "gateway", "profile", f"./{name}", "-o", "profile.json"]
    assert main([*profile, "--drop", "label", "--drop", "source", "--drop", "zip"]) == 0
    assert _json(capsys)["features"] == 2


def test_text_that_is_not_utf8_is_refused_before_anything_is_written(
    workdir: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    tmp_path = workdir
    _write(tmp_path / "latin1.csv", ",", "utf-8", "\n")
    raw = (tmp_path / "latin1.csv").read_bytes().replace(b"vendor-a", "vendör-a".encode("latin-1"))
    (tmp_path / "latin1.csv").write_bytes(raw)
    (tmp_path / "sources.toml").write_text(POLICY)
    argv = ["data", "filter", "latin1.csv", "--policy", "sources.toml", "--source-column"]
    capsys.readouterr()
    assert main([*argv, "source", "-o", "split"]) == 2
    assert "is not UTF-8 text" in capsys.readouterr().err
    assert not (tmp_path / "split").exists()
    assert main(["gateway", "profile", "latin1.csv", "--drop", "source", "-o", "p.json"]) == 2
    assert "byte 0xf6" in capsys.readouterr().err
    assert not (tmp_path / "p.json").exists()


def test_an_empty_file_is_named_as_such(
    tmp_path: Path, donjon_home: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    empty = tmp_path / "empty.csv"
    empty.write_bytes(b"")
    capsys.readouterr()
    assert main(["gateway", "profile", str(empty), "--drop", "label", "-o", "p.json"]) == 2
    assert "holds no rows" in capsys.readouterr().err
    assert main(["data", "manifest", str(empty)]) == 2
    assert "Empty CSV file" in capsys.readouterr().err


def test_a_parquet_split_feeds_the_gateway_profile(
    workdir: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """filter writes admitted.parquet; the gateway's profile reads it as the data commands
    do (and a binary file named .csv is called binary, not bad UTF-8)."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    rows = _rows()
    pq.write_table(
        pa.table({name: [row[i] for row in rows] for i, name in enumerate(HEADER)}), "t.parquet"
    )
    (workdir / "sources.toml").write_text(POLICY)
    argv = ["data", "filter", "t.parquet", "--policy", "sources.toml", "--source-column"]
    assert main([*argv, "source", "-o", "split"]) == 0
    capsys.readouterr()
    profile = ["-f", "json", "gateway", "profile", "split/admitted.parquet", "-o", "p.json"]
    drops = ["--drop", "zip", "--drop", "source", "--drop", "_donjon_row"]
    assert main([*profile, *drops, "--label", "label"]) == 0
    assert _json(capsys)["rows"] == 50
    (workdir / "t.csv").write_bytes((workdir / "t.parquet").read_bytes())
    assert main(["gateway", "profile", "t.csv", "-o", "q.json"]) == 2
    assert "is not a text file" in capsys.readouterr().err
