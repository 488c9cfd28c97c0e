"""``donjon datasets push|pull|list``: datasets in the vault."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated, Any

import typer

from donjon.cli.outputs import Force, download_target
from donjon.cli.progress import byte_progress
from donjon.cli.state import CliState, state
from donjon.cli.vault_session import (
    list_names,
    open_client,
    parse_metadata,
    show_record,
)
from donjon.errors import DataError

app = typer.Typer(help="Push, pull and list datasets in the vault.", no_args_is_help=True)

TABLES = (".csv", ".tsv", ".parquet", ".pq", ".npz")
Server = Annotated[str | None, typer.Option("--server", help="Vault URL (default: login's).")]


@app.command("push")
def push(
    ctx: typer.Context,
    name: Annotated[str, typer.Argument(help="Dataset name, e.g. fraud/transactions.")],
    file: Annotated[Path, typer.Argument(exists=True, dir_okay=False, readable=True)],
    metadata: Annotated[str | None, typer.Option("--metadata", help="A JSON object.")] = None,
    media_type: Annotated[str, typer.Option("--media-type")] = "application/octet-stream",
    manifest: Annotated[
        bool,
        typer.Option(
            "--manifest/--no-manifest",
            help="Attach FILE's manifest with its record digests (a .csv, .parquet or .npz "
            "table; needs donjon\\[data]): the console shows it and diffs versions by it.",
        ),
    ] = True,
    label_column: Annotated[
        str | None, typer.Option("--label-column", help="The label column (manifest).")
    ] = None,
    id_column: Annotated[
        str | None, typer.Option("--id-column", help="A unique record id column (manifest).")
    ] = None,
    server: Server = None,
) -> None:
    """Upload FILE as the next version of dataset NAME, with its manifest when it is a table."""
    cli = state(ctx)
    document = (
        manifest_document(cli, file, label_column, id_column) if manifest else None
    )  # built first: a table that cannot be read stops the push before anything is stored
    with (
        open_client(cli, server) as client,
        byte_progress(cli, f"pushing {file.name}", file.stat().st_size) as advance,
    ):
        record = client.push(
            "dataset",
            name,
            file,
            metadata=parse_metadata(metadata),
            media_type=media_type,
            progress=advance,
        )
        if document is not None:
            body = json.dumps(document, separators=(",", ":")).encode()
            version = int(str(record["version"]))
            attached = client.attach(name, version, "manifest", data=body, of="dataset")
            record = {**record, "manifest": {"digest": attached["digest"], **attached["summary"]}}
    show_record(cli, "pushed", record)
    if document is not None:
        cli.info(f"manifest attached: {document['manifest']['count']} records")


def manifest_document(
    cli: CliState, file: Path, label_column: str | None, id_column: str | None
) -> dict[str, Any] | None:
    """FILE's manifest document, or None (with a note) when FILE is not a table."""
    if file.suffix.lower() not in TABLES:
        if label_column or id_column:
            raise typer.BadParameter(f"{file.name} is not a .csv, .parquet or .npz table")
        cli.info(f"no manifest attached: {file.name} is not a .csv, .parquet or .npz table")
        return None
    try:
        from donjon.data.documents import manifest_document_of
    except ImportError:
        cli.info("no manifest attached: pip install 'donjon[data]' to attach one")
        return None
    try:
        return manifest_document_of(file, label_column=label_column, id_column=id_column)
    except DataError as e:  # nothing is stored yet: say how to push it all the same
        raise DataError(f"{e} (no manifest can be built: --no-manifest pushes it without)") from e


@app.command("pull")
def pull(
    ctx: typer.Context,
    name: Annotated[str, typer.Argument(help="Dataset name.")],
    dest: Annotated[
        str, typer.Argument(help="The file to write (its folder is created).", show_default=False)
    ],
    version: Annotated[int | None, typer.Option("--version", "-v", min=1)] = None,
    server: Server = None,
    force: Force = False,
) -> None:
    """Download a dataset version (the latest by default); its digest is checked."""
    cli = state(ctx)
    target = download_target(dest, force)
    with (
        open_client(cli, server) as client,
        byte_progress(cli, f"pulling {name}", None) as advance,
    ):
        record = client.pull("dataset", name, target, version, progress=advance)
    show_record(cli, "pulled", record)


@app.command("list")
def list_(
    ctx: typer.Context,
    prefix: Annotated[str, typer.Argument(help="A name or a folder of names.")] = "",
    versions: Annotated[
        bool, typer.Option("--versions", help="List the versions of the dataset PREFIX.")
    ] = False,
    server: Server = None,
) -> None:
    """List dataset names (or, with --versions, one dataset's versions)."""
    list_names(state(ctx), server, "dataset", prefix, versions)
