"""``donjon events``: read the local event file."""

from __future__ import annotations

from collections import deque
from pathlib import Path
from typing import Annotated

import typer
from rich.table import Table

from donjon.cli.state import state
from donjon.core.severity import Severity
from donjon.soc.jsonl import read_events

app = typer.Typer(help="Read the security events Donjon recorded.", no_args_is_help=True)


@app.command("tail")
def tail(
    ctx: typer.Context,
    count: Annotated[int, typer.Option("--lines", "-n", min=1, help="How many events.")] = 20,
    min_severity: Annotated[
        str, typer.Option("--min-severity", help="Skip events below this severity.")
    ] = "info",
    path: Annotated[
        Path | None, typer.Option("--file", help="Event file (default: the settings').")
    ] = None,
) -> None:
    """Show the most recent events."""
    cli = state(ctx)
    try:
        floor = Severity.parse(min_severity)
    except ValueError as e:
        raise typer.BadParameter(str(e), param_hint="--min-severity") from None
    source = path or cli.settings.events_path
    if not source.exists():
        cli.info(f"no events yet ({source} does not exist)")
        events = []
    else:
        events = list(deque((e for e in read_events(source) if e.severity >= floor), count))
    if cli.json:
        cli.print_json([event.to_dict() for event in events])
        return
    table = Table("time", "severity", "kind", "source", "message", title=str(source))
    for event in events:
        table.add_row(
            event.time.strftime("%Y-%m-%d %H:%M:%S"),
            event.severity.label,
            event.kind.value,
            event.source,
            event.message,
        )
    cli.out.print(table)
