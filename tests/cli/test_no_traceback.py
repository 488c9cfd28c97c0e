"""No Python traceback reaches a user: random small inputs get a clean exit code.

Each command is fed small, random files (CSV, JSON, TOML, bytes); whatever they hold, the
command must return 0, 1 or 2 and never let an exception escape ``main``.
"""

from __future__ import annotations

from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from donjon.cli.main import main

cells = st.one_of(
    st.integers(-5, 5).map(str),
    st.floats(allow_nan=True, allow_infinity=True).map(repr),
    st.sampled_from(["", "a", "NaN", "1e309", "-", '"x,y"', "true"]),
)
rows = st.lists(st.lists(cells, min_size=1, max_size=4), min_size=0, max_size=8)
blobs = st.binary(max_size=64)
texts = st.text(max_size=80)

SLOW = settings(
    max_examples=15,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)


def _csv(path: Path, header: list[str], body: list[list[str]]) -> Path:
    lines = [",".join(header)] + [",".join(r) for r in body]
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


def _clean_exit(argv: list[str], capsys: pytest.CaptureFixture[str]) -> str:
    code = main(argv)
    out = capsys.readouterr()
    assert code in (0, 1, 2), (argv, code)
    assert "Traceback" not in out.err + out.out
    return out.err


@SLOW
@given(body=rows)
def test_data_commands_on_random_tables(
    body: list[list[str]], tmp_path: Path, donjon_home: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    data = _csv(tmp_path / "t.csv", ["a", "b", "label"], body)
    _clean_exit(["data", "check", str(data), "--label-column", "label"], capsys)
    _clean_exit(["data", "manifest", str(data), "-o", str(tmp_path / "m.json"), "--force"], capsys)
    policy = tmp_path / "p.toml"
    policy.write_text('[sources]\ntrusted = ["a"]\n')
    out = tmp_path / "split"
    _clean_exit(["data", "filter", str(data), "-p", str(policy), "--source-column", "a",
                 "-o", str(out), "--force"], capsys)  # fmt: skip


@SLOW
@given(blob=blobs, text=texts)
def test_file_commands_on_random_bytes(
    blob: bytes,
    text: str,
    tmp_path: Path,
    donjon_home: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    (tmp_path / "f.bin").write_bytes(blob)
    (tmp_path / "f.toml").write_text(text, encoding="utf-8")
    (tmp_path / "f.json").write_text(text, encoding="utf-8")
    _clean_exit(["scan", str(tmp_path / "f.bin")], capsys)
    _clean_exit(["data", "filter", str(tmp_path / "f.bin"), "-p", str(tmp_path / "f.toml"),
                 "-o", str(tmp_path / "o")], capsys)  # fmt: skip
    _clean_exit(["data", "verify", str(tmp_path / "f.json")], capsys)
    _clean_exit(["gateway", "profile", str(tmp_path / "f.bin")], capsys)


def test_check_on_a_four_row_csv_says_what_is_wrong(
    tmp_path: Path, donjon_home: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    data = _csv(tmp_path / "four.csv", ["a", "b", "label"],
                [["1", "2", "0"], ["3", "4", "1"], ["5", "6", "0"], ["7", "8", "1"]])  # fmt: skip
    assert main(["data", "check", str(data), "--label-column", "label"]) == 2
    err = capsys.readouterr().err
    assert "4 record(s)" in err
    assert "at least 10" in err


def test_an_unexpected_error_is_a_message_not_a_traceback(
    tmp_path: Path, donjon_home: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    folder = tmp_path / "not-a-manifest"
    folder.mkdir()
    err = _clean_exit(["data", "verify", str(folder)], capsys)
    assert err.startswith("error:")


def test_scan_of_nothing_scannable_exits_2(
    tmp_path: Path, donjon_home: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    import os

    (tmp_path / "empty").mkdir()
    os.mkfifo(tmp_path / "pipe")
    for target in (tmp_path / "empty", Path("/dev/zero"), tmp_path / "pipe"):
        assert main(["scan", str(target)]) == 2
        assert "nothing scannable" in capsys.readouterr().err


def test_unknown_action_and_nameless_versions_are_usage_errors(
    donjon_home: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["access", "explain", "alice", "dataset.rread", "datasets/x"]) == 2
    assert "unknown action 'dataset.rread'" in capsys.readouterr().err
    assert main(["models", "list", "--versions"]) == 2
    err = capsys.readouterr().err
    assert "name it" in err
    assert "400" not in err
