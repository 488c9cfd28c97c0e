"""The ``donjon`` command end to end through ``main([...])``."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from donjon import __version__
from donjon.catalog import rule_registry
from donjon.cli.main import main
from donjon.cli.rules import rules_markdown
from donjon.core import SecurityEvent, Severity
from donjon.soc import JsonLinesSink
from tests.conftest import REPO_ROOT
from tests.factories import finding


def test_version(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["--version"]) == 0
    assert capsys.readouterr().out.strip() == f"donjon {__version__}"


def test_help_lists_the_commands(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["--help"]) == 0
    out = capsys.readouterr().out
    for command in ("rules", "config", "events"):
        assert command in out


def test_console_script_runs_in_a_subprocess() -> None:
    done = subprocess.run(
        [sys.executable, "-m", "donjon", "--version"], capture_output=True, text=True, check=False
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == f"donjon {__version__}"


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["--bogus"], "No such option"),
        (["rules", "show", "DJ-NOP-999"], "no rule 'DJ-NOP-999'"),
        (["--format", "xml", "rules", "list"], "Invalid value"),
        (["--config", "/does/not/exist.toml", "config", "show"], "does not exist"),
        (["events", "tail", "--min-severity", "severe"], "unknown severity"),
    ],
)
def test_usage_errors_exit_2_with_a_message(
    argv: list[str], message: str, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(argv) == 2
    assert message in capsys.readouterr().err


def test_docs_rules_md_is_generated_from_the_registry() -> None:
    page = REPO_ROOT / "docs" / "rules.md"
    assert page.read_text(encoding="utf-8") == rules_markdown(rule_registry()), (
        "docs/rules.md is stale: run `donjon rules markdown > docs/rules.md`"
    )


def test_rules_markdown_command_prints_the_page(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["rules", "markdown"]) == 0
    assert capsys.readouterr().out == rules_markdown(rule_registry())


def test_rules_list_json_is_machine_readable(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["--format", "json", "rules", "list"]) == 0
    rules = json.loads(capsys.readouterr().out)
    assert [r["id"] for r in rules] == [r.id for r in rule_registry()]


def test_config_show_reports_settings_and_their_file(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], donjon_home: Path
) -> None:
    config = tmp_path / "c.toml"
    config.write_text('log_level = "info"\n')
    assert main(["-f", "json", "--config", str(config), "config", "show"]) == 0
    shown = json.loads(capsys.readouterr().out)
    assert shown["settings_file"] == str(config)
    assert shown["settings"]["log_level"] == "info"
    assert shown["settings"]["home"] == str(donjon_home)


def test_home_flag_overrides_the_environment(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["-f", "json", "--home", str(tmp_path / "h"), "config", "show"]) == 0
    assert json.loads(capsys.readouterr().out)["settings"]["home"] == str(tmp_path / "h")


def test_events_tail_filters_by_severity(
    donjon_home: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    sink = JsonLinesSink(donjon_home / "events.jsonl")
    sink.emit(SecurityEvent.of_finding(finding(severity=Severity.LOW), "scan"))
    sink.emit(SecurityEvent.of_finding(finding(), "scan"))
    sink.close()
    assert main(["-f", "json", "events", "tail", "--min-severity", "medium"]) == 0
    shown = json.loads(capsys.readouterr().out)
    assert [e["severity"] for e in shown] == ["high"]


def test_events_tail_without_events_is_clean(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["-f", "json", "events", "tail"]) == 0
    assert json.loads(capsys.readouterr().out) == []
