"""``donjon monitor``: baselines of healthy behaviour and alerts, over recorded events."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer
from rich.table import Table

from donjon.cli.state import ExitCode, state
from donjon.core.severity import Severity
from donjon.errors import InputError

app = typer.Typer(help="Watch metrics against their learnt baselines.", invoke_without_command=True)


@app.callback()
def monitor(
    ctx: typer.Context,
    path: Annotated[
        Path | None, typer.Option("--file", help="Event file (default: the settings').")
    ] = None,
    bucket: Annotated[
        int | None, typer.Option("--bucket", min=1, help="Bucket seconds (default: settings).")
    ] = None,
    publish: Annotated[
        bool, typer.Option("--publish/--no-publish", help="Publish alerts as security events.")
    ] = True,
    fail_on: Annotated[
        str, typer.Option("--fail-on", help="Exit 1 on an alert at or above this severity.")
    ] = "low",
) -> None:
    """Learn each watched metric's band and alert when it leaves it or trends toward it."""
    from donjon.monitor.baseline import DEFAULT_RULES, AlertRule, evaluate
    from donjon.monitor.series import build_series
    from donjon.soc.jsonl import read_all_events

    cli = state(ctx)
    try:
        floor = Severity.parse(fail_on)
    except ValueError as bad:
        raise typer.BadParameter(str(bad), param_hint="--fail-on") from None
    settings = cli.settings
    source = path or settings.events_path
    if not source.exists():
        raise InputError(f"event file {source} does not exist")
    rules = [
        AlertRule(
            r.metric, Severity.parse(r.severity), r.k, r.min_width, r.window, r.horizon,
            r.trend_points, r.upper_only, r.absolute_high, r.count, r.lower_only,
            r.threshold_only,
        )
        for r in settings.monitor.rules
    ] or list(DEFAULT_RULES)  # fmt: skip
    series = build_series(read_all_events(source), bucket or settings.monitor.bucket_seconds)
    alerts = evaluate(series, rules)
    events = [a.to_event() for a in alerts]
    if publish:
        for event in events:
            cli.app.bus.publish(event)
    if cli.json:
        cli.print_json({"metrics": sorted(series), "alerts": [e.to_dict() for e in events]})
    else:
        table = Table("time", "severity", "type", "metric", "message", title="alerts")
        for a, e in zip(alerts, events, strict=True):
            table.add_row(e.time.isoformat(), e.severity.label, a.kind, a.metric, e.message)
        cli.out.print(table)
        cli.info(f"{len(series)} metrics watched, {len(alerts)} alerts")
    if any(e.severity >= floor for e in events):
        raise typer.Exit(ExitCode.FINDINGS)
