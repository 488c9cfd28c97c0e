"""``donjon datasets push|pull|list``: datasets in the vault."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from donjon.cli.outputs import Force, refuse_overwrite
from donjon.cli.progress import byte_progress
from donjon.cli.state import state
from donjon.cli.vault_session import (
    list_names,
    open_client,
    parse_metadata,
    show_record,
)

app = typer.Typer(help="Push, pull and list datasets in the vault.", no_args_is_help=True)

Server = Annotated[str | None, typer.Option("--server", help="Vault URL (default: login's).")]


@app.command("push")
def push(
    ctx: typer.Context,
    name: Annotated[str, typer.Argument(help="Dataset name, e.g. fraud/transactions.")],
    file: Annotated[Path, typer.Argument(exists=True, dir_okay=False, readable=True)],
    metadata: Annotated[str | None, typer.Option("--metadata", help="A JSON object.")] = None,
    media_type: Annotated[str, typer.Option("--media-type")] = "application/octet-stream",
    server: Server = None,
) -> None:
    """Upload FILE as the next version of dataset NAME."""
    cli = state(ctx)
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
    show_record(cli, "pushed", record)


@app.command("pull")
def pull(
    ctx: typer.Context,
    name: Annotated[str, typer.Argument(help="Dataset name.")],
    dest: Annotated[Path, typer.Argument(dir_okay=False, help="Where to write it.")],
    version: Annotated[int | None, typer.Option("--version", "-v", min=1)] = None,
    server: Server = None,
    force: Force = False,
) -> None:
    """Download a dataset version (the latest by default); its digest is checked."""
    cli = state(ctx)
    refuse_overwrite(dest, force, "DEST")
    with (
        open_client(cli, server) as client,
        byte_progress(cli, f"pulling {name}", None) as advance,
    ):
        record = client.pull("dataset", name, dest, version, progress=advance)
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
