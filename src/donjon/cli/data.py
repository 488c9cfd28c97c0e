"""``donjon data``: manifest, diff, filter and check datasets."""

from __future__ import annotations

import enum
import json
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

from donjon.cli.outputs import Force, refuse_overwrite
from donjon.cli.progress import wanted
from donjon.cli.state import CliState, ExitCode, state
from donjon.core.events import SecurityEvent
from donjon.core.severity import Severity

if TYPE_CHECKING:
    from donjon.core.findings import Finding

app = typer.Typer(
    help="Dataset manifests, diffs, provenance filtering and poisoning checks.",
    no_args_is_help=True,
)

FailOn = Annotated[
    str,
    typer.Option(
        "--fail-on",
        help="Exit 1 when a finding is at or above this severity: info, low, medium, high "
        "or critical.",
        metavar="SEVERITY",
    ),
]


def _severity(text: str) -> Severity:
    try:
        return Severity.parse(text)
    except ValueError as e:
        raise typer.BadParameter(str(e), param_hint="--fail-on") from None


@contextmanager
def progress_bar(cli: CliState, what: str, total: int | None) -> Iterator[Callable[[int], None]]:
    """A Rich progress bar on stderr (none in JSON or quiet mode); yields ``advance(n)``."""
    if not wanted(cli):  # a terminal only; never with --quiet or JSON
        yield lambda n: None
        return
    columns = (TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn())
    with Progress(*columns, TimeElapsedColumn(), console=cli.err, transient=True) as bar:
        task = bar.add_task(what, total=total)
        yield lambda n: bar.advance(task, n)


def publish(cli: CliState, findings: tuple[Finding, ...] | list[Finding]) -> None:
    for finding in findings:
        cli.app.bus.publish(SecurityEvent.of_finding(finding, "data"))


def exit_code(findings: tuple[Finding, ...] | list[Finding], floor: Severity) -> int:
    return ExitCode.FINDINGS if any(f.level >= floor for f in findings) else ExitCode.OK


@app.command("manifest")
def manifest_cmd(
    ctx: typer.Context,
    data: Annotated[Path, typer.Argument(help="A folder, .csv, .parquet or .npz file.")],
    out: Annotated[
        Path | None, typer.Option("--out", "-o", help="Manifest file (default DATA.manifest.json).")
    ] = None,
    label_column: Annotated[
        str | None, typer.Option("--label-column", help="The label column (tables).")
    ] = None,
    id_column: Annotated[
        str | None, typer.Option("--id-column", help="A unique record id column (tables).")
    ] = None,
    force: Force = False,
) -> None:
    """Hash every file or record of DATA into a Merkle manifest."""
    from donjon.data.manifest import build_manifest

    cli = state(ctx)
    target = out or data.with_name(data.name + ".manifest.json")
    records = target.with_name(target.name.removesuffix(".json") + ".records.parquet")
    refuse_overwrite([target, records], force, "--out", remove=True)
    with progress_bar(cli, f"manifest {data.name}", None) as advance:
        manifest = build_manifest(
            data, target, label_column=label_column, id_column=id_column, progress=advance
        )
    if cli.json:
        cli.print_json(
            {"manifest": str(target), **manifest.to_dict()} | {"files": len(manifest.files)}
        )
        return
    cli.out.print(f"{manifest.kind}: {manifest.count}  root: {manifest.root}")
    cli.out.print(f"manifest: {target}")
    if manifest.records_file:
        cli.out.print(f"record table: {target.with_name(manifest.records_file)}")


@app.command("verify")
def verify_cmd(
    ctx: typer.Context,
    manifest: Annotated[Path, typer.Argument(help="A manifest written by `donjon data manifest`.")],
    data: Annotated[
        Path | None,
        typer.Option(
            "--data",
            help="Rehash this file or folder instead of the data the manifest names: a copy "
            "pulled from the vault or moved elsewhere.",
        ),
    ] = None,
) -> None:
    """Rehash the data a manifest names; exit 1 when it no longer matches."""
    from donjon.data.diffs import verify_manifest
    from donjon.data.manifest import load_manifest

    cli = state(ctx)
    loaded = load_manifest(manifest)
    with progress_bar(cli, "verify", loaded.count) as advance:
        findings = verify_manifest(loaded, advance, data)
    publish(cli, findings)
    if cli.json:
        cli.print_json(
            {
                "verified": not findings,
                "root": loaded.root,
                "findings": [f.message for f in findings],
            }
        )
    else:
        for finding in findings:
            cli.out.print(f"[red]TAMPERED[/red] {finding.message}")
        if not findings:
            cli.out.print(f"verified: {data or loaded.source} matches {loaded.root}")
    raise typer.Exit(ExitCode.FINDINGS if findings else ExitCode.OK)


