"""The OMS signature file: a Sigstore bundle v0.3 around a DSSE envelope.

The envelope carries an in-toto Statement v1 whose predicate type is
``https://model_signing/signature/v1.0``; the predicate is
``{serialization: {...}, resources: [{name, algorithm, digest}]}`` and the one
subject is ``{name: <model folder>, digest: {sha256: sha256(concatenated raw
resource digests)}}``. ``verificationMaterial`` holds either ``publicKey.hint``
(SHA-256 of the PEM public key) or ``x509CertificateChain`` (leaf first), and
an empty ``tlogEntries`` (offline). This is exactly what ``model-signing``
1.1.1 writes and reads in its ``key`` and ``certificate`` modes.
"""

from __future__ import annotations

import base64
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from cryptography import x509
from cryptography.hazmat.primitives import serialization

from donjon.provenance.dsse import Envelope, b64decode, statement_bytes
from donjon.provenance.errors import MalformedCertificate, MalformedSignature
from donjon.provenance.hashing import Manifest, ManifestItem

BUNDLE_MEDIA_TYPE = "application/vnd.dev.sigstore.bundle.v0.3+json"
PREDICATE_TYPE = "https://model_signing/signature/v1.0"
MAX_BUNDLE_BYTES = 64 * 1024 * 1024


def manifest_payload(manifest: Manifest) -> bytes:
    """The in-toto statement bytes that an OMS signature signs."""
    resources = [
        {"name": item.name, "algorithm": item.algorithm, "digest": item.digest}
        for item in manifest.items
    ]
    subject = {"name": manifest.model_name, "digest": {"sha256": manifest.subject_digest}}
    predicate = {"serialization": manifest.serialization, "resources": resources}
    return statement_bytes([subject], PREDICATE_TYPE, predicate)


def manifest_from_statement(statement: dict[str, Any]) -> Manifest:
    """The signed manifest, after checking its subject digest matches its resources."""
    if statement.get("predicateType") != PREDICATE_TYPE:
        raise MalformedSignature(
            f"predicate type is {statement.get('predicateType')!r}, expected {PREDICATE_TYPE}"
        )
    subjects = statement["subject"]
    if len(subjects) != 1:
        raise MalformedSignature(f"an OMS statement has one subject, this one has {len(subjects)}")
    predicate = statement.get("predicate")
    if not isinstance(predicate, dict):
        raise MalformedSignature("the OMS statement has no predicate")
    serialization_block = predicate.get("serialization")
    resources = predicate.get("resources")
    if not isinstance(serialization_block, dict) or not isinstance(resources, list):
        raise MalformedSignature("the OMS predicate lacks serialization or resources")
    items = []
    for resource in resources:
        try:
            name, algorithm, digest = resource["name"], resource["algorithm"], resource["digest"]
            bytes.fromhex(digest)
        except (KeyError, TypeError, ValueError) as e:
            raise MalformedSignature(f"malformed resource in the OMS predicate: {e!r}") from e
        items.append(ManifestItem(str(name), str(algorithm), str(digest).lower()))
    name = subjects[0].get("name")
    manifest = Manifest.of(str(name), items, serialization_block)
    expected = subjects[0]["digest"].get("sha256")
    if expected != manifest.subject_digest:
        raise MalformedSignature(
            "the signed manifest is inconsistent: its subject digest does not match its resources"
        )
    return manifest


@dataclass(frozen=True, slots=True)
class Bundle:
    """A parsed OMS signature file (nothing verified yet)."""

    envelope: Envelope
    key_hint: str | None = None
    certificates: tuple[x509.Certificate, ...] = ()

    def to_dict(self) -> dict[str, Any]:
        material: dict[str, Any]
        if self.certificates:
            chain = [
                {"rawBytes": base64.b64encode(c.public_bytes(serialization.Encoding.DER)).decode()}
                for c in self.certificates
            ]
            material = {"x509CertificateChain": {"certificates": chain}, "tlogEntries": []}
        else:
            material = {"publicKey": {"hint": self.key_hint or ""}, "tlogEntries": []}
        return {
            "mediaType": BUNDLE_MEDIA_TYPE,
            "verificationMaterial": material,
            "dsseEnvelope": self.envelope.to_dict(),
        }

    def write(self, path: Path) -> None:
        path.write_text(json.dumps(self.to_dict(), indent=2) + "\n", encoding="utf-8")

    @classmethod
    def read(cls, path: Path) -> Bundle:
        try:
            if path.stat().st_size > MAX_BUNDLE_BYTES:
                raise MalformedSignature(f"signature file {path} is larger than 64 MiB")
            text = path.read_text(encoding="utf-8")
        except OSError as e:
            raise MalformedSignature(f"cannot read signature file {path}: {e.strerror}") from e
        except UnicodeDecodeError as e:
            raise MalformedSignature(f"signature file {path} is not UTF-8 JSON") from e
        try:
            data = json.loads(text)
        except ValueError as e:
            raise MalformedSignature(f"signature file {path} is not JSON: {e}") from e
        return cls.from_dict(data)

    @classmethod
    def from_dict(cls, data: object) -> Bundle:
        if not isinstance(data, dict):
            raise MalformedSignature("the signature file is not a JSON object")
        if data.get("mediaType") != BUNDLE_MEDIA_TYPE:
            raise MalformedSignature(
                f"not a Sigstore bundle v0.3: mediaType is {data.get('mediaType')!r}"
            )
        material = data.get("verificationMaterial")
        if not isinstance(material, dict):
            raise MalformedSignature("the bundle has no verificationMaterial")
        envelope = Envelope.from_dict(data.get("dsseEnvelope"))
        chain = material.get("x509CertificateChain")
        if chain is not None:
            raw = chain.get("certificates") if isinstance(chain, dict) else None
            if not isinstance(raw, list) or not raw:
                raise MalformedSignature("the bundle's certificate chain is empty")
            certificates = []
            for index, entry in enumerate(raw):
                der = b64decode(
                    entry.get("rawBytes") if isinstance(entry, dict) else None,
                    f"certificate {index}",
                )
                try:
                    certificates.append(x509.load_der_x509_certificate(der))
                except ValueError as e:
                    raise MalformedCertificate(
                        f"certificate {index} in the bundle is malformed: {e}"
                    ) from e
            return cls(envelope, certificates=tuple(certificates))
        public_key = material.get("publicKey")
        if isinstance(public_key, dict):
            hint = public_key.get("hint")
            return cls(envelope, key_hint=str(hint) if hint else None)
        if isinstance(material.get("certificate"), dict):
            raise MalformedSignature(
                "this is a keyless (Sigstore) bundle: verify it with --identity and --issuer"
            )
        raise MalformedSignature("the bundle names neither a public key nor a certificate chain")
