"""``donjon scan``'s text report: plain lines for pipes and logs, Rich tables for terminals."""

from __future__ import annotations

import io
import pickle
import subprocess
import sys
from pathlib import Path

import pytest
from rich.console import Console

from donjon.cli.main import main
from donjon.cli.scan_run import ScanFormat, run_scan
from donjon.cli.state import CliState
from donjon.core.severity import Severity
from donjon.scan.policy import DEFAULT_POLICY
from donjon.scan.samples_pickle import call, glob0, p2

EVIL = p2(call(glob0("os", "system"), "touch donjon-canary"))


@pytest.fixture
def folder(tmp_path: Path) -> Path:
    root = tmp_path / "models"
    root.mkdir()
    (root / "evil.pkl").write_bytes(EVIL)
    (root / "plain.txt").write_text("hello")
    return root


@pytest.fixture(autouse=True)
def _no_forced_terminal(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("FORCE_COLOR", raising=False)
    monkeypatch.delenv("TTY_COMPATIBLE", raising=False)


def test_a_pipe_gets_one_line_per_finding_and_a_summary_line(
    folder: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["scan", str(folder)]) == 1
    lines = capsys.readouterr().out.splitlines()
    assert lines[0] == "Findings: severity, rule, file, finding"
    severity, rule, path, message = lines[1].split("  ", 3)
    assert (severity, rule, path) == ("critical", "DJ-PKL-001", str(folder / "evil.pkl"))
    assert "os.system" in message
    assert lines[-1].startswith("Summary: files 2, findings 1, critical 1, high 0, medium 0,")
    assert len([line for line in lines if line.startswith("critical ")]) == 1


def test_a_clean_scan_prints_only_the_summary(
    folder: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["scan", str(folder / "plain.txt")]) == 0
    out = capsys.readouterr().out
    assert out.startswith("Summary: files 1, findings 0, critical 0,")
    assert out.count("\n") == 1


def test_a_control_character_in_a_file_name_cannot_forge_a_report_line(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    hostile = tmp_path / "x\nSummary: files 1, findings 0.pkl"
    hostile.write_bytes(EVIL)
    assert main(["scan", str(hostile)]) == 1
    lines = capsys.readouterr().out.splitlines()
    assert len(lines) == 3
    assert "x\\x0aSummary: files 1, findings 0.pkl" in lines[1]
    assert [line for line in lines if line.startswith("Summary")] == [lines[2]]


def test_a_clean_plain_scan_loads_no_rich_logging_bus_or_decompressor(
    tmp_path: Path, donjon_home: Path
) -> None:
    (tmp_path / "weights.pkl").write_bytes(pickle.dumps({"w": [1.0, 2.0]}, protocol=4))
    (tmp_path / "notes.txt").write_text("hello")
    heavy = ["bz2", "donjon.core.bus", "donjon.core.events", "hashlib", "logging", "lzma",
             "rich", "tarfile", "uuid", "zipfile"]  # fmt: skip
    probe = (
        "import sys\nfrom donjon.cli.main import main\n"
        f"code = main(['scan', {str(tmp_path)!r}])\n"
        f"print(code, sorted(set({heavy!r}) & set(sys.modules)))"
    )
    done = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    assert done.stdout.splitlines()[-1] == "0 []"


def test_a_terminal_gets_the_rich_tables(folder: Path) -> None:
    out, err = io.StringIO(), io.StringIO()
    cli = CliState(
        _out=Console(file=out, force_terminal=True, width=200, highlight=False, emoji=False),
        _err=Console(file=err, force_terminal=True, width=200, highlight=False, emoji=False),
        quiet=True,
    )
    code = run_scan(
        cli,
        [folder / "evil.pkl"],
        policy=DEFAULT_POLICY,
        threshold=Severity.MEDIUM,
        record_clean=False,
        fmt=ScanFormat.TEXT,
        output=None,
        workers=None,
    )
    cli.close()
    assert code == 1
    text = out.getvalue()
    assert "\x1b[" in text  # colours
    assert "┏" in text
    assert "severity" in text
    assert "Findings" in text
    assert "Summary" in text
    assert "DJ-PKL-001" in text


def test_force_color_makes_main_print_the_tables(
    folder: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("FORCE_COLOR", "1")
    assert main(["-q", "scan", str(folder / "plain.txt")]) == 0
    out = capsys.readouterr().out
    assert "┏" in out
    assert "files" in out
    assert "Summary:" not in out


def test_a_console_that_is_no_terminal_gets_the_plain_lines(folder: Path) -> None:
    out = io.StringIO()
    cli = CliState(_out=Console(file=out, width=200), quiet=True)
    code = run_scan(
        cli,
        [folder / "plain.txt"],
        policy=DEFAULT_POLICY,
        threshold=Severity.MEDIUM,
        record_clean=False,
        fmt=ScanFormat.TEXT,
        output=None,
        workers=None,
    )
    assert code == 0
    assert out.getvalue().startswith("Summary: files 1, findings 0,")