@app.command("diff")
def diff_cmd(
    ctx: typer.Context,
    old: Annotated[Path, typer.Argument(help="Old version: a manifest (.json) or the data.")],
    new: Annotated[Path, typer.Argument(help="New version: a manifest (.json) or the data.")],
    label_column: Annotated[
        str | None, typer.Option("--label-column", help="The label column (data sides).")
    ] = None,
    id_column: Annotated[
        str | None, typer.Option("--id-column", help="A unique id column (data sides).")
    ] = None,
    verify: Annotated[
        bool, typer.Option("--verify/--no-verify", help="Rehash data behind manifest sides.")
    ] = True,
    fail_on: FailOn = "high",
) -> None:
    """Added, removed, changed and relabelled records; schema changes; tampering."""
    from donjon.data.diffs import diff
    from donjon.data.report import render_diff_text

    cli = state(ctx)
    floor = _severity(fail_on)
    with progress_bar(cli, "diff", None) as advance:
        report = diff(
            old,
            new,
            label_column=label_column,
            id_column=id_column,
            verify=verify,
            progress=advance,
        )
    publish(cli, report.findings)
    if cli.json:
        data = report.to_dict()
        data["findings"] = [_finding_json(f) for f in report.findings]
        cli.print_json(data)
    else:
        cli.out.print(render_diff_text(report))
    raise typer.Exit(exit_code(report.findings, floor))


def _finding_json(finding: Finding) -> dict[str, object]:
    return {
        "rule": finding.rule.id,
        "severity": finding.level.label,
        "message": finding.message,
        "atlas": list(finding.rule.atlas),
        "owasp": list(finding.rule.owasp),
        "fingerprint": finding.fingerprint,
    }


@app.command("filter")
def filter_cmd(
    ctx: typer.Context,
    data: Annotated[Path, typer.Argument(help="A .csv, .parquet or .npz data set.")],
    policy: Annotated[
        Path, typer.Option("--policy", "-p", help="Source policy (TOML, a \\[sources] table).")
    ],
    out_dir: Annotated[
        Path, typer.Option("--out-dir", "-o", help="Where admitted.* and quarantine.* go.")
    ],
    source_column: Annotated[
        str | None, typer.Option("--source-column", help="Column holding each record's source.")
    ] = None,
    sources: Annotated[
        Path | None,
        typer.Option("--sources", help="Sidecar CSV with 'row' (or 'id') and 'source' columns."),
    ] = None,
    id_column: Annotated[
        str | None, typer.Option("--id-column", help="Id column to join the sidecar on.")
    ] = None,
    fail_on: FailOn = "high",
    force: Force = False,
) -> None:
    """Split DATA into admitted and quarantined records by source (nothing is deleted)."""
    from donjon.data.sources import SourcePolicy, filter_dataset

    cli = state(ctx)
    floor = _severity(fail_on)
    suffix = ".npz" if data.suffix.lower() == ".npz" else data.suffix.lower()
    names = [f"admitted{suffix}", f"quarantine{suffix}", "filter-report.json"]
    outputs = [out_dir / n for n in names]  # the folder is made once the input is good
    refuse_overwrite(outputs, force, "--out-dir", remove=True, make_parents=False)
    result = filter_dataset(
        data,
        out_dir,
        SourcePolicy.load(policy),
        source_column=source_column,
        sources_file=sources,
        id_column=id_column,
    )
    publish(cli, result.findings)
    if cli.json:
        cli.print_json(result.to_dict())
    else:
        summary = result.to_dict()
        cli.out.print(f"admitted: {summary['admitted']}  quarantined: {summary['quarantined']}")
        for reason, count in summary["reasons"].items():
            cli.out.print(f"  {count:>7}  {reason}")
        for name, path in result.outputs.items():
            cli.out.print(f"{name}: {path}")
    raise typer.Exit(exit_code(result.findings, floor))


class ReportFormat(enum.StrEnum):
    TEXT = "text"
    JSON = "json"
    HTML = "html"


