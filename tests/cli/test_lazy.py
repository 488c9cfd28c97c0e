"""Sub-commands are imported when they run; the help page still lists them all."""

from __future__ import annotations

import inspect
import subprocess
import sys

import pytest

from donjon.cli.main import COMMANDS, main


def _first_paragraph(text: str) -> str:
    return " ".join(inspect.cleandoc(text).split("\n\n")[0].split())


def test_help_lists_every_command_with_its_help(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["--help"]) == 0
    page = " ".join(capsys.readouterr().out.replace("│", " ").split())
    for entry in COMMANDS:
        assert f" {entry.name} " in page
        assert " ".join(entry.help.split()[:4]) in page, entry.name


@pytest.mark.parametrize("entry", COMMANDS, ids=lambda e: e.name)
def test_the_table_help_is_the_commands_own_help(entry: object) -> None:
    from donjon.cli.commands import LazyCommand

    assert isinstance(entry, LazyCommand)
    command = entry.load("rich")
    assert command.name == entry.name
    assert _first_paragraph(command.short_help or command.help or "") == entry.help


@pytest.mark.parametrize("entry", COMMANDS, ids=lambda e: e.name)
def test_each_lazy_command_gives_its_help(
    entry: object, capsys: pytest.CaptureFixture[str]
) -> None:
    from donjon.cli.commands import LazyCommand

    assert isinstance(entry, LazyCommand)
    assert main([entry.name, "--help"]) == 0
    assert f"Usage: donjon {entry.name}" in capsys.readouterr().out


def test_a_group_keeps_its_add_typer_options(capsys: pytest.CaptureFixture[str]) -> None:
    # no_args_is_help: the group's help (exit 2, as Click does for a missing command)
    assert main(["access"]) == 2
    assert "Usage: donjon access [OPTIONS] COMMAND" in capsys.readouterr().out


def test_a_typo_gets_a_suggestion(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["scna"]) == 2
    assert "Did you mean 'scan'?" in capsys.readouterr().err


def _modules_after(code: str) -> set[str]:
    probe = f"{code}\nimport sys\nprint('\\n'.join(sorted(sys.modules)))"
    done = subprocess.run(
        [sys.executable, "-c", probe], capture_output=True, text=True, check=False
    )
    assert done.returncode == 0, done.stderr
    return set(done.stdout.split())


def test_the_help_page_imports_no_sub_command() -> None:
    loaded = _modules_after(
        "import contextlib, io\nfrom donjon.cli.main import main\n"
        "with contextlib.redirect_stdout(io.StringIO()):\n    main(['--help'])"
    )
    commands = {e.module for e in COMMANDS}
    assert not commands & loaded
    assert "sqlalchemy" not in loaded


def test_running_one_command_imports_only_its_module() -> None:
    loaded = _modules_after(
        "import contextlib, io\nfrom donjon.cli.main import main\n"
        "with contextlib.redirect_stdout(io.StringIO()):\n    main(['rules', 'list'])"
    )
    assert "donjon.cli.rules" in loaded
    assert not {e.module for e in COMMANDS if e.name != "rules"} & loaded
