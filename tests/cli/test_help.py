"""Help reads well: no Python type names (``<bool>``, ``<list[str]>``), choices listed."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from donjon.cli.commands import COMMANDS
from donjon.cli.helpfmt import readable
from donjon.cli.main import main

LEAK = re.compile(r"<(bool|str|int|float|path|list\[[^\]]*\])>")


def _command_lines() -> list[list[str]]:
    lines = []
    for entry in COMMANDS:
        command = entry.load("rich")
        lines.append([entry.name])
        for sub in getattr(command, "commands", {}):
            lines.append([entry.name, sub])
    return lines


def test_readable_type_labels() -> None:
    assert readable("<bool>", is_flag=True) is None
    assert readable("<list[str]>", is_flag=False) == "TEXT"
    assert readable("<path>", is_flag=False) == "PATH"
    assert readable("<text|json|html>", is_flag=False) == "[text|json|html]"


@pytest.mark.parametrize("argv", _command_lines(), ids=" ".join)
def test_no_type_names_leak_into_help(argv: list[str], capsys: pytest.CaptureFixture[str]) -> None:
    assert main([*argv, "--help"]) == 0
    out = capsys.readouterr().out
    assert not LEAK.search(out), LEAK.findall(out)


def test_enum_like_options_list_their_choices(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["data", "check", "--help"]) == 0
    out = " ".join(re.sub("[│╭╮╰╯─]", " ", capsys.readouterr().out).split())
    assert "[text|json|html]" in out
    assert "info, low, medium, high or critical" in out
    assert "label_issues, trigger_search" in out


def test_shell_completion_is_offered(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    assert main(["--help"]) == 0
    assert "--install-completion" in capsys.readouterr().out
    # what the installed bash completion script asks: the words so far, the cursor
    monkeypatch.setenv("_DONJON_COMPLETE", "complete_bash")
    monkeypatch.setenv("COMP_WORDS", "donjon da")
    monkeypatch.setenv("COMP_CWORD", "1")
    assert main([]) == 0
    assert capsys.readouterr().out.split() == ["datasets", "data"]


BRACKETED = re.compile(r"\\?\[([a-z_.]+)\]")


@pytest.mark.parametrize("argv", _command_lines(), ids=" ".join)
def test_brackets_in_help_are_shown_not_taken_for_markup(
    argv: list[str], capsys: pytest.CaptureFixture[str]
) -> None:
    """``a [sources] table``, ``donjon[data]``: Rich markup would swallow them."""
    command = next(e for e in COMMANDS if e.name == argv[0]).load("rich")
    for name in argv[1:]:
        command = command.commands[name]  # type: ignore[attr-defined]
    words = [w for p in command.params for w in BRACKETED.findall(getattr(p, "help", "") or "")]
    assert main([*argv, "--help"]) == 0
    out = re.sub(r"[\s│]+", " ", capsys.readouterr().out)
    for word in words:
        assert f"[{word}]" in out, word


def test_chatter_keeps_the_brackets_of_file_names(
    tmp_path: Path, donjon_home: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    model = tmp_path / "checkpoint[bold]epoch=3.bin"
    model.write_bytes(b"weights")
    # not a table: the push says so, naming the file as it is, before it needs a vault
    assert main(["datasets", "push", "fraud/tx", str(model), "--server", "http://127.0.0.1:9"]) == 2
    assert "checkpoint[bold]epoch=3.bin is not a .csv" in capsys.readouterr().err
