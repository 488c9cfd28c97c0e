"""``donjon report``: the HTML posture report for auditors."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any

import typer

from donjon.cli.outputs import Force, refuse_overwrite
from donjon.cli.state import ExitCode, state
from donjon.errors import InputError

app = typer.Typer(help="Write the HTML posture report.", invoke_without_command=True)


@app.callback()
def report(
    ctx: typer.Context,
    output: Annotated[
        Path, typer.Option("--output", "-o", help="HTML file to write.", dir_okay=False)
    ] = Path("donjon-report.html"),
    path: Annotated[
        Path | None, typer.Option("--file", help="Event file (default: the settings').")
    ] = None,
    title: Annotated[str, typer.Option(help="Report title.")] = "Donjon posture report",
    force: Force = False,
) -> None:
    """Findings by severity and ATLAS tactic, unsigned models, access anomalies, ledger.

    Exits 1 when the ledger failed its last verification or a critical finding is on
    record, so a pipeline can gate on the report.
    """
    from donjon.soc.jsonl import read_all_events
    from donjon.soc.report import assess, render_html

    cli = state(ctx)
    refuse_overwrite(output, force, "--output")
    source = path or cli.settings.events_path
    if path is not None and not path.exists():
        raise InputError(f"event file {path} does not exist")
    posture = assess(read_all_events(source)) if source.exists() else assess([])
    delivery = _delivery(cli.app) if path is None else None
    try:
        output.write_text(render_html(posture, delivery=delivery, title=title), encoding="utf-8")
    except OSError as e:
        raise InputError(f"cannot write {output}: {e.strerror}") from e
    critical = sum(n for (sev, _), n in posture.findings.items() if sev == "critical")
    summary = {
        "output": str(output),
        "events": posture.events,
        "findings": sum(n for (_, _, _), n in posture.rules.items()),
        "critical_findings": critical,
        "unsigned_models": posture.unsigned,
        "models_without_provenance": posture.without_provenance,
        "alerts": len(posture.alerts),
        "ledger_ok": posture.ledger_ok,
    }
    if cli.json:
        cli.print_json(summary)
    else:
        cli.info(f"wrote {output}: {posture.events} events, {summary['findings']} findings")
    if posture.ledger_ok is False or critical:
        raise typer.Exit(ExitCode.FINDINGS)


def _delivery(app: Any) -> dict[str, Any] | None:
    dispatcher = app.dispatcher
    if dispatcher is None:
        return None
    dead: dict[str, int] = {}
    for row in dispatcher.store.dead_letters():
        dead[row["sink"]] = dead.get(row["sink"], 0) + 1
    return {"sinks": [(s, lag, dead.get(s, 0)) for s, lag in sorted(dispatcher.lag().items())]}
