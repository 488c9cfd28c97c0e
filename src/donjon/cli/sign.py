"""``donjon sign``: sign a model in the OpenSSF Model Signing (OMS) format, offline.

The words follow ``model_signing sign key|certificate`` so users can switch:
``donjon sign MODEL --private-key key.pem --signature model.sig``, plus
``--signing-certificate`` and ``--certificate-chain`` for a local PKI,
``--key ID`` for a key in Donjon's key store, or ``--sigstore`` for a keyless
signature (``model_signing sign sigstore``): it needs Sigstore's services and an
OIDC identity, so it cannot run offline.
"""

from __future__ import annotations

import importlib.util
import os
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

from donjon.cli.outputs import Force, refuse_overwrite
from donjon.cli.progress import byte_progress, tree_size
from donjon.cli.state import state
from donjon.errors import ConfigError, DonjonError

if TYPE_CHECKING:
    from donjon.cli.state import CliState
    from donjon.provenance.hashing import HashOptions

_HASHES = ("sha256", "blake3")


def require(module: str, extra: str) -> None:
    """A clear error, not a traceback, when an optional dependency is missing."""
    if importlib.util.find_spec(module) is None:
        raise ConfigError(f"this command needs {module}: pip install 'donjon[{extra}]'")


def passphrase_from_env(name: str | None) -> bytes | None:
    """The passphrase held in environment variable ``name`` (never a flag value: ps shows those)."""
    if not name:
        return None
    value = os.environ.get(name)
    if value is None:
        raise typer.BadParameter(
            f"environment variable {name} is not set", param_hint="--passphrase-env"
        )
    return value.encode()


