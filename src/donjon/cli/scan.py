"""``donjon scan``: scan model files and folders; ``donjon samples``: write a sample corpus."""

from __future__ import annotations

import enum
import json
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

from donjon.cli.state import CliState, ExitCode, state
from donjon.core.severity import Severity
from donjon.errors import ScanError

if TYPE_CHECKING:
    from donjon.scan.report import FileReport, ScanReport

_STYLE = {"critical": "bold red", "high": "red", "medium": "yellow", "low": "cyan", "info": "dim"}


class ScanFormat(enum.StrEnum):
    TEXT = "text"
    JSON = "json"
    SARIF = "sarif"


def scan(
    ctx: typer.Context,
    paths: Annotated[list[Path], typer.Argument(help="Model files or folders (every file).")],
    fail_on: Annotated[
        str | None,
        typer.Option("--fail-on", help="Exit 1 on a finding at or above this severity."),
    ] = None,
    output_format: Annotated[
        ScanFormat | None,
        typer.Option("--format", "-f", help="text, json or sarif (default: the global format)."),
    ] = None,
    output: Annotated[
        Path | None, typer.Option("--output", "-o", help="Write the report to this file.")
    ] = None,
    workers: Annotated[
        int | None, typer.Option("--workers", min=1, help="Processes for folder scans.")
    ] = None,
    allow: Annotated[
        list[str] | None, typer.Option("--allow", help="Extra allowed callable (repeatable).")
    ] = None,
) -> int:
    """Scan model files without loading them; exit 1 on findings at or above --fail-on."""
    from donjon.app.scan import scan_policy
    from donjon.scan import scan_path

    cli = state(ctx)
    settings = cli.settings
    try:
        threshold = Severity.parse(fail_on or settings.scan.fail_on)
    except ValueError as e:
        raise typer.BadParameter(str(e), param_hint="--fail-on") from None
    fmt = output_format or ScanFormat(cli.format.value)
    policy = scan_policy(settings).with_extra(allow=allow or ())

    def file_done(done: FileReport) -> None:
        if done.findings:  # the app (database, ledger, outbox) is built on the first event
            from donjon.core.events import SecurityEvent

            # one journal transaction per file: its findings are stored together
            cli.app.bus.publish_all(SecurityEvent.of_finding(f, "scan") for f in done.findings)
        bar.advance(task)

    progress = _progress(cli, fmt)
    with progress as bar:
        task = bar.add_task("scanning", total=None)
        report = scan_path(*paths, policy=policy, workers=workers, on_file=file_done)
    if report.findings or report.errors or settings.scan.record_clean:
        _publish_completed(cli, report, threshold)
    _render(cli, report, fmt, output)
    if report.errors:
        return ExitCode.ERROR
    return ExitCode.FINDINGS if report.at_or_above(threshold) else ExitCode.OK


def _publish_completed(cli: CliState, report: ScanReport, threshold: Severity) -> None:
    """The ``scan.completed`` activity event: after every scan with a finding or an error,
    and after clean ones too with ``[scan] record_clean`` (a clean scan opens no database)."""
    from donjon.core.events import EventKind, Outcome, SecurityEvent

    worst = report.max_severity
    cli.app.bus.publish(
        SecurityEvent(
            kind=EventKind.ACTIVITY,
            source="scan",
            action="scan.completed",
            message=f"scanned {len(report.files)} files: {len(report.findings)} findings",
            severity=worst if worst is not None else Severity.INFO,
            outcome=Outcome.FAILURE if report.at_or_above(threshold) else Outcome.SUCCESS,
            attributes={"roots": list(report.roots), "counts": report.counts()},
        )
    )


class _NoProgress:
    def __enter__(self) -> _NoProgress:
        return self

    def __exit__(self, *exc: object) -> None:
        return None

    def add_task(self, *args: object, **kwargs: object) -> int:
        return 0

    def advance(self, task: int) -> None:
        return None


def _progress(cli: CliState, fmt: ScanFormat) -> _NoProgress:
    if cli.quiet or fmt is not ScanFormat.TEXT or not cli.err.is_terminal:
        return _NoProgress()
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TimeElapsedColumn

    bar = Progress(
        "[progress.description]{task.description}",
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        console=cli.err,
        transient=True,
    )
    return bar  # type: ignore[return-value]


def _render(cli: CliState, report: ScanReport, fmt: ScanFormat, output: Path | None) -> None:
    if fmt is ScanFormat.TEXT and output is None:
        _render_text(cli, report)
        return
    if fmt is ScanFormat.SARIF:
        from donjon.catalog import rule_registry
        from donjon.scan.sarif import to_sarif

        document = to_sarif(report, list(rule_registry()))
    else:
        document = report.to_dict()
    text = json.dumps(document, indent=2) + "\n"
    if output is not None:
        output.write_text(text, encoding="utf-8")
        cli.info(f"report written to {output}")
        if fmt is ScanFormat.TEXT:
            _render_text(cli, report)
    else:
        cli.out.file.write(text)


def _render_text(cli: CliState, report: ScanReport) -> None:
    from rich.markup import escape
    from rich.table import Table

    table = Table("severity", "rule", "file", "finding", title="Findings", expand=False)
    table.columns[2].overflow = "fold"
    for file_report in report.files:
        for f in sorted(file_report.findings, key=lambda f: -f.level):
            where = f" [dim]({f.location})[/]" if str(f.location) else ""
            style = _STYLE[f.level.label]
            table.add_row(
                f"[{style}]{f.level.label}[/]",
                f.rule.id,
                file_report.path,
                escape(f.message) + where,
            )
    if report.findings:
        cli.out.print(table)
    summary = Table("files", "findings", *report.counts(), "errors", "seconds", title="Summary")
    summary.add_row(
        str(len(report.files)),
        str(len(report.findings)),
        *(str(n) for n in report.counts().values()),
        str(len(report.errors)),
        f"{report.seconds:.2f}",
    )
    cli.out.print(summary)
    for error in report.errors:
        cli.err.print(f"[red]error:[/] {error}")


def samples(
    ctx: typer.Context,
    folder: Annotated[Path, typer.Argument(help="Where to write benign/ and malicious/.")],
) -> None:
    """Write a small corpus of benign and malicious model files (made without ML libraries)."""
    from donjon.scan.samples import write_samples

    cli = state(ctx)
    try:
        written = write_samples(folder)
    except OSError as e:
        raise ScanError(f"cannot write samples to {folder}: {e}") from e
    counts = {kind: len(paths) for kind, paths in written.items()}
    if cli.json:
        cli.print_json({"folder": str(folder), **counts})
    else:
        cli.out.print(
            f"wrote {counts['benign']} benign and {counts['malicious']} malicious samples "
            f"under {folder}"
        )
