"""``donjon keys``: signing keys kept under ``$DONJON_HOME/keys``.

Private keys are written with mode 0600 (optionally passphrase-encrypted) and
are never printed: ``export-public`` prints the public half only.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from donjon.cli.outputs import Force, refuse_overwrite
from donjon.cli.sign import passphrase_from_env, require
from donjon.cli.state import state

app = typer.Typer(help="Generate and list signing keys.", no_args_is_help=True)


@app.command("generate")
def generate(
    ctx: typer.Context,
    key_id: Annotated[str, typer.Argument(help="A name for the key, e.g. 'release'.")],
    curve: Annotated[str, typer.Option("--curve", help="p256, p384 or p521.")] = "p256",
    passphrase_env: Annotated[
        str | None,
        typer.Option("--passphrase-env", help="Encrypt with the passphrase in this variable."),
    ] = None,
) -> None:
    """Create an ECDSA key pair for OMS signing."""
    require("cryptography", "sign")
    from donjon.provenance import events
    from donjon.provenance.keys import CURVES, LocalKeyProvider

    cli = state(ctx)
    if curve not in CURVES:
        raise typer.BadParameter(f"use one of {', '.join(CURVES)}", param_hint="--curve")
    provider = LocalKeyProvider(cli.settings.keys_dir)
    public = provider.generate(key_id, curve, passphrase_from_env(passphrase_env))
    cli.app.bus.publish(
        events.activity(
            "key.generate", f"signing key {key_id!r} generated", ok=True, key_id=key_id, curve=curve
        )
    )
    if cli.json:
        cli.print_json({"key_id": key_id, "curve": curve, "public_key": str(public)})
    else:
        cli.out.print(f"key {key_id!r} ({curve}) created; public key: {public}")


@app.command("list")
def list_keys(ctx: typer.Context) -> None:
    """List the keys in the key store (ids and public key hints)."""
    from cryptography.hazmat.primitives import serialization

    require("cryptography", "sign")
    from donjon.provenance.keys import LocalKeyProvider, check_curve, key_hint

    cli = state(ctx)
    provider = LocalKeyProvider(cli.settings.keys_dir)
    rows = []
    for key_id in provider.key_ids():
        public = check_curve(serialization.load_pem_public_key(provider.public_key_pem(key_id)))
        encrypted = b"ENCRYPTED" in provider.folder.joinpath(f"{key_id}.key.pem").read_bytes()[:64]
        rows.append(
            {
                "key_id": key_id,
                "curve": public.curve.name,
                "hint": key_hint(public),
                "encrypted": encrypted,
            }
        )
    if cli.json:
        cli.print_json(rows)
        return
    if not rows:
        cli.info(f"no keys in {provider.folder}; create one with `donjon keys generate NAME`")
    for row in rows:
        lock = " (encrypted)" if row["encrypted"] else ""
        cli.out.print(f"{row['key_id']}  {row['curve']}  {row['hint']}{lock}")


@app.command("export-public")
def export_public(
    ctx: typer.Context,
    key_id: Annotated[str, typer.Argument(help="The key's name.")],
    output: Annotated[
        Path | None, typer.Option("--output", "-o", help="Write to this file, not stdout.")
    ] = None,
    force: Force = False,
) -> None:
    """Print (or write) the PEM public key of KEY_ID."""
    require("cryptography", "sign")
    from donjon.provenance.keys import LocalKeyProvider

    cli = state(ctx)
    provider = LocalKeyProvider(cli.settings.keys_dir)
    if key_id not in provider.key_ids():
        raise typer.BadParameter(f"no key {key_id!r}; `donjon keys list` shows them")
    refuse_overwrite(output, force, "--output")
    pem = provider.public_key_pem(key_id)
    if output is not None:
        output.write_bytes(pem)
        cli.info(f"public key of {key_id!r} written to {output}")
    else:
        cli.out.file.write(pem.decode())
