"""``donjon quickstart``: run the guarded lifecycle end to end and check what it caught."""

from __future__ import annotations

import tempfile
from pathlib import Path
from typing import Annotated

import typer

from donjon.cli.state import ExitCode, state


def quickstart(
    ctx: typer.Context,
    folder: Annotated[
        Path | None,
        typer.Option(
            "--dir",
            help="A new or empty folder for the run (default: a new temporary folder).",
            file_okay=False,
        ),
    ] = None,
) -> int:
    """Run a guarded ML lifecycle on embedded defaults, narrated step by step.

    Vault on loopback, poisoned data, a malicious third-party model, a signed
    model through the promotion gates, attacks on the gateway, a ledger tamper
    drill. Exits 0 when every expected detection is in the event file, 1 naming
    the ones that are not.
    """
    from rich.console import Console

    from donjon.quickstart import run_quickstart

    cli = state(ctx)
    target = folder or Path(tempfile.mkdtemp(prefix="donjon-quickstart-"))
    console = Console(quiet=cli.quiet, stderr=cli.json, highlight=False)
    result = run_quickstart(target, console)
    if cli.json:
        cli.print_json(
            {
                "ok": result.ok,
                "folder": str(result.folder),
                "events": str(result.events),
                "ocsf": str(result.ocsf),
                "report": str(result.report),
                "met": [e.what for e in result.met],
                "missed": [e.what for e in result.missed],
                "problems": result.problems,
                "seconds": round(result.seconds, 1),
            }
        )
    if result.ok:
        cli.info(f"quickstart passed: every expected detection happened; files in {target}")
        return ExitCode.OK
    for expected in result.missed:
        typer.secho(f"MISSED (step {expected.step}): {expected.what}", err=True, fg="red")
    for problem in result.problems:
        typer.secho(f"PROBLEM: {problem}", err=True, fg="red")
    return ExitCode.FINDINGS
