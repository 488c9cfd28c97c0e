"""``donjon models push|pull|promote|list|attach|show``: models in the vault."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from donjon.cli.outputs import Force, download_target
from donjon.cli.progress import byte_progress
from donjon.cli.state import ExitCode, state
from donjon.cli.vault_session import (
    list_names,
    open_client,
    parse_metadata,
    show_record,
)
from donjon.errors import Conflict

app = typer.Typer(help="Push, pull, promote and list models in the vault.", no_args_is_help=True)

Server = Annotated[str | None, typer.Option("--server", help="Vault URL (default: login's).")]


@app.command("push")
def push(
    ctx: typer.Context,
    name: Annotated[str, typer.Argument(help="Model name, e.g. fraud-clf.")],
    file: Annotated[Path, typer.Argument(exists=True, dir_okay=False, readable=True)],
    lineage: Annotated[
        list[str] | None,
        typer.Option("--lineage", "-l", help="A training dataset version, 'fraud/tx@3'."),
    ] = None,
    metadata: Annotated[str | None, typer.Option("--metadata", help="A JSON object.")] = None,
    media_type: Annotated[str, typer.Option("--media-type")] = "application/octet-stream",
    server: Server = None,
) -> int:
    """Upload FILE as the next version of model NAME (the server scans it)."""
    cli = state(ctx)
    with (
        open_client(cli, server) as client,
        byte_progress(cli, f"pushing {file.name}", file.stat().st_size) as advance,
    ):
        record = client.push(
            "model",
            name,
            file,
            metadata=parse_metadata(metadata),
            lineage=lineage or (),
            media_type=media_type,
            progress=advance,
        )
    show_record(cli, "pushed", record)
    if record["status"] == "quarantined":
        cli.err.print(f"quarantined: {record['status_reason']}")
        return ExitCode.FINDINGS
    return ExitCode.OK


@app.command("pull")
def pull(
    ctx: typer.Context,
    name: Annotated[str, typer.Argument(help="Model name.")],
    dest: Annotated[
        str, typer.Argument(help="The file to write (its folder is created).", show_default=False)
    ],
    version: Annotated[int | None, typer.Option("--version", "-v", min=1)] = None,
    server: Server = None,
    force: Force = False,
) -> None:
    """Download a model version (the latest by default); its digest is checked."""
    cli = state(ctx)
    target = download_target(dest, force)
    with (
        open_client(cli, server) as client,
        byte_progress(cli, f"pulling {name}", None) as advance,
    ):
        record = client.pull("model", name, target, version, progress=advance)
    show_record(cli, "pulled", record)


@app.command("promote")
def promote(
    ctx: typer.Context,
    name: Annotated[str, typer.Argument(help="Model name.")],
    version: Annotated[int, typer.Argument(min=1)],
    stage: Annotated[str, typer.Argument(help="dev, staging or prod.")],
    server: Server = None,
) -> int:
    """Run the stage's admission gates and move the version; exit 1 if a gate refuses."""
    cli = state(ctx)
    if stage not in ("dev", "staging", "prod"):
        raise typer.BadParameter("use dev, staging or prod", param_hint="STAGE")
    with open_client(cli, server) as client:
        try:
            record = client.promote(name, version, stage)
        except Conflict as e:
            cli.err.print(f"not promoted: {e}")
            return ExitCode.FINDINGS
    show_record(cli, "promoted", record)
    return ExitCode.OK


@app.command("list")
def list_(
    ctx: typer.Context,
    prefix: Annotated[str, typer.Argument(help="A name or a folder of names.")] = "",
    versions: Annotated[
        bool, typer.Option("--versions", help="List the versions of the model PREFIX.")
    ] = False,
    server: Server = None,
) -> None:
    """List model names (or, with --versions, one model's versions and stages)."""
    list_names(state(ctx), server, "model", prefix, versions)


@app.command("attach")
def attach(
    ctx: typer.Context,
    name: Annotated[str, typer.Argument(help="Model name.")],
    version: Annotated[int, typer.Argument(min=1)],
    signature: Annotated[
        Path | None,
        typer.Option(
            "--signature", exists=True, dir_okay=False, help="An OMS signature bundle (sign)."
        ),
    ] = None,
    provenance: Annotated[
        Path | None,
        typer.Option(
            "--provenance", exists=True, dir_okay=False, help="A SLSA provenance (attest)."
        ),
    ] = None,
    server: Server = None,
) -> None:
    """Attach a signature and/or a provenance to model NAME@VERSION (checked at promotion)."""
    cli = state(ctx)
    documents = [
        (kind, path)
        for kind, path in (("signature", signature), ("provenance", provenance))
        if path is not None
    ]
    if not documents:
        raise typer.BadParameter("give --signature and/or --provenance")
    attached = []
    with open_client(cli, server) as client:
        for kind, path in documents:
            attached.append(client.attach(name, version, kind, path))
    if cli.json:
        cli.print_json(attached)
        return
    for record in attached:
        cli.out.print(f"attached {record['kind']} {record['digest']} to {name}@{version}")


@app.command("show")
def show(
    ctx: typer.Context,
    name: Annotated[str, typer.Argument(help="Model name.")],
    version: Annotated[int | None, typer.Option("--version", "-v", min=1)] = None,
    server: Server = None,
) -> None:
    """One model version (the latest by default): its record, attachments and gate results."""
    cli = state(ctx)
    with open_client(cli, server) as client:
        record = client.get("model", name, version)
        number = int(record["version"])
        attachments = client.attachments(name, number)
        gates = client.gates("model", name, number)
    if cli.json:
        cli.print_json({**record, "attachments": attachments, "gates": gates})
        return
    show_record(cli, "found", record)
    for found in attachments:
        summary = found.get("summary") or {}
        about = summary.get("subject_digest") or ", ".join(summary.get("subjects") or [])
        cli.out.print(
            f"  {found['kind']:<10} {found['digest']} by {found['created_by']}"
            + (f" (about {about})" if about else "")
        )
    for gate in gates:
        verdict = "passed" if gate["passed"] else "FAILED"
        cli.out.print(
            f"  gate {gate['gate']} -> {gate['target']}: {verdict}: {'; '.join(gate['reasons'])}"
        )
