"""``donjon audit``: verify, export and checkpoint the tamper-evident ledger; its keys.

``verify`` exits 1 when the ledger was tampered with, naming the first bad
entry, and publishes a DJ-LED-001 finding; a clean ledger exits 0. Given a
witness file (``--witness`` or ``audit.witness_file``), it also checks the
ledger against every checkpoint kept there.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

from donjon.cli.paths import ensure_parent
from donjon.cli.state import ExitCode, state
from donjon.errors import InputError, VerificationError

if TYPE_CHECKING:
    from donjon.audit import Checkpoint, Ledger

app = typer.Typer(help="The tamper-evident audit ledger.", no_args_is_help=True)


def _ledger(ctx: typer.Context) -> Ledger:
    from donjon.app import build_ledger
    from donjon.cli.access_admin import sql_database

    return build_ledger(state(ctx).settings, sql_database(ctx))


def _witnessed(ctx: typer.Context, witness: Path | None) -> tuple[list[Checkpoint], str]:
    """Checkpoints from ``--witness``, else from ``audit.witness_file`` when it exists."""
    from donjon.audit import read_witness
    from donjon.errors import AuditError

    path = witness or state(ctx).settings.audit.witness_file
    if path is None or (witness is None and not path.exists()):
        return [], ""
    try:
        return read_witness(path), str(path)
    except AuditError as e:
        raise InputError(str(e)) from e


def _write_head(path: Path, checkpoint: Checkpoint) -> None:
    ensure_parent(path, "--head")
    path.write_text(json.dumps(checkpoint.to_dict(), indent=2) + "\n", encoding="utf-8")


def _read_head(path: Path) -> Checkpoint:
    from donjon.audit import Checkpoint

    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as e:
        raise InputError(f"cannot read head file {path}: {e}") from e
    if not isinstance(data, dict):
        raise InputError(f"head file {path} is not a JSON object")
    try:
        return Checkpoint.from_dict(data)
    except VerificationError as e:
        raise InputError(f"head file {path}: {e}") from e


@app.command("verify")
def verify(
    ctx: typer.Context,
    head: Annotated[
        Path | None,
        typer.Option("--head", help="A head file from `audit checkpoint --head` (truncation)."),
    ] = None,
    public_key: Annotated[
        Path | None,
        typer.Option("--public-key", help="Trust only this PEM key (not the registered ones)."),
    ] = None,
    witness: Annotated[
        Path | None,
        typer.Option(
            "--witness",
            help="Witness file or event file holding checkpoints (default: audit.witness_file).",
        ),
    ] = None,
) -> int:
    """Check every entry's hash and link, the head row, the checkpoints and outside copies."""
    from donjon.audit.rules import LEDGER_TAMPERED
    from donjon.core.artifacts import ArtifactRef
    from donjon.core.events import EventKind, Outcome, SecurityEvent
    from donjon.core.findings import Finding, Location, Subject

    cli = state(ctx)
    anchor = _read_head(head) if head else None
    pem = None
    if public_key is not None:
        try:
            pem = public_key.read_bytes()
        except OSError as e:
            raise InputError(f"cannot read public key {public_key}: {e}") from e
    witnessed, witness_path = _witnessed(ctx, witness)
    result = _ledger(ctx).verify(public_key_pem=pem, head=anchor, witnessed=witnessed)
    if witness is not None and not witnessed and result.ok and result.checkpoints:
        # asked for outside confirmation and got none: a ledger export, say, is no witness
        raise InputError(
            f"{witness} holds none of the ledger's {result.checkpoints} signed checkpoints:"
            " give the witness file (audit.witness_file) or an event file that received"
            " the audit.checkpoint announcements"
        )
    where = cli.settings.sql_url if cli.settings.database_url is None else "database_url"
    if result.ok:
        cli.app.bus.publish(
            SecurityEvent(
                kind=EventKind.AUDIT,
                source="audit",
                action="audit.verify",
                message=f"ledger verified: {result.entries} entries",
                outcome=Outcome.SUCCESS,
                attributes=result.to_dict(),
            )
        )
    else:
        first = result.issues[0]
        finding = Finding(
            rule=LEDGER_TAMPERED,
            subject=Subject(artifact=ArtifactRef(f"ledger:{where}", kind="ledger")),
            message=f"first bad entry {result.first_bad_seq}: {first.message}",
            location=Location(record=str(result.first_bad_seq)),
            evidence=result.to_dict(),
        )
        cli.app.bus.publish(SecurityEvent.of_finding(finding, "audit"))
    if cli.json:
        cli.print_json(result.to_dict())
    elif result.ok:
        witnessed_note = (
            f", {len(witnessed)} witnessed checkpoints match ({witness_path})"
            if witness_path
            else ""
        )
        cli.out.print(
            f"ledger OK: {result.entries} entries, {result.checkpoints} signed checkpoints"
            f"{', head file matches' if anchor else ''}{witnessed_note}; "
            f"head {result.head_hash[:16]}",
            markup=False,
        )
    else:
        cli.out.print(f"ledger TAMPERED: first bad entry {result.first_bad_seq}")
        for issue in result.issues:
            cli.out.print(f"  [{issue.problem.value}] {issue.message}", markup=False)
    return ExitCode.OK if result.ok else ExitCode.FINDINGS


