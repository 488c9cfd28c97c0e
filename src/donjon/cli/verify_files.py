"""``donjon verify-files FILE...``: verify the signatures that cover changed files.

The pre-commit hook ``donjon-verify`` passes the staged files. Each file is
covered by the nearest folder above it holding the signature (``model.sig``),
or by a ``FILE.sig`` beside it; every covering folder or file is verified once
(``donjon verify``'s checks: a key, certificates, a keyless identity or a policy). A staged model
file (by extension) that no signature covers fails, unless ``--allow-unsigned``.
Exit 0 when all verify, 1 otherwise.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Annotated

import typer

from donjon.cli.state import ExitCode, state
from donjon.cli.verify import verify
from donjon.cli.verify_options import (
    CertificateChain,
    Identity,
    Issuer,
    PolicyFile,
    PublicKey,
    TrustRoot,
)

# The model files the ``donjon-scan`` hook picks (.pre-commit-hooks.yaml)
MODEL_FILE = re.compile(
    r"(?i)\.(pkl|pickle|p|pt|pth|bin|ckpt|joblib|jl|sav|pyt|dill|cloudpkl|npy|npz|h5|hdf5|"
    r"keras|onnx|pb|safetensors|gguf|tflite|mar|nemo|msgpack)$"
)


def covering(file: Path, signature_name: str, top: Path) -> tuple[Path, Path] | None:
    """(model, signature) covering ``file``: ``FILE.sig``, or the nearest signed folder."""
    beside = file.with_name(file.name + ".sig")
    if file.name.endswith(".sig") and file.name != signature_name:
        lone = file.with_name(file.name[: -len(".sig")])
        if lone.is_file():
            return lone, file
    if beside.is_file():
        return file, beside
    top = top.resolve()
    for folder in file.resolve().parents:
        if (folder / signature_name).is_file():
            return folder, folder / signature_name
        if folder == top or top not in folder.parents:
            return None
    return None


def verify_files(
    ctx: typer.Context,
    files: Annotated[list[Path], typer.Argument(help="Changed files (pre-commit passes them).")],
    public_key: PublicKey = None,
    certificate_chain: CertificateChain = None,
    identity: Identity = None,
    issuer: Issuer = None,
    trust_root: TrustRoot = None,
    policy: PolicyFile = None,
    signature_name: Annotated[
        str, typer.Option("--signature-name", help="A signed folder's bundle name.")
    ] = "model.sig",
    allow_unsigned: Annotated[
        bool,
        typer.Option("--allow-unsigned", help="Do not fail on model files no signature covers."),
    ] = False,
) -> int:
    """Verify the signatures covering FILES (the donjon-verify pre-commit hook)."""
    cli = state(ctx)
    top = Path.cwd()  # pre-commit runs hooks at the repository's root
    targets: dict[Path, Path] = {}
    unsigned: list[Path] = []
    for file in files:
        found = covering(file, signature_name, top)
        if found is not None:
            targets.setdefault(*found)
        elif MODEL_FILE.search(file.name) and file.is_file():
            unsigned.append(file)
    code = ExitCode.OK
    for model, signature in sorted(targets.items()):
        verified = verify(
            ctx,
            model=model,
            signature=signature,
            public_key=public_key,
            certificate_chain=certificate_chain,
            identity=identity,
            issuer=issuer,
            trust_root=trust_root,
            policy=policy,
        )
        code = max(code, ExitCode(verified))
    for file in unsigned:
        message = f"{file}: a model file no signature covers"
        if allow_unsigned:
            cli.info(f"{message} (allowed)")
            continue
        cli.err.print(f"Verification failed for {message}", soft_wrap=True, markup=False)
        code = max(code, ExitCode.FINDINGS)
    return int(code)
