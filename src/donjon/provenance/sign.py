"""Sign a model folder or file in the OMS format, fully offline."""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import dataclass, replace
from pathlib import Path

from donjon.provenance.bundle import Bundle, manifest_payload
from donjon.provenance.certs import CertificateSigner
from donjon.provenance.dsse import Envelope, Signer
from donjon.provenance.errors import SigningError
from donjon.provenance.hashing import HashOptions, Manifest, build_manifest
from donjon.provenance.keys import key_hint


@dataclass(frozen=True, slots=True)
class SignResult:
    model: Path
    signature: Path
    manifest: Manifest
    key_hint: str
    certificate_subject: str | None = None

    @property
    def subject_digest(self) -> str:
        return self.manifest.subject_digest


def signature_ignore(model: Path, signature: Path) -> str | None:
    """The signature file's path relative to the model, when it sits inside it.

    The signature's own name is kept: in a Hugging Face snapshot it is a link
    into the cache's blobs, yet it sits in the model folder.
    """
    try:
        relative = (signature.parent.resolve() / signature.name).relative_to(model.resolve())
    except ValueError:
        return None
    return relative.as_posix() if relative.parts else None


def sign_model(
    model: Path,
    signer: Signer,
    signature: Path,
    options: HashOptions | None = None,
    progress: Callable[[int], None] | None = None,
) -> SignResult:
    """Hash ``model``, sign its manifest with ``signer`` and write the bundle to ``signature``.

    The bundle is written to a temporary name and renamed into place, so a
    failure never leaves a half-written signature.
    """
    if not model.exists():
        raise SigningError(f"model {model} does not exist")
    options = options or HashOptions()
    inside = signature_ignore(model, signature)
    if inside and model.is_dir():
        options = replace(options, ignore_paths=(*options.ignore_paths, inside))
    manifest = build_manifest(model, options, progress=progress)
    envelope = Envelope.sign(signer, manifest_payload(manifest))
    if isinstance(signer, CertificateSigner):
        bundle = Bundle(envelope, certificates=(signer.certificate, *signer.chain))
        subject: str | None = signer.certificate.subject.rfc4514_string()
    else:
        bundle = Bundle(envelope, key_hint=key_hint(signer.public_key))
        subject = None
    signature.parent.mkdir(parents=True, exist_ok=True)
    partial = signature.with_name(f".{signature.name}.{os.getpid()}.partial")
    try:
        bundle.write(partial)
        partial.replace(signature)
    finally:
        partial.unlink(missing_ok=True)
    return SignResult(model, signature, manifest, key_hint(signer.public_key), subject)
