"""Read and verify a training run's SLSA provenance (a DSSE envelope file)."""

from __future__ import annotations

import base64
import binascii
import hashlib
import json
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from cryptography.hazmat.primitives.asymmetric import ec

from donjon.provenance.attest import SLSA_PREDICATE
from donjon.provenance.dsse import Envelope
from donjon.provenance.errors import MalformedSignature, Problem, SignatureMismatch
from donjon.provenance.keys import key_hint

MAX_PROVENANCE_BYTES = 16 * 1024 * 1024


@dataclass(frozen=True, slots=True)
class Provenance:
    """A parsed SLSA v1 training provenance statement."""

    statement: dict[str, Any]

    @property
    def predicate(self) -> dict[str, Any]:
        value = self.statement.get("predicate")
        return value if isinstance(value, dict) else {}

    @property
    def subjects(self) -> list[dict[str, Any]]:
        return list(self.statement.get("subject") or [])

    def subject_digests(self) -> set[str]:
        return {str(s.get("digest", {}).get("sha256")) for s in self.subjects}

    @property
    def builder(self) -> str:
        return str(self.predicate.get("runDetails", {}).get("builder", {}).get("id", ""))

    @property
    def build(self) -> dict[str, Any]:
        value = self.predicate.get("buildDefinition")
        return value if isinstance(value, dict) else {}

    @property
    def name(self) -> str:
        return str(self.build.get("externalParameters", {}).get("name", ""))

    @property
    def parameters(self) -> dict[str, Any]:
        return dict(self.build.get("externalParameters", {}).get("parameters") or {})

    @property
    def metadata(self) -> dict[str, Any]:
        return dict(self.predicate.get("runDetails", {}).get("metadata") or {})

    def dependencies(self, kind: str | None = None) -> list[dict[str, Any]]:
        deps = [d for d in self.build.get("resolvedDependencies") or [] if isinstance(d, dict)]
        if kind is None:
            return deps
        return [d for d in deps if (d.get("annotations") or {}).get("kind") == kind]

    def byproduct(self, name: str) -> Any:
        for item in self.predicate.get("runDetails", {}).get("byproducts") or []:
            if isinstance(item, dict) and item.get("name") == name:
                try:
                    raw = base64.b64decode(str(item.get("content", "")), validate=True)
                except (binascii.Error, ValueError) as e:
                    raise MalformedSignature(f"byproduct {name} is not base64") from e
                expected = (item.get("digest") or {}).get("sha256")
                if expected and hashlib.sha256(raw).hexdigest() != expected:
                    raise MalformedSignature(f"byproduct {name} does not match its digest")
                return json.loads(raw)
        return None

    def metrics(self) -> dict[str, float]:
        """``run.metric`` values plus the evaluation's overall and fairness metrics."""
        found: dict[str, float] = dict(self.byproduct("metrics.json") or {})
        for record in self.byproduct("evaluation.json") or []:
            for name, value in (record.get("overall") or {}).items():
                found.setdefault(name, float(value))
            for name in ("demographic_parity_difference", "equalized_odds_difference"):
                if name in record:
                    found[name] = max(found.get(name, float("-inf")), float(record[name]))
        return found


def read_envelope(path: Path) -> Envelope:
    try:
        if path.stat().st_size > MAX_PROVENANCE_BYTES:
            raise MalformedSignature(f"provenance file {path} is larger than 16 MiB")
        data = json.loads(path.read_text(encoding="utf-8"))
    except OSError as e:
        raise MalformedSignature(f"cannot read provenance {path}: {e.strerror}") from e
    except (ValueError, UnicodeDecodeError) as e:
        raise MalformedSignature(f"provenance {path} is not JSON") from e
    return Envelope.from_dict(data)


def read_provenance(path: Path) -> Provenance:
    """Parse without verifying (for display); use :func:`verify_provenance` to trust it."""
    statement = read_envelope(path).statement()
    if statement.get("predicateType") != SLSA_PREDICATE:
        raise MalformedSignature(
            f"{path} is not SLSA provenance: predicate type {statement.get('predicateType')!r}"
        )
    return Provenance(statement)


@dataclass(frozen=True, slots=True)
class VerifiedProvenance:
    provenance: Provenance
    key_hint: str


def verify_provenance(
    path: Path,
    builder_keys: Sequence[ec.EllipticCurvePublicKey],
    *,
    subject_digest: str | None = None,
) -> VerifiedProvenance:
    """Verify the DSSE signature with one of ``builder_keys`` and, if given, the subject."""
    try:
        envelope = read_envelope(path)
        for key in builder_keys:
            if envelope.verify(key):
                signer = key_hint(key)
                break
        else:
            raise SignatureMismatch(
                [
                    Problem(
                        "bad-signature",
                        f"provenance {path.name} is not signed by a trusted builder key",
                    )
                ]
            )
        provenance = read_provenance(path)
    except MalformedSignature as e:
        raise SignatureMismatch([Problem("malformed-signature", str(e))]) from e
    if subject_digest is not None and subject_digest not in provenance.subject_digests():
        raise SignatureMismatch(
            [
                Problem(
                    "subject-mismatch",
                    f"provenance {path.name} is about another model: its subject is not "
                    f"sha256:{subject_digest[:16]}...",
                )
            ]
        )
    return VerifiedProvenance(provenance, signer)
