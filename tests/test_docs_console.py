"""Every ```console block of README.md and docs/*.md runs as written, with the exit codes shown.

A block is a shell session: ``$ command`` lines (a trailing backslash continues one), the
rest is output. Each command must exit 0, except one that ends with ``; echo "exit $?"``:
then the ``exit N`` line the doc shows must be what it prints. The blocks of one file run
in order in one scratch folder (``DONJON_HOME`` inside it), as a reader would run them. A
block that needs a long-running server is skipped only when the doc says so, visibly, on
the line before it: ``*docs-test: skip (reason)*``.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
DOCS = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
SKIP = re.compile(r"^\*docs-test: skip \((.+)\)\*$")
ECHO_EXIT = '; echo "exit $?"'


@dataclass(frozen=True)
class Command:
    text: str
    line: int
    exit_shown: int | None  # the "exit N" the doc prints after `; echo "exit $?"`


@dataclass(frozen=True)
class Block:
    doc: Path
    line: int
    commands: tuple[Command, ...]
    skip: str | None


def blocks(doc: Path) -> list[Block]:
    lines = doc.read_text(encoding="utf-8").splitlines()
    found: list[Block] = []
    i = 0
    while i < len(lines):
        if lines[i].strip() != "```console":
            i += 1
            continue
        start = i
        before = next((lines[j].strip() for j in range(i - 1, -1, -1) if lines[j].strip()), "")
        skip = SKIP.match(before)
        body: list[tuple[int, str]] = []
        i += 1
        while lines[i].strip() != "```":
            body.append((i + 1, lines[i]))
            i += 1
        found.append(Block(doc, start + 1, _commands(body), skip.group(1) if skip else None))
        i += 1
    return found


def _commands(body: list[tuple[int, str]]) -> tuple[Command, ...]:
    commands: list[Command] = []
    k = 0
    while k < len(body):
        number, text = body[k]
        if not text.startswith("$ "):
            k += 1
            continue
        command = text[2:]
        while command.rstrip().endswith("\\") and k + 1 < len(body):
            k += 1
            command = command.rstrip()[:-1] + " " + body[k][1].strip()
        shown = None
        if ECHO_EXIT in command:
            for _, output in body[k + 1 :]:
                if output.startswith("$ "):
                    break
                if re.fullmatch(r"exit \d+", output.strip()):
                    shown = int(output.split()[1])
        commands.append(Command(command, number, shown))
        k += 1
    return tuple(commands)


def _shell_env(scratch: Path) -> dict[str, str]:
    """`donjon` on the PATH runs this interpreter (and this checkout, via PYTHONPATH)."""
    bin_dir = scratch / ".bin"
    bin_dir.mkdir(exist_ok=True)
    shim = bin_dir / "donjon"
    shim.write_text(f'#!/bin/sh\nexec "{sys.executable}" -m donjon "$@"\n')
    shim.chmod(0o755)
    env = {k: v for k, v in os.environ.items() if not k.startswith("DONJON_")}
    env |= {
        "PATH": f"{bin_dir}{os.pathsep}{env.get('PATH', '')}",
        "DONJON_HOME": str(scratch / "donjon-home"),
        "PYTHONPATH": os.pathsep.join([str(ROOT / "src"), env.get("PYTHONPATH", "")]),
        "NO_COLOR": "1",
        "COLUMNS": "120",
    }
    return env


def test_the_parser_reads_commands_exit_codes_and_skips(tmp_path: Path) -> None:
    doc = tmp_path / "d.md"
    doc.write_text(
        '```console\n$ a --x \\\n    --y\nout\n$ b; echo "exit $?"\nexit 1\n```\n\n'
        "*docs-test: skip (needs a server)*\n\n```console\n$ c\n```\n"
    )
    first, second = blocks(doc)
    assert [c.text for c in first.commands] == ["a --x  --y", 'b; echo "exit $?"']
    assert [c.exit_shown for c in first.commands] == [None, 1]
    assert first.skip is None
    assert second.skip == "needs a server"


def test_skips_are_few_and_explained() -> None:
    every = [b for doc in DOCS for b in blocks(doc)]
    skipped = [b for b in every if b.skip]
    assert len(every) >= 6
    assert len(skipped) <= len(every) // 2, [(b.doc.name, b.line, b.skip) for b in skipped]


@pytest.mark.parametrize(
    "doc", [d for d in DOCS if any(not b.skip for b in blocks(d))], ids=lambda d: d.name
)
def test_console_blocks_run_as_written(doc: Path, tmp_path: Path) -> None:
    env = _shell_env(tmp_path)
    ran = 0
    for block in blocks(doc):
        if block.skip:
            continue
        for command in block.commands:
            done = subprocess.run(
                ["bash", "-c", command.text],
                cwd=tmp_path,
                env=env,
                capture_output=True,
                text=True,
                timeout=600,
                check=False,
            )
            where = f"{doc.name}:{command.line}: $ {command.text}"
            detail = (
                f"{where}\n--- stdout\n{done.stdout[-3000:]}\n--- stderr\n{done.stderr[-3000:]}"
            )
            assert "Traceback" not in done.stderr, detail
            assert done.returncode == 0, detail
            if command.exit_shown is not None:
                printed = re.findall(r"^exit (\d+)$", done.stdout, re.MULTILINE)
                assert printed, detail
                assert int(printed[-1]) == command.exit_shown, detail
            ran += 1
    assert ran