@app.command("export")
def export(
    ctx: typer.Context,
    output: Annotated[
        Path | None, typer.Option("--output", "-o", help="JSON-lines file (default: stdout).")
    ] = None,
    start: Annotated[int, typer.Option("--start", min=1, help="First entry to export.")] = 1,
    head: Annotated[
        Path | None, typer.Option("--head", help="Also sign the head and write it here.")
    ] = None,
) -> None:
    """Write the ledger as JSON lines: {"seq", "prev", "hash", "entry"} per entry."""
    cli = state(ctx)
    ledger = _ledger(ctx)
    if output is None:
        count = ledger.export(sys.stdout, start)
    else:
        ensure_parent(output)
        with output.open("w", encoding="utf-8") as out:
            count = ledger.export(out, start)
    cli.info(f"exported {count} entries")
    if head is not None:
        _write_head(head, ledger.checkpoint())
        cli.info(f"signed head written to {head}")


@app.command("checkpoint")
def checkpoint(
    ctx: typer.Context,
    head: Annotated[
        Path | None, typer.Option("--head", help="Also write the signed head to this file.")
    ] = None,
) -> None:
    """Sign the ledger's current head with the server's key and store the checkpoint."""
    from donjon.audit import EventWitness

    cli = state(ctx)
    ledger = _ledger(ctx)
    ledger.add_witness(EventWitness(cli.app.bus.publish))
    signed = ledger.checkpoint()
    ledger.flush()  # to the witness file and URL, and the SOC stream
    if head is not None:
        _write_head(head, signed)
    if cli.json:
        cli.print_json(signed.to_dict())
    else:
        cli.out.print(f"checkpoint at entry {signed.seq}: {signed.hash}")


@app.command("keys")
def keys(
    ctx: typer.Context,
    register: Annotated[
        bool,
        typer.Option(
            "--register",
            help="Register this process's key although the database names another (rotation).",
        ),
    ] = False,
) -> None:
    """List the public keys the database registers for checkpoints."""
    from donjon.app import build_ledger
    from donjon.cli.access_admin import sql_database
    from donjon.storage.ledger import SqlLedgerStore
    from donjon.storage.ledger_keys import LedgerKey

    cli = state(ctx)
    settings = cli.settings
    database = sql_database(ctx)
    if register:
        audit = settings.audit
        key = LedgerKey(
            SqlLedgerStore(database),
            default_file=settings.keys_dir / f"{audit.key_id}.key.pem",
            key_file=audit.key_file,
            env=audit.key_env,
        )
        cli.info(f"registered ledger key {key.register()}")
    registered = build_ledger(settings, database).public_keys()
    if cli.json:
        cli.print_json([{"key_id": k, "public_key": v.decode()} for k, v in registered.items()])
        return
    for key_id in registered:
        cli.out.print(key_id)
