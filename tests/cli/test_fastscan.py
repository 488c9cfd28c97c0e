"""The Typer-free ``donjon scan`` path: same output and exit code, or it steps aside."""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path

import pytest

from donjon.cli import fastscan
from donjon.cli.root import run_app
from donjon.scan.samples import write_samples


@pytest.fixture(scope="module")
def samples(tmp_path_factory: pytest.TempPathFactory) -> Path:
    folder = tmp_path_factory.mktemp("fast") / "s"
    write_samples(folder)
    return folder


def _normalised(text: str) -> str:
    text = re.sub(r'"seconds": [0-9.e-]+', '"seconds": 0', text)
    return re.sub(r"\b\d+\.\d\d\b", "0.00", text)  # the text summary's seconds


CASES = [
    ["scan", "{benign}"],
    ["-q", "scan", "{benign}"],
    ["scan", "{malicious}"],
    ["--format", "json", "scan", "{malicious}/os_system_p2.pkl"],
    ["scan", "-f", "json", "--fail-on", "critical", "{malicious}/zip_slip.zip"],
    ["-f", "json", "scan", "--allow", "mypkg.tools.run", "{malicious}/os_system_p2.pkl"],
    ["scan", "{benign}", "--workers", "2", "--fail-on", "high"],
]


@pytest.mark.parametrize("argv", CASES, ids=lambda a: " ".join(a))
def test_the_fast_path_prints_and_exits_as_typer_does(
    argv: list[str], samples: Path, donjon_home: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    args = [a.format(benign=samples / "benign", malicious=samples / "malicious") for a in argv]
    fast = fastscan.try_scan(args)
    assert fast is not None, "the fast path declined a plain scan"
    fast_out = capsys.readouterr()
    typer = run_app(args)
    typer_out = capsys.readouterr()
    assert fast == typer
    assert _normalised(fast_out.out) == _normalised(typer_out.out)
    assert fast_out.err == typer_out.err


def test_sarif_written_to_a_file_is_the_same(
    samples: Path, donjon_home: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    def run(runner: object, name: str) -> tuple[object, object]:
        out = tmp_path / name
        args = ["scan", "-f", "sarif", "-o", str(out), str(samples / "malicious")]
        code = runner(args)  # type: ignore[operator]
        capsys.readouterr()
        return code, json.loads(out.read_text())

    assert run(fastscan.try_scan, "fast.sarif") == run(run_app, "typer.sarif")


@pytest.mark.parametrize(
    "argv",
    [
        ["--help"],
        ["scan", "--help"],
        ["scan", "-h", "x"],
        ["rules", "list"],
        ["--config", "c.toml", "scan", "{benign}"],
        ["--format=json", "scan", "{benign}"],
        ["-qf", "json", "scan", "{benign}"],
        ["-f", "JSON", "scan", "{benign}"],
        ["scan", "--fail-on", "severe", "{benign}"],
        ["scan", "--workers", "0", "{benign}"],
        ["scan", "--workers", "²", "{benign}"],
        ["scan", "--output", "-", "{benign}"],
        ["scan", "--format", "xml", "{benign}"],
        ["scan", "{benign}/does-not-exist"],
        ["scan"],
        ["scan", "--", "{benign}"],
        ["--home", "{benign}/plain_p0.pkl", "scan", "{benign}"],
    ],
    ids=lambda a: " ".join(a),
)
def test_anything_but_a_plain_scan_goes_to_typer(
    argv: list[str], samples: Path, donjon_home: Path
) -> None:
    args = [a.format(benign=samples / "benign") for a in argv]
    assert fastscan.parse(args) is None


def test_settings_from_a_file_or_a_variable_go_to_typer(
    samples: Path, donjon_home: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    args = ["scan", str(samples / "benign")]
    assert fastscan.parse(args) is not None
    assert fastscan.builtin_settings(None)
    monkeypatch.setenv("DONJON_SCAN__DENY", '["mypkg"]')
    assert not fastscan.builtin_settings(None)
    assert fastscan.try_scan(args) is None
    monkeypatch.delenv("DONJON_SCAN__DENY")
    donjon_home.mkdir(parents=True, exist_ok=True)
    (donjon_home / "config.toml").write_text("[scan]\nfail_on = 'high'\n")
    assert not fastscan.builtin_settings(None)
    other = donjon_home.parent / "other-home"
    other.mkdir()
    (other / "config.toml").write_text("")
    assert not fastscan.builtin_settings(str(other))


def test_the_built_in_settings_are_the_settings_defaults() -> None:
    from donjon.app.scan import scan_policy
    from donjon.config import ScanSettings, Settings
    from donjon.scan.policy import DEFAULT_POLICY

    assert scan_policy(Settings()) == DEFAULT_POLICY
    assert ScanSettings().fail_on == fastscan.DEFAULT_FAIL_ON
    assert ScanSettings().record_clean is fastscan.DEFAULT_RECORD_CLEAN


def test_a_clean_scan_imports_neither_typer_nor_pydantic_nor_sql(
    samples: Path, donjon_home: Path
) -> None:
    probe = (
        "import contextlib, io, sys\nfrom donjon.cli.main import main\n"
        "with contextlib.redirect_stdout(io.StringIO()):\n"
        f"    code = main(['scan', {str(samples / 'benign')!r}])\n"
        "print(code, *sorted(m.split('.')[0] for m in sys.modules))"
    )
    done = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    code, *modules = done.stdout.split()
    assert code == "0"
    assert not {"typer", "pydantic", "pydantic_settings", "sqlalchemy"} & set(modules)


def test_machine_output_imports_no_console(samples: Path, donjon_home: Path) -> None:
    probe = (
        "import contextlib, io, sys\nfrom donjon.cli.main import main\n"
        "with contextlib.redirect_stdout(io.StringIO()) as out:\n"
        f"    code = main(['-f', 'json', 'scan', {str(samples / 'benign')!r}])\n"
        "import json\nassert json.loads(out.getvalue())['summary']['findings'] == 0\n"
        "print(code, 'rich' in sys.modules)"
    )
    done = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    assert done.stdout.split() == ["0", "False"]
