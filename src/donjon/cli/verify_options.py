"""The options ``donjon verify`` and ``donjon verify-files`` share: declared once, so
their names and help stay in step."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

PublicKey = Annotated[
    Path | None, typer.Option("--public-key", help="PEM public key of the signer.")
]
CertificateChain = Annotated[
    list[Path] | None,
    typer.Option("--certificate-chain", help="Trusted PEM certificates (repeatable)."),
]
Identity = Annotated[
    str | None,
    typer.Option(
        "--identity",
        help="Keyless (Sigstore): the signer's OIDC identity (e-mail or URI) the signing "
        "certificate must name; needs --issuer.",
    ),
]
Issuer = Annotated[
    str | None,
    typer.Option(
        "--issuer",
        help="Keyless: the OIDC issuer that vouched for --identity, e.g. "
        "https://accounts.google.com.",
    ),
]
TrustRoot = Annotated[
    Path | None,
    typer.Option(
        "--trust-root",
        dir_okay=False,
        help="Keyless: a Sigstore trusted_root.json to verify against, offline (a private "
        "instance, or a kept copy); default: Sigstore's public instance, refreshed over TUF.",
    ),
]
Offline = Annotated[
    bool,
    typer.Option(
        "--offline",
        help="Keyless, without --trust-root: use the copy of Sigstore's public trust root "
        "already held, without refreshing it.",
    ),
]
PolicyFile = Annotated[
    Path | None, typer.Option("--policy", help="TOML verification policy.", dir_okay=False)
]