@app.command("check")
def check_cmd(
    ctx: typer.Context,
    data: Annotated[Path, typer.Argument(help="A .csv, .parquet or .npz (arrays X, y) file.")],
    label_column: Annotated[
        str | None, typer.Option("--label-column", "-l", help="The label column (npz: 'y').")
    ] = None,
    exclude: Annotated[
        list[str] | None,
        typer.Option("--exclude", help="Columns that are not features (ids, sources)."),
    ] = None,
    baseline: Annotated[
        Path | None,
        typer.Option("--baseline", help="An earlier version: test features and classes shift."),
    ] = None,
    image_shape: Annotated[
        str | None,
        typer.Option(
            "--image-shape", help="Record shape for the trigger search, e.g. 28x28 or 32x32x3."
        ),
    ] = None,
    detector: Annotated[
        list[str] | None,
        typer.Option(
            "--detector",
            help="Run only this detector (repeatable): label_issues, trigger_search, "
            "near_duplicates, spectral_signature, activation_clustering or outliers.",
            metavar="NAME",
        ),
    ] = None,
    output_format: Annotated[
        ReportFormat | None,
        typer.Option("--format", "-f", help="Report format (default: the global --format)."),
    ] = None,
    report: Annotated[
        ReportFormat | None,
        typer.Option("--report", hidden=True, help="Deprecated: use --format."),
    ] = None,
    out: Annotated[
        Path | None, typer.Option("--out", "-o", help="Write the report to this file.")
    ] = None,
    dask_scheduler: Annotated[
        str | None,
        typer.Option("--dask-scheduler", help="Run the detectors on this Dask scheduler."),
    ] = None,
    push: Annotated[
        str | None,
        typer.Option(
            "--push",
            help="Attach the report to dataset version NAME[@VERSION] in the vault (default "
            "the latest); the vault refuses it unless DATA is that version's bytes.",
            metavar="NAME[@VERSION]",
        ),
    ] = None,
    server: Annotated[
        str | None, typer.Option("--server", help="Vault URL for --push (default: login's).")
    ] = None,
    fail_on: FailOn = "high",
    force: Force = False,
) -> None:
    """Look for label manipulation, backdoor triggers, injected duplicates and shift."""
    from donjon.data.checks import DETECTORS, check
    from donjon.data.report import render_check_html, render_check_text

    cli = state(ctx)
    floor = _severity(fail_on)
    shape = _shape(image_shape)
    refuse_overwrite(out, force, "--out")
    chosen = detector or list(DETECTORS)
    with progress_bar(cli, f"check {data.name}", len(chosen)) as advance:
        result = check(
            data,
            label_column=label_column,
            exclude=tuple(exclude or ()),
            baseline=baseline,
            image_shape=shape,
            detectors=chosen,
            dask=dask_scheduler,
            progress=advance,
        )
    publish(cli, result.findings)
    if report is not None:
        cli.info("--report is deprecated: use --format (as every other command)")
    kind = output_format or report or (ReportFormat.JSON if cli.json else ReportFormat.TEXT)
    if kind is ReportFormat.JSON:
        text = json.dumps(result.to_dict(), indent=2, default=str) + "\n"
    elif kind is ReportFormat.HTML:
        text = render_check_html(result)
    else:
        text = render_check_text(result) + "\n"
    if (kind is not ReportFormat.TEXT or out is not None) and not cli.quiet:
        for note in result.notes:  # the text report lists them; other formats only carry them
            cli.err.print(f"note: {note}", markup=False)
    if out is not None:
        out.write_text(text, encoding="utf-8")
        cli.info(f"report written to {out}")
    else:
        cli.out.file.write(text)
    if push is not None:
        push_report(cli, data, result.to_dict(), push, server)
    raise typer.Exit(exit_code(result.findings, floor))


def push_report(
    cli: CliState, data: Path, report: dict[str, object], target: str, server: str | None
) -> None:
    """Attach a check report to dataset version ``target`` (NAME or NAME@VERSION)."""
    from donjon.cli.vault_session import open_client
    from donjon.data.documents import check_document, file_digest

    name, _, number = target.partition("@")
    if number and not number.isdigit():
        raise typer.BadParameter("use NAME or NAME@VERSION", param_hint="--push")
    document = check_document(report, file_digest(data))
    body = json.dumps(document, separators=(",", ":"), default=str).encode()
    with open_client(cli, server) as client:
        version = int(number) if number else int(client.get("dataset", name)["version"])
        attached = client.attach(name, version, "check", data=body, of="dataset")
    cli.info(f"check report attached to {name}@{version} ({attached['digest']})")


def _shape(text: str | None) -> tuple[int, ...] | None:
    if text is None:
        return None
    try:
        shape = tuple(int(p) for p in text.lower().split("x"))
    except ValueError:
        raise typer.BadParameter(
            "use HxW or HxWxC, e.g. 28x28", param_hint="--image-shape"
        ) from None
    if len(shape) not in (2, 3) or min(shape) < 1:
        raise typer.BadParameter("use HxW or HxWxC, e.g. 28x28", param_hint="--image-shape")
    return shape
