"""The vault's signature and provenance gates, answered by ``donjon.provenance``.

The registry keeps signed documents beside each model version (its referrers
store) and declares the ports; this module implements them:

* :class:`DocumentInspector` checks at attach time that a document is a
  well-formed OMS signature bundle or DSSE-wrapped SLSA provenance;
* :class:`TrustedSignatureGate` (``signature``): an attached signature
  verifies over the version's bytes with a trusted key or certificate root;
* :class:`AdmittedProvenanceGate` (``provenance``): an attached provenance is
  signed by a trusted builder key, is about this model (its subject is the
  version's digest, as a file or as an OMS subject) and every input dataset it
  names is a dataset version in the vault with the same content, still active.

Both fail closed: no attachment, a malformed one, an error, all fail the gate.
"""

from __future__ import annotations

import hashlib
import json
import shutil
import tempfile
from collections.abc import Mapping
from dataclasses import replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

from donjon.core.artifacts import Digest
from donjon.errors import InputError, VerificationError
from donjon.registry.attachments import Attachment, AttachmentKind
from donjon.registry.model import GateResult, Stage, Status, Version
from donjon.registry.ports import BlobReader, GateContext

if TYPE_CHECKING:
    from donjon.provenance.policy import Policy
    from donjon.provenance.slsa import Provenance


def oms_subject(digest: Digest) -> str:
    """The OMS subject digest of a single file whose SHA-256 is ``digest`` (hex)."""
    return hashlib.sha256(bytes.fromhex(digest.hex)).hexdigest()


def _names(digest: Digest) -> set[str]:
    """The digests a signed statement may use for these bytes: the file's and its OMS subject."""
    return {digest.hex, oms_subject(digest)} if digest.algorithm == "sha256" else set()


class DocumentInspector:
    """The registry's ``AttachmentInspector``: structure only, no trust decided."""

    def inspect(self, kind: AttachmentKind, data: bytes) -> Mapping[str, Any]:
        from donjon.provenance.attest import SLSA_PREDICATE
        from donjon.provenance.bundle import Bundle, manifest_from_statement
        from donjon.provenance.dsse import Envelope
        from donjon.provenance.slsa import Provenance

        if kind is AttachmentKind.FINGERPRINT:
            from donjon.app.watch import inspect_fingerprint

            return inspect_fingerprint(data)
        if kind in (AttachmentKind.MANIFEST, AttachmentKind.CHECK):
            from donjon.data.documents import inspect_document

            return inspect_document(kind.value, data)
        try:
            document = json.loads(data)
            if kind is AttachmentKind.SIGNATURE:
                bundle = Bundle.from_dict(document)
                manifest = manifest_from_statement(bundle.envelope.statement())
                signer = bundle.key_hint or (
                    bundle.certificates[0].subject.rfc4514_string() if bundle.certificates else ""
                )
                return {
                    "subject_digest": f"sha256:{manifest.subject_digest}",
                    "files": len(manifest.files),
                    "signer": signer,
                }
            statement = Envelope.from_dict(document).statement()
            if statement.get("predicateType") != SLSA_PREDICATE:
                raise InputError(
                    f"not SLSA provenance: predicate type {statement.get('predicateType')!r}"
                )
            provenance = Provenance(statement)
            return {
                "subjects": sorted(f"sha256:{d}" for d in provenance.subject_digests()),
                "builder": provenance.builder,
                "datasets": [str(d.get("name", "")) for d in provenance.dependencies("dataset")],
            }
        except (VerificationError, ValueError, KeyError, TypeError, AttributeError) as e:
            raise InputError(f"malformed {kind}: {e}") from None


def _latest_first(context: GateContext, kind: AttachmentKind) -> list[Attachment]:
    return [a for a in reversed(context.attachments) if a.kind is kind]


class TrustedSignatureGate:
    """An attached OMS signature verifies over the version's bytes with a trusted key.

    The bytes are copied from the blob store (which checks them against their
    digest on the way) and verified with :func:`donjon.provenance.policy.check_policy`
    restricted to the policy's ``[signature]`` part.
    """

    name = "signature"

    def __init__(self, policy: Policy) -> None:
        self.policy = replace(
            policy,
            provenance_required=False,
            metrics={},
            datasets_need_manifest=False,
            scan_required=False,
        )

    def check(
        self, version: Version, target: Stage, open_blob: BlobReader, context: GateContext
    ) -> GateResult:
        from donjon.provenance.policy import check_policy

        signatures = _latest_first(context, AttachmentKind.SIGNATURE)
        if not signatures:
            return GateResult(self.name, False, target.value, ("no signature is attached",))
        reasons: list[str] = []
        with tempfile.TemporaryDirectory(prefix="donjon-gate-") as folder:
            model = Path(folder) / "model"
            with open_blob() as source, model.open("wb") as out:
                shutil.copyfileobj(source, out, 1 << 20)
            for attachment in signatures:
                bundle = Path(folder) / "signature.json"
                bundle.write_bytes(context.read(attachment))
                result = check_policy(model, self.policy, signature=bundle)
                if result.passed:
                    details = {"attachment": str(attachment.digest)}
                    return GateResult(self.name, True, target.value, result.met, details)
                reasons += [f"{attachment.digest.hex[:12]}: {u.message}" for u in result.unmet]
                reasons += _folder_hint(attachment)
        return GateResult(self.name, False, target.value, tuple(reasons))