def sign(
    ctx: typer.Context,
    model: Annotated[Path, typer.Argument(help="Model folder or file to sign.")],
    signature: Annotated[
        Path, typer.Option("--signature", help="Where to write the OMS signature bundle.")
    ] = Path("model.sig"),
    private_key: Annotated[
        Path | None, typer.Option("--private-key", help="PEM ECDSA private key (P-256/384/521).")
    ] = None,
    key_id: Annotated[
        str | None, typer.Option("--key", help="A key of `donjon keys` instead of a file.")
    ] = None,
    signing_certificate: Annotated[
        Path | None,
        typer.Option("--signing-certificate", help="PEM certificate of the private key."),
    ] = None,
    certificate_chain: Annotated[
        list[Path] | None,
        typer.Option("--certificate-chain", help="PEM intermediates / root to embed (repeatable)."),
    ] = None,
    passphrase_env: Annotated[
        str | None,
        typer.Option("--passphrase-env", help="Environment variable holding the key's passphrase."),
    ] = None,
    hash_algorithm: Annotated[
        str, typer.Option("--hash", help="sha256 (interoperable default) or blake3.")
    ] = "sha256",
    shard_size: Annotated[
        int | None,
        typer.Option("--shard-size", min=1, help="Hash files in shards of this many bytes."),
    ] = None,
    ignore_paths: Annotated[
        list[str] | None, typer.Option("--ignore-paths", help="Paths (relative) to leave out.")
    ] = None,
    ignore_git_paths: Annotated[
        bool, typer.Option("--ignore-git-paths/--no-ignore-git-paths", help="Leave out .git*.")
    ] = True,
    allow_symlinks: Annotated[
        bool, typer.Option("--allow-symlinks", help="Follow symbolic links.")
    ] = False,
    workers: Annotated[
        int | None, typer.Option("--workers", min=1, help="Hashing threads (default: cores).")
    ] = None,
    sigstore: Annotated[
        bool,
        typer.Option(
            "--sigstore",
            help="Keyless: a short-lived Fulcio certificate for your OIDC identity, logged in "
            "Rekor (needs the network).",
        ),
    ] = False,
    identity_token_env: Annotated[
        str,
        typer.Option(
            "--identity-token-env",
            help="Keyless: environment variable holding an OIDC identity token (else ambient "
            "CI credentials, else a browser sign-in at a terminal).",
        ),
    ] = "SIGSTORE_ID_TOKEN",  # noqa: S107 - a variable's name
    trust_config: Annotated[
        Path | None,
        typer.Option(
            "--trust-config",
            dir_okay=False,
            help="Keyless: a Sigstore ClientTrustConfig (a private instance); default: "
            "Sigstore's public instance.",
        ),
    ] = None,
    staging: Annotated[
        bool, typer.Option("--staging", help="Keyless: Sigstore's staging instance (tests).")
    ] = False,
    force: Force = False,
) -> None:
    """Sign MODEL: hash every file, sign the manifest, write an OMS bundle."""
    require("cryptography", "sign")
    from donjon.provenance import events
    from donjon.provenance.certs import CertificateSigner, load_certificates
    from donjon.provenance.dsse import Signer
    from donjon.provenance.hashing import HashOptions
    from donjon.provenance.keys import (
        FileKeySigner,
        LocalKeyProvider,
        ProviderSigner,
        load_private_key,
    )
    from donjon.provenance.sign import sign_model

    cli = state(ctx)
    if (private_key is not None) + (key_id is not None) + sigstore != 1:
        raise typer.BadParameter("give exactly one of --private-key, --key and --sigstore")
    if hash_algorithm not in _HASHES:
        raise typer.BadParameter(f"use one of {', '.join(_HASHES)}", param_hint="--hash")
    if not model.exists():
        raise typer.BadParameter(f"{model} does not exist", param_hint="MODEL")
    if not sigstore and (trust_config is not None or staging):
        raise typer.BadParameter("--trust-config and --staging go with --sigstore")
    refuse_overwrite(signature, force, "--signature")
    options = HashOptions(
        algorithm=hash_algorithm,
        method="shards" if shard_size else "files",
        shard_size=shard_size or HashOptions().shard_size,
        allow_symlinks=allow_symlinks,
        ignore_paths=tuple(ignore_paths or ()),
        ignore_git_paths=ignore_git_paths,
        workers=workers,
    )
    if sigstore:
        if signing_certificate is not None or certificate_chain or passphrase_env:
            raise typer.BadParameter("--sigstore signs with no key or certificate of yours")
        require("sigstore", "sigstore")
        sign_keyless_cli(cli, model, signature, options, identity_token_env, trust_config, staging)
        return
    try:
        secret = passphrase_from_env(passphrase_env)
        signer: Signer | None = None
        if private_key is not None:
            if signing_certificate is not None:
                key = load_private_key(private_key, secret)
                leaves = load_certificates([signing_certificate])
                if len(leaves) != 1:
                    raise typer.BadParameter(
                        "must hold exactly one certificate", param_hint="--signing-certificate"
                    )
                leaf = leaves[0]
                chain = load_certificates(certificate_chain or [])
                signer = CertificateSigner(key, leaf, chain)
            else:
                signer = FileKeySigner.from_file(private_key, secret)
        elif key_id is not None:
            provider = LocalKeyProvider(cli.settings.keys_dir, lambda _id: secret)
            signer = ProviderSigner(provider, key_id)
        if signer is None:  # unreachable: exactly one of the two options is set
            raise typer.BadParameter("give exactly one of --private-key and --key")
        with byte_progress(cli, f"signing {model.name}", tree_size(model)) as advance:
            result = sign_model(model, signer, signature, options, progress=advance)
    except DonjonError as e:
        cli.app.bus.publish(
            events.activity("sign", f"signing {model} failed: {e}", ok=False, model=str(model))
        )
        raise
    cli.app.bus.publish(events.signed(model, result.subject_digest, signature, result.key_hint))
    if cli.json:
        cli.print_json(
            {
                "model": str(model),
                "signature": str(signature),
                "subject_digest": f"sha256:{result.subject_digest}",
                "files": len(result.manifest.items),
                "key_hint": result.key_hint,
                "certificate": result.certificate_subject,
            }
        )
        return
    cli.out.print(
        f"Signing succeeded: {signature} ({len(result.manifest.items)} resources, "
        f"sha256:{result.subject_digest})"
    )


def sign_keyless_cli(
    cli: CliState,
    model: Path,
    signature: Path,
    options: HashOptions,
    token_env: str,
    trust_config: Path | None,
    staging: bool,
) -> None:
    """``sign --sigstore``: the keyless bundle, as ``model_signing sign sigstore`` writes it."""
    from donjon.provenance import events
    from donjon.provenance.keyless import identity_token, sign_keyless
    from donjon.provenance.keys import check_curve, key_hint

    try:
        token = identity_token(token_env)
        with byte_progress(cli, f"signing {model.name}", tree_size(model)) as advance:
            manifest, leaf = sign_keyless(
                model,
                signature,
                options,
                token=token,
                trust_config=trust_config,
                staging=staging,
                progress=advance,
            )
    except DonjonError as e:
        cli.app.bus.publish(
            events.activity("sign", f"signing {model} failed: {e}", ok=False, model=str(model))
        )
        raise
    hint = key_hint(check_curve(leaf.public_key()))
    cli.app.bus.publish(events.signed(model, manifest.subject_digest, signature, hint))
    if cli.json:
        cli.print_json(
            {
                "model": str(model),
                "signature": str(signature),
                "subject_digest": f"sha256:{manifest.subject_digest}",
                "files": len(manifest.items),
                "keyless": True,
            }
        )
        return
    cli.out.print(
        f"Signing succeeded (keyless): {signature} ({len(manifest.items)} resources, "
        f"sha256:{manifest.subject_digest})"
    )
