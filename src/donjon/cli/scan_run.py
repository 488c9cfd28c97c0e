"""Run a scan for ``donjon scan`` and render its report (no Typer: the fast path uses it too)."""

from __future__ import annotations

import enum
import sys
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from donjon.cli.paths import ensure_parent
from donjon.cli.state import CliState, ExitCode
from donjon.core.severity import Severity

if TYPE_CHECKING:
    from donjon.cli.scan_hf import HubTargets
    from donjon.core.findings import Finding
    from donjon.scan.policy import ScanPolicy
    from donjon.scan.report import FileReport, ScanReport

_STYLE = {"critical": "bold red", "high": "red", "medium": "yellow", "low": "cyan", "info": "dim"}


class ScanFormat(enum.StrEnum):
    TEXT = "text"
    JSON = "json"
    SARIF = "sarif"


def run_scan(
    cli: CliState,
    paths: Sequence[Path] | Sequence[str],
    *,
    policy: ScanPolicy,
    threshold: Severity,
    record_clean: bool,
    fmt: ScanFormat,
    output: Path | None,
    workers: int | None,
    force: bool = False,
    hub: HubTargets | None = None,
) -> int:
    """Scan ``paths``, publish findings (building the app on the first), render; the exit code.

    Each file's findings go to the bus in one journal transaction before the
    next file is reported; ``scan.completed`` follows a scan with a finding or
    an error, or any scan when ``record_clean``.
    """
    from donjon.errors import ScanError
    from donjon.scan import scan_path

    if output is not None and output.exists() and not force:
        raise ScanError(f"{output} already exists; pass --force to overwrite it")
    if output is not None:
        ensure_parent(output)

    def file_done(done: FileReport) -> None:
        if done.findings:  # the app (database, ledger, outbox) is built on the first event
            from donjon.core.events import SecurityEvent

            if hub is not None:  # hf:// names for the snapshot files of a Hugging Face cache
                done = hub.rename_file(done)

            # one journal transaction per file: its findings are stored together
            cli.app.bus.publish_all(SecurityEvent.of_finding(f, "scan") for f in done.findings)
        bar.advance(task)

    progress = _progress(cli, fmt)
    with progress as bar:
        task = bar.add_task("scanning", total=None)
        report = scan_path(*paths, policy=policy, workers=workers, on_file=file_done)
    if hub is not None:
        report = hub.rename(report)
    if not report.files:
        given = ", ".join(str(p) for p in paths)
        raise ScanError(
            f"nothing scannable in {given}: no regular file (an empty folder, a device or a "
            "pipe is not a model file)"
        )
    if report.findings or report.errors or record_clean:
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
    if cli.quiet or fmt is not ScanFormat.TEXT or not cli.err_is_terminal():
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
    import json

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
        sys.stdout.write(text)  # as print_json: no console for machine output


def _render_text(cli: CliState, report: ScanReport) -> None:
    if cli.out_is_terminal():
        _render_table(cli, report)
    else:  # a pipe, a file, a CI log: the same rows and summary as lines, and no Rich to load
        _render_lines(report, cli.out_file())
    if cli.err_is_terminal():
        for error in report.errors:
            cli.err.print(f"[red]error:[/] {error}")
    else:
        cli.err_file().writelines(f"error: {_plain(error)}\n" for error in report.errors)


def _rows(report: ScanReport) -> Iterator[tuple[Finding, str]]:
    for file_report in report.files:
        for f in sorted(file_report.findings, key=lambda f: -f.level):
            yield f, file_report.path


def _summary(report: ScanReport) -> dict[str, str]:
    return {
        "files": str(len(report.files)),
        "findings": str(len(report.findings)),
        **{label: str(n) for label, n in report.counts().items()},
        "errors": str(len(report.errors)),
        "seconds": f"{report.seconds:.2f}",
    }


def _render_table(cli: CliState, report: ScanReport) -> None:
    from rich.markup import escape
    from rich.table import Table

    table = Table("severity", "rule", "file", "finding", title="Findings", expand=False)
    table.columns[2].overflow = "fold"
    for f, path in _rows(report):
        where = f" [dim]({f.location})[/]" if str(f.location) else ""
        style = _STYLE[f.level.label]
        table.add_row(f"[{style}]{f.level.label}[/]", f.rule.id, path, escape(f.message) + where)
    if report.findings:
        cli.out.print(table)
    summary = _summary(report)
    table = Table(*summary, title="Summary")
    table.add_row(*summary.values())
    cli.out.print(table)


def _render_lines(report: ScanReport, out: Any) -> None:
    """One line per finding (severity, rule, file, finding), then ``Summary: name value, ...``.

    Control characters in paths and messages are escaped: a hostile file name
    cannot forge a line of the report."""
    lines = []
    if report.findings:
        lines.append("Findings: severity, rule, file, finding")
        for f, path in _rows(report):
            where = f" ({f.location})" if str(f.location) else ""
            lines.append(
                f"{f.level.label:<8}  {f.rule.id}  {_plain(path)}  {_plain(f.message + where)}"
            )
    summary = ", ".join(f"{name} {value}" for name, value in _summary(report).items())
    lines.append(f"Summary: {summary}")
    out.write("\n".join(lines) + "\n")
    out.flush()


# C0 controls and DEL, written as escapes (a newline in a file name stays on its line).
_CONTROLS = {c: f"\\x{c:02x}" for c in (*range(32), 127)}


def _plain(text: str) -> str:
    return text.translate(_CONTROLS)