def _folder_hint(attachment: Attachment) -> list[str]:
    """What to do when a folder's signature was attached to a version, which is one file."""
    files = attachment.summary.get("files")
    if not isinstance(files, int) or files < 2:
        return []
    return [
        f"{attachment.digest.hex[:12]}: signs a folder of {files} files, and a version is "
        "one file: sign that file (donjon sign FILE --signature FILE.sig) and attach it"
    ]


class AdmittedProvenanceGate:
    """An attached SLSA provenance is trusted, about this model, and built from admitted data."""

    name = "provenance"

    def __init__(self, policy: Policy) -> None:
        if not policy.builder_keys:
            raise InputError("the provenance gate needs trusted builder keys")
        self.policy = policy

    def check(
        self, version: Version, target: Stage, open_blob: BlobReader, context: GateContext
    ) -> GateResult:
        found = _latest_first(context, AttachmentKind.PROVENANCE)
        if not found:
            return GateResult(self.name, False, target.value, ("no provenance is attached",))
        reasons: list[str] = []
        for attachment in found:
            problems, met = self._check_one(version, attachment, context)
            if not problems:
                details = {"attachment": str(attachment.digest)}
                return GateResult(self.name, True, target.value, tuple(met), details)
            reasons += [f"{attachment.digest.hex[:12]}: {p}" for p in problems]
        return GateResult(self.name, False, target.value, tuple(reasons))

    def _check_one(
        self, version: Version, attachment: Attachment, context: GateContext
    ) -> tuple[list[str], list[str]]:
        from donjon.provenance.errors import SignatureMismatch
        from donjon.provenance.slsa import verify_provenance

        with tempfile.TemporaryDirectory(prefix="donjon-gate-") as folder:
            path = Path(folder) / "provenance.json"
            path.write_bytes(context.read(attachment))
            try:
                verified = verify_provenance(path, self.policy.builder_keys)
            except SignatureMismatch as e:
                return [p.message for p in e.problems], []
        doc = verified.provenance
        problems: list[str] = []
        met = ["signed by a trusted builder key"]
        if not doc.subject_digests() & _names(version.digest):
            problems.append(f"the provenance is about another model, not {version.digest}")
        else:
            met.append(f"its subject is this model ({version.digest})")
        if self.policy.builders and doc.builder not in self.policy.builders:
            problems.append(f"builder {doc.builder!r} is not trusted")
        problems += self._datasets(doc, version, context, met)
        problems += self._metrics(doc, met)
        return problems, met

    def _datasets(
        self, doc: Provenance, version: Version, context: GateContext, met: list[str]
    ) -> list[str]:
        datasets = doc.dependencies("dataset")
        if not datasets:
            return ["the training run recorded no input dataset"]
        lineage = tuple(v for v in context.lineage if v is not None)
        problems: list[str] = []
        for dataset in datasets:
            name = str(dataset.get("name") or "")
            digest = str((dataset.get("digest") or {}).get("sha256") or "")
            candidates = {v.ref: v for v in (*context.dataset_versions(name), *lineage)}
            same = [v for v in candidates.values() if digest and digest in _names(v.digest)]
            if not same:
                problems.append(
                    f"input dataset {name!r} (sha256:{digest[:16]}...) is not in the vault"
                )
                continue
            active = [v for v in same if v.status is Status.ACTIVE]
            if not active:
                states = ", ".join(f"{v.ref} is {v.status.value}" for v in same)
                problems.append(f"input dataset {name!r} is not admitted: {states}")
                continue
            met.append(f"input dataset {name!r} is {active[-1].ref}, active in the vault")
            if self.policy.datasets_need_manifest and not (dataset.get("annotations") or {}).get(
                "manifest"
            ):
                problems.append(f"input dataset {name!r} has no manifest")
        return problems

    def _metrics(self, doc: Provenance, met: list[str]) -> list[str]:
        problems: list[str] = []
        values = doc.metrics()
        for name, bound in sorted(self.policy.metrics.items()):
            value = values.get(name)
            if value is None:
                problems.append(f"metric {name} was not recorded")
            elif bound.minimum is not None and value < bound.minimum:
                problems.append(f"{name} = {value:g} is below {bound.minimum:g}")
            elif bound.maximum is not None and value > bound.maximum:
                problems.append(f"{name} = {value:g} is above {bound.maximum:g}")
            else:
                met.append(f"{name} = {value:g} within bounds")
        return problems
