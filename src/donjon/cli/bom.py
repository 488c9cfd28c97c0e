"""``donjon bom``: a CycloneDX 1.6 ML-BOM of a model and its training provenance."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated

import typer

from donjon.cli.outputs import Force, refuse_overwrite
from donjon.cli.sign import require
from donjon.cli.state import state


def bom(
    ctx: typer.Context,
    model: Annotated[Path, typer.Argument(help="Model folder or file.")],
    provenance: Annotated[
        Path | None,
        typer.Option("--provenance", help="Provenance file (default <MODEL>.provenance.json)."),
    ] = None,
    builder_key: Annotated[
        list[Path] | None,
        typer.Option("--builder-key", help="Verify the provenance with this builder key."),
    ] = None,
    version: Annotated[
        str | None, typer.Option("--model-version", help="The model's version.")
    ] = None,
    ignore_paths: Annotated[
        list[str] | None,
        typer.Option("--ignore-paths", help="Paths to leave out (e.g. a signature inside)."),
    ] = None,
    output: Annotated[
        Path | None, typer.Option("--output", "-o", help="Write here instead of stdout.")
    ] = None,
    force: Force = False,
) -> None:
    """Write the ML-BOM (CycloneDX 1.6 JSON): model, datasets, model card."""
    require("cyclonedx", "provenance")
    from donjon.provenance.attest import provenance_path
    from donjon.provenance.bom import build_bom, write_bom
    from donjon.provenance.hashing import HashOptions, build_manifest
    from donjon.provenance.keys import load_public_key
    from donjon.provenance.slsa import Provenance, read_provenance, verify_provenance

    cli = state(ctx)
    refuse_overwrite(output, force, "--output")
    if not model.exists():
        raise typer.BadParameter(f"{model} does not exist", param_hint="MODEL")
    manifest = build_manifest(model, HashOptions(ignore_paths=tuple(ignore_paths or ())))
    path = provenance or provenance_path(model)
    doc: Provenance | None = None
    verified = False
    if path.is_file():
        if builder_key:
            keys = [load_public_key(k) for k in builder_key]
            doc = verify_provenance(path, keys, subject_digest=manifest.subject_digest).provenance
            verified = True
        else:
            doc = read_provenance(path)
            cli.info("provenance read without verification (pass --builder-key to verify it)")
    elif provenance is not None:
        raise typer.BadParameter(f"{provenance} does not exist", param_hint="--provenance")
    document = build_bom(manifest, doc, version=version, provenance_verified=verified)
    if output is not None:
        write_bom(document, output)
        cli.info(f"ML-BOM written to {output}")
    else:
        cli.out.file.write(json.dumps(document, indent=2) + "\n")
