"""Documents attached to a model or dataset version: the vault's referrers store.

A model version may carry OMS signature bundles, DSSE-wrapped SLSA
provenance statements and DSSE-wrapped fingerprints of its deployment
(``donjon watch``); a dataset version its manifest (``donjon data manifest``,
with its record digests) and its ``donjon data check`` reports, each naming
the digest of the version's bytes it describes (``dataset_digest``). Each is
kept whole, content-addressed in the blob store with its media type, and
never changed or removed; the registry checks that it is well formed (through
the :class:`AttachmentInspector` port, which ``donjon.app`` wires to
``donjon.provenance`` and ``donjon.data``) and records who attached it.
Whether it is *trusted* is the promotion gates' question, asked at promotion.
"""

from __future__ import annotations

import enum
import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Protocol

from donjon.core.artifacts import Digest
from donjon.core.findings import freeze
from donjon.errors import InputError
from donjon.registry.model import _thaw

MAX_ATTACHMENT_BYTES = 16 * 1024 * 1024


class AttachmentKind(enum.StrEnum):
    """What a document attached to a model or dataset version is."""

    SIGNATURE = "signature"  # an OpenSSF Model Signing (OMS) Sigstore bundle
    PROVENANCE = "provenance"  # a DSSE envelope around in-toto SLSA provenance
    FINGERPRINT = "fingerprint"  # a DSSE envelope around a deployed model's fingerprint (watch)
    MANIFEST = "manifest"  # a dataset version's manifest with its record digests
    CHECK = "check"  # a dataset version's `donjon data check` report

    @property
    def media_type(self) -> str:
        return MEDIA_TYPES[self]


MEDIA_TYPES = {
    AttachmentKind.SIGNATURE: "application/vnd.dev.sigstore.bundle.v0.3+json",
    AttachmentKind.PROVENANCE: "application/vnd.dsse.envelope.v1+json",
    AttachmentKind.FINGERPRINT: "application/vnd.dsse.envelope.v1+json",
    AttachmentKind.MANIFEST: "application/vnd.donjon.data.manifest.v1+json",
    AttachmentKind.CHECK: "application/vnd.donjon.data.check.v1+json",
}
# Which kinds each kind of version takes (keyed by the registry's Kind value).
KINDS_OF = {
    "model": (AttachmentKind.SIGNATURE, AttachmentKind.PROVENANCE, AttachmentKind.FINGERPRINT),
    "dataset": (AttachmentKind.MANIFEST, AttachmentKind.CHECK),
}


def parse_kind(text: str, of: str = "model") -> AttachmentKind:
    """The attachment kind ``text`` names, if a ``of`` version (model, dataset) takes it:
    checked before anything is read or stored."""
    allowed = KINDS_OF.get(of, ())
    for kind in allowed:
        if kind.value == text:
            return kind
    kinds = ", ".join(k.value for k in allowed)
    raise InputError(f"a {of} attachment kind must be one of {kinds}, not {text!r}")


@dataclass(frozen=True, slots=True)
class Attachment:
    """One document attached to one model or dataset version (immutable)."""

    kind: AttachmentKind
    digest: Digest
    size: int
    media_type: str
    created_by: str
    created_at: datetime
    summary: Mapping[str, Any] = field(default_factory=dict, hash=False, compare=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "summary", freeze(self.summary))

    @classmethod
    def from_row(cls, row: Mapping[str, Any]) -> Attachment:
        return cls(
            kind=AttachmentKind(row["kind"]),
            digest=Digest.parse(row["digest"]),
            size=int(row["size"]),
            media_type=row["media_type"],
            created_by=row["created_by"],
            created_at=row["created_at"],
            summary=dict(row.get("summary") or {}),
        )

    def to_dict(self) -> dict[str, Any]:
        return {
            "kind": self.kind.value,
            "digest": str(self.digest),
            "size": self.size,
            "media_type": self.media_type,
            "summary": _thaw(self.summary),
            "created_by": self.created_by,
            "created_at": self.created_at.isoformat(),
        }


class AttachmentInspector(Protocol):
    """Checks that a document is a well-formed signature bundle or provenance envelope.

    Returns a small JSON summary (subjects, signer hint, builder, datasets) to
    show beside it; raises :class:`~donjon.errors.InputError` when it is
    malformed. It does not decide trust: that is the promotion gates' job.
    """

    def inspect(self, kind: AttachmentKind, data: bytes) -> Mapping[str, Any]: ...


def check_document(data: bytes) -> dict[str, Any]:
    """The minimum the registry itself asks of any attachment: a JSON object, not too big."""
    if len(data) > MAX_ATTACHMENT_BYTES:
        raise InputError(f"attachment is larger than {MAX_ATTACHMENT_BYTES} bytes")
    try:
        value = json.loads(data)
    except (ValueError, RecursionError) as e:  # UnicodeDecodeError is a ValueError
        raise InputError(f"attachment is not JSON: {e}") from None
    if not isinstance(value, dict):
        raise InputError("attachment must be a JSON object")
    return value


def check_subject(kind: AttachmentKind, document: Mapping[str, Any], digest: str) -> None:
    """A dataset document must describe the version's own bytes (``dataset_digest``)."""
    if kind in KINDS_OF["dataset"] and document.get("dataset_digest") != digest:
        raise InputError(
            f"the {kind} describes {document.get('dataset_digest')!r}, "
            f"not this version's bytes ({digest})"
        )
