"""The ML-BOM of a model version, from the documents attached to it in the vault.

The signature bundle carries the signed manifest (every file's digest); the SLSA
provenance, when attached, adds the builder, the input datasets and the
evaluation metrics. ``donjon.provenance.bom`` builds and validates the CycloneDX
1.6 document. The provenance is marked verified only when the vault's
provenance gate admitted it for this version (the gate checked its signature).
"""

from __future__ import annotations

import json
from typing import Any

from donjon.core.identity import Principal
from donjon.errors import InputError, NotFound
from donjon.registry import Attachment, AttachmentKind, GateResult, Kind, Registry


def _latest(attachments: list[Attachment], kind: AttachmentKind) -> Attachment | None:
    found = [a for a in attachments if a.kind is kind]
    return found[-1] if found else None


def model_bom(registry: Registry, principal: Principal, name: str, number: int) -> dict[str, Any]:
    """The CycloneDX ML-BOM of ``name@number``; NotFound when no signature is attached."""
    try:
        from donjon.provenance.bom import build_bom
        from donjon.provenance.bundle import Bundle, manifest_from_statement
        from donjon.provenance.dsse import Envelope
        from donjon.provenance.slsa import Provenance
    except ImportError as e:
        raise InputError("the ML-BOM needs donjon[provenance] installed on the server") from e

    attachments = registry.attachments(principal, name, number)  # model.read, recorded
    signature = _latest(attachments, AttachmentKind.SIGNATURE)
    if signature is None:
        raise NotFound(f"model {name}@{number} has no signature: the ML-BOM needs its manifest")
    try:
        _, signed = registry.attachment_bytes(principal, name, number, signature.digest)
        bundle = Bundle.from_dict(json.loads(signed))
        manifest = manifest_from_statement(bundle.envelope.statement())
        provenance = None
        attested = _latest(attachments, AttachmentKind.PROVENANCE)
        if attested is not None:
            _, data = registry.attachment_bytes(principal, name, number, attested.digest)
            document = json.loads(data)
            provenance = Provenance(Envelope.from_dict(document).statement())
    except (ValueError, KeyError, TypeError) as e:
        raise InputError(f"an attached document of {name}@{number} is unreadable: {e}") from e
    gates = registry.store.gate_results(Kind.MODEL.value, name, number)
    verified = any(
        r.gate == "provenance" and r.passed for r in (GateResult.from_row(g) for g in gates)
    )
    return build_bom(
        manifest, provenance, version=str(number), provenance_verified=bool(provenance and verified)
    )
