"""``donjon scan``: scan model files and folders; ``donjon samples``: write a sample corpus."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from donjon.cli.scan_run import ScanFormat, run_scan
from donjon.cli.state import state
from donjon.core.severity import Severity
from donjon.errors import ScanError

__all__ = ["ScanFormat", "samples", "scan"]


def scan(
    ctx: typer.Context,
    paths: Annotated[
        list[Path] | None,
        typer.Argument(
            help="Model files or folders (every file), or hf://ORG/NAME[@REVISION] "
            "(a Hugging Face repository, from the local cache).",
            show_default=False,
        ),
    ] = None,
    fail_on: Annotated[
        str | None,
        typer.Option(
            "--fail-on",
            help="Exit 1 on a finding at or above this severity: info, low, medium, high or "
            "critical.",
            metavar="SEVERITY",
        ),
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
    force: Annotated[
        bool, typer.Option("--force", help="Overwrite the --output file if it exists.")
    ] = False,
    hf_cache: Annotated[
        bool,
        typer.Option(
            "--hf-cache",
            help="Scan every snapshot of the Hugging Face cache (the default one, or the "
            "folders given as PATHS).",
        ),
    ] = False,
) -> int:
    """Scan model files without loading them; exit 1 on findings at or above --fail-on."""
    from donjon.app.scan import scan_policy

    cli = state(ctx)
    settings = cli.settings
    try:
        threshold = Severity.parse(fail_on or settings.scan.fail_on)
    except ValueError as e:
        raise typer.BadParameter(str(e), param_hint="--fail-on") from None
    given = paths or []
    targets: list[Path] | list[str] = given
    hub = None
    if hf_cache or any(str(p).startswith("hf:/") for p in given):
        from donjon.cli.scan_hf import hub_targets

        hub = hub_targets(given, hf_cache)
        targets = hub.paths
    elif not given:
        raise typer.BadParameter("give a file, a folder, hf://ORG/NAME or --hf-cache")
    return run_scan(
        cli,
        targets,
        hub=hub,
        policy=scan_policy(settings).with_extra(allow=allow or ()),
        threshold=threshold,
        record_clean=settings.scan.record_clean,
        fmt=output_format or ScanFormat(cli.format.value),
        output=output,
        workers=workers,
        force=force,
    )


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
