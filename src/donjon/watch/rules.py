"""Rules of the deployed-model watch (``DJ-WT-*``)."""

from __future__ import annotations

from donjon.core.rules import Rule
from donjon.core.severity import Severity

MODEL_CHANGED = Rule(
    id="DJ-WT-001",
    title="Deployed model differs from the enrolled version",
    description=(
        "The endpoint answered the version's signed fingerprint (held-out rows and points next "
        "to its decision boundary, found by black-box bisection at enrolment) differently: "
        "more points moved beyond the enrolled tolerance than the tolerance's false-change "
        "rate explains (exact binomial tail below alpha). Another model, a retrain, a "
        "fine-tune, a different quantisation, a rollback or a backdoored copy answers many "
        "boundary points differently; the promoted version answers them the same."
    ),
    remediation=(
        "Find out what is deployed behind the endpoint: compare the serving image and weights "
        "with the vault's version digest, redeploy the promoted version, and investigate who "
        "changed it."
    ),
    severity=Severity.HIGH,
    atlas=("AML.T0018", "AML.T0010.003"),
    owasp=("ML06", "ML10"),
    mitigations=("AML.M0014", "AML.M0008"),
)

CHECK_FAILED = Rule(
    id="DJ-WT-002",
    title="Fingerprint check could not run",
    description=(
        "The watch could not check the deployed model: the endpoint did not answer, refused "
        "the prober, answered in a shape it cannot read or with a different number of rows, "
        "or the fingerprint in the vault failed its signature check. A model that cannot be "
        "checked is not known to be the promoted one."
    ),
    remediation=(
        "Check the endpoint's health and the prober's credential and grants; re-enrol the "
        "version if its fingerprint was lost or re-signed with an untrusted key."
    ),
    severity=Severity.MEDIUM,
    atlas=("AML.T0010",),
    owasp=("ML06",),
    mitigations=("AML.M0014",),
)

LESS_ROBUST = Rule(
    id="DJ-WT-003",
    title="Deployed version is less robust than the version before it",
    description=(
        "A robustness probe (random rays to the decision boundary from the fingerprint's "
        "held-out rows, the same rows and rays for every version enrolled from the same data) "
        "needed less perturbation to change "
        "the new version's answers than the last probe of the version before it, row by row: "
        "the one-sided Wilcoxon signed-rank test of the per-row log ratios is below alpha. An "
        "attacker needs smaller changes to evade the new version: a retrain without the "
        "former augmentation or regularisation, or a tampered deployment."
    ),
    remediation=(
        "Compare the two versions' training (augmentation, regularisation, data) and probe "
        "the previous version again; roll back or retrain with the hardening restored before "
        "an attacker finds the smaller perturbations."
    ),
    severity=Severity.MEDIUM,
    atlas=("AML.T0015", "AML.T0043.001"),
    owasp=("ML01",),
    mitigations=("AML.M0008", "AML.M0015"),
)

RULES: tuple[Rule, ...] = (MODEL_CHANGED, CHECK_FAILED, LESS_ROBUST)
