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


@app.command("deliver")
def deliver(
    ctx: typer.Context,
    timeout: Annotated[float, typer.Option(min=0, help="Seconds to keep trying.")] = 30.0,
) -> None:
    """Deliver the outbox to every configured sink now (exit 1 if some sink lags behind)."""
    cli = state(ctx)
    dispatcher = cli.app.dispatcher
    if dispatcher is None:
        cli.info("the outbox is off ([soc] outbox = false): nothing to deliver")
        return
    caught_up = dispatcher.drain(timeout)
    lag = dispatcher.lag()
    if cli.json:
        cli.print_json({"caught_up": caught_up, "lag": lag})
    else:
        for sink, behind in sorted(lag.items()):
            cli.out.print(f"{sink}: {behind} event(s) behind")
    if not caught_up:
        raise typer.Exit(1)


@app.command("dead-letters")
def dead_letters(
    ctx: typer.Context,
    sink: Annotated[str | None, typer.Option(help="Only this sink's.")] = None,
) -> None:
    """List the events parked after failed deliveries."""
    cli = state(ctx)
    dispatcher = cli.app.dispatcher
    rows = dispatcher.store.dead_letters(sink) if dispatcher is not None else []
    if cli.json:
        cli.print_json(rows)
        return
    table = Table("sink", "seq", "uid", "attempts", "error", title="dead letters")
    for row in rows:
        table.add_row(row["sink"], str(row["seq"]), row["uid"], str(row["attempts"]), row["error"])
    cli.out.print(table)
