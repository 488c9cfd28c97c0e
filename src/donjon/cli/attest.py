"""``donjon attest``: show and verify SLSA provenance of training runs."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated, Any

import typer

from donjon.cli.sign import require
from donjon.cli.state import ExitCode, state

app = typer.Typer(help="Show and verify training-run provenance.", no_args_is_help=True)


def _summary(provenance: Any) -> dict[str, Any]:
    return {
        "name": provenance.name,
        "builder": provenance.builder,
        "subjects": provenance.subjects,
        "parameters": provenance.parameters,
        "metadata": provenance.metadata,
        "datasets": provenance.dependencies("dataset"),
        "source": provenance.dependencies("source"),
        "metrics": provenance.metrics(),
    }


@app.command("show")
def show(
    ctx: typer.Context,
    path: Annotated[Path, typer.Argument(help="A provenance file (<model>.provenance.json).")],
) -> None:
    """Print what a provenance file claims (its signature is NOT checked: use verify)."""
    require("cryptography", "sign")
    from donjon.provenance.slsa import read_provenance

    cli = state(ctx)
    if not path.is_file():
        raise typer.BadParameter(f"{path} does not exist", param_hint="PATH")
    summary = _summary(read_provenance(path))
    if cli.json:
        cli.print_json(summary)
        return
    cli.info("not verified: run `donjon attest verify` to check the signature")
    cli.out.print(json.dumps(summary, indent=2), markup=False)


@app.command("verify")
def verify(
    ctx: typer.Context,
    path: Annotated[Path, typer.Argument(help="A provenance file.")],
    public_key: Annotated[
        list[Path], typer.Option("--public-key", help="A trusted builder key (repeatable).")
    ],
    model: Annotated[
        Path | None, typer.Option("--model", help="Check the provenance is about this model.")
    ] = None,
    ignore_paths: Annotated[
        list[str] | None,
        typer.Option("--ignore-paths", help="Model paths to leave out (e.g. a signature)."),
    ] = None,
) -> int:
    """Verify the DSSE signature with a builder key, and that its subject is MODEL."""
    from donjon.core.events import SecurityEvent
    from donjon.core.findings import Finding, Subject

    require("cryptography", "sign")
    from donjon.provenance import events
    from donjon.provenance.errors import SignatureMismatch
    from donjon.provenance.hashing import HashOptions, build_manifest
    from donjon.provenance.keys import load_public_key
    from donjon.provenance.rules import PROVENANCE_INVALID
    from donjon.provenance.slsa import verify_provenance

    cli = state(ctx)
    if not path.is_file():
        raise typer.BadParameter(f"{path} does not exist", param_hint="PATH")
    keys = [load_public_key(p) for p in public_key]
    options = HashOptions(ignore_paths=tuple(ignore_paths or ()))
    digest = build_manifest(model, options).subject_digest if model is not None else None
    try:
        verified = verify_provenance(path, keys, subject_digest=digest)
    except SignatureMismatch as e:
        for problem in e.problems:
            finding = Finding(
                PROVENANCE_INVALID,
                Subject(model=str(model or path)),
                problem.message,
                evidence={"reason": problem.code, "provenance": str(path)},
            )
            cli.app.bus.publish(SecurityEvent.of_finding(finding, events.SOURCE))
        if cli.json:
            cli.print_json({"verified": False, "problems": [p.message for p in e.problems]})
        else:
            for problem in e.problems:
                cli.err.print(f"Verification failed: {problem}", soft_wrap=True, markup=False)
        return ExitCode.FINDINGS
    summary = _summary(verified.provenance)
    cli.app.bus.publish(
        events.activity(
            "attest.verify",
            f"provenance {path.name} verified (builder {verified.provenance.builder})",
            ok=True,
            provenance=str(path),
        )
    )
    if cli.json:
        cli.print_json({"verified": True, **summary})
    else:
        cli.out.print(
            f"Verification succeeded: {path} (builder {summary['builder']}, "
            f"run {summary['name']!r})",
            markup=False,
        )
    return ExitCode.OK
