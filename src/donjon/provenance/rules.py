"""Rules of the provenance capability: signatures (DJ-SIG) and provenance / policy (DJ-PRV)."""

from __future__ import annotations

from donjon.core.rules import Rule
from donjon.core.severity import Severity

_SUPPLY_CHAIN = ("AML.T0010", "AML.T0010.003")
_OWASP = ("ML06", "LLM03")
_MITIGATIONS = ("AML.M0013", "AML.M0014")

SIGNATURE_INVALID = Rule(
    id="DJ-SIG-001",
    title="Model signature does not verify",
    description=(
        "The OMS signature of the model could not be verified: it was made with another "
        "key, its certificate does not chain to a trusted certificate or may not sign, or "
        "the signature file was altered, swapped or is malformed. The model's origin is "
        "unproven: it may have been replaced in the supply chain."
    ),
    remediation=(
        "Do not load or promote the model. Obtain it again from its publisher, check which "
        "key or certificate identity should have signed it, and re-verify with "
        "`donjon verify MODEL --signature SIG --public-key KEY`."
    ),
    severity=Severity.HIGH,
    atlas=_SUPPLY_CHAIN,
    owasp=_OWASP,
    mitigations=_MITIGATIONS,
)

MODEL_ALTERED = Rule(
    id="DJ-SIG-002",
    title="Model file changed, missing or added after signing",
    description=(
        "A file of the model differs from the signed manifest: its content changed, it is "
        "missing, or it was added and is not covered by the signature. Tampering with "
        "weights or code-bearing files after signing is how a poisoned or backdoored model "
        "slips through a trusted channel."
    ),
    remediation=(
        "Treat the model as tampered: restore it from a trusted copy, or re-sign it only "
        "after a scan and a review of the change."
    ),
    severity=Severity.HIGH,
    atlas=_SUPPLY_CHAIN,
    owasp=_OWASP,
    mitigations=_MITIGATIONS,
)

PROVENANCE_INVALID = Rule(
    id="DJ-PRV-001",
    title="Training provenance missing or not verifiable",
    description=(
        "The model has no SLSA provenance attestation, or the attestation's DSSE signature "
        "does not verify with a trusted builder key, or its subject is not this model. "
        "Where and from what the model was built is unproven."
    ),
    remediation=(
        "Record the training run with `donjon.provenance.training_run(...)` and sign the "
        "attestation with the builder's key; verify with `donjon attest verify`."
    ),
    severity=Severity.MEDIUM,
    atlas=("AML.T0010", "AML.T0010.002"),
    owasp=_OWASP,
    mitigations=("AML.M0013", "AML.M0014", "AML.M0025"),
)

POLICY_UNMET = Rule(
    id="DJ-PRV-002",
    title="Model fails its verification policy",
    description=(
        "A requirement of the verification policy is not met: an untrusted signer or "
        "builder, an input dataset without a manifest, an evaluation metric (accuracy, "
        "demographic-parity or equalized-odds difference) outside its bounds, or a scan "
        "that is missing or not clean."
    ),
    remediation=(
        "Fix the unmet requirement listed in the finding, or change the policy through "
        "review; never promote a model that fails its policy."
    ),
    severity=Severity.HIGH,
    atlas=_SUPPLY_CHAIN,
    owasp=_OWASP,
    mitigations=("AML.M0008", "AML.M0014"),
)

RULES: tuple[Rule, ...] = (SIGNATURE_INVALID, MODEL_ALTERED, PROVENANCE_INVALID, POLICY_UNMET)
