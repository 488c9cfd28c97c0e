"""The rules of ``donjon data``: manifests, provenance, poisoning, labels, backdoors, shift."""

from __future__ import annotations

from donjon.core.rules import Rule
from donjon.core.severity import Severity

MANIFEST_MISMATCH = Rule(
    id="DJ-DAT-001",
    title="Dataset content no longer matches its manifest",
    description=(
        "Records or files of a dataset version differ from the hashes its manifest recorded: "
        "the data, or the manifest's record table, was altered after it was manifested."
    ),
    remediation=(
        "Treat the version as tampered: restore it from a trusted copy, find who wrote to the "
        "store, and re-manifest only after review of the changed records."
    ),
    severity=Severity.HIGH,
    atlas=("AML.T0059", "AML.T0020"),
    owasp=("ML02",),
    mitigations=("AML.M0025", "AML.M0014"),
)

UNTRUSTED_SOURCE = Rule(
    id="DJ-DAT-002",
    title="Records from an unknown or untrusted source were quarantined",
    description=(
        "Records whose source is missing, unknown to the policy or explicitly denied were "
        "kept out of the admitted set and moved to a reviewable quarantine."
    ),
    remediation=(
        "Review the quarantined records; vet the source and add it to the trusted sources of "
        "the policy, or discard the records after review."
    ),
    severity=Severity.MEDIUM,
    atlas=("AML.T0019", "AML.T0020"),
    owasp=("ML02",),
    mitigations=("AML.M0025", "AML.M0007"),
)

LABEL_ISSUE = Rule(
    id="DJ-DAT-003",
    title="Records whose label contradicts their content (label manipulation)",
    description=(
        "Confident learning on out-of-sample predicted probabilities found records whose "
        "given label is very unlikely given their features: flipped or manipulated annotations."
    ),
    remediation=(
        "Quarantine the flagged records and have their labels reviewed; look for a common "
        "annotator, source or time window behind them."
    ),
    severity=Severity.HIGH,
    atlas=("AML.T0020", "AML.T0059"),
    owasp=("ML02",),
    mitigations=("AML.M0007",),
)

BACKDOOR_TRIGGER = Rule(
    id="DJ-DAT-004",
    title="Backdoor trigger: a fixed patch shared by records of one label",
    description=(
        "A small patch of identical values appears on a group of records that nearly all carry "
        "one label, and without the patch those records look like other classes: the signature "
        "of a planted backdoor trigger (BadNets)."
    ),
    remediation=(
        "Quarantine every record carrying the patch, retrain without them, and test the "
        "deployed model with the patch to learn whether the backdoor was already learned."
    ),
    severity=Severity.CRITICAL,
    atlas=("AML.T0020", "AML.T0043.004", "AML.T0018.000"),
    owasp=("ML02", "ML10"),
    mitigations=("AML.M0007",),
)

POISON_CLUSTER = Rule(
    id="DJ-DAT-005",
    title="A separated cluster inside one class (spectral signature / activation clustering)",
    description=(
        "Within one class, a minority of records forms a well separated cluster in feature or "
        "embedding space, along the class's top singular direction: the statistical trace "
        "backdoor poisons leave in learned representations."
    ),
    remediation=(
        "Inspect the cluster's records; if they share a pattern or a source, quarantine them "
        "and retrain."
    ),
    severity=Severity.HIGH,
    atlas=("AML.T0020", "AML.T0018.000"),
    owasp=("ML02", "ML10"),
    mitigations=("AML.M0007",),
)

NEAR_DUPLICATES = Rule(
    id="DJ-DAT-006",
    title="Injected duplicates or near-duplicates",
    description=(
        "Records are far closer to an earlier record than records of this data set naturally "
        "are to each other: copies injected to over-weight some content."
    ),
    remediation="Keep the earliest record of each group and quarantine the copies after review.",
    severity=Severity.MEDIUM,
    atlas=("AML.T0020",),
    owasp=("ML02",),
    mitigations=("AML.M0007",),
)

OUTLIERS = Rule(
    id="DJ-DAT-007",
    title="Records far outside the data set's distribution",
    description=(
        "Records whose distance to their nearest neighbours is extreme for this data set, by "
        "robust statistics: out-of-distribution or crafted records."
    ),
    remediation="Review the records; quarantine them if their origin cannot be explained.",
    severity=Severity.LOW,
    atlas=("AML.T0020",),
    owasp=("ML02",),
    mitigations=("AML.M0007",),
)

FEATURE_SHIFT = Rule(
    id="DJ-DAT-008",
    title="Feature distributions shifted between dataset versions",
    description=(
        "Two-sample tests (Kolmogorov-Smirnov for numbers, chi-square for categories), "
        "corrected for the number of features, found features whose distribution changed."
    ),
    remediation=(
        "Check that the change is expected (a new collection period, a new source); "
        "otherwise diff the versions and review the records that moved the distribution."
    ),
    severity=Severity.MEDIUM,
    atlas=("AML.T0059", "AML.T0020"),
    owasp=("ML02",),
    mitigations=("AML.M0025",),
)

CLASS_BALANCE_SHIFT = Rule(
    id="DJ-DAT-009",
    title="Class balance changed between dataset versions",
    description="A chi-square test found the label distribution of the new version changed.",
    remediation="Review the records added to, or relabelled in, the classes that grew.",
    severity=Severity.MEDIUM,
    atlas=("AML.T0020", "AML.T0059"),
    owasp=("ML02",),
    mitigations=("AML.M0025",),
)

SCHEMA_CHANGE = Rule(
    id="DJ-DAT-010",
    title="Schema changed between dataset versions",
    description="Columns were added, removed or changed type between two versions.",
    remediation="Confirm the schema change was intended and reviewed.",
    severity=Severity.LOW,
    atlas=("AML.T0059",),
    owasp=("ML02",),
    mitigations=("AML.M0025",),
)

LABEL_CHANGES = Rule(
    id="DJ-DAT-011",
    title="Labels changed between dataset versions",
    description=(
        "Records with the same content carry a different label in the new version; label "
        "changes concentrated from one class to another are the mark of targeted flipping."
    ),
    remediation="Review who relabelled the records and why before training on the new version.",
    severity=Severity.MEDIUM,
    atlas=("AML.T0020", "AML.T0059"),
    owasp=("ML02",),
    mitigations=("AML.M0025", "AML.M0007"),
)

RULES: tuple[Rule, ...] = (
    MANIFEST_MISMATCH,
    UNTRUSTED_SOURCE,
    LABEL_ISSUE,
    BACKDOOR_TRIGGER,
    POISON_CLUSTER,
    NEAR_DUPLICATES,
    OUTLIERS,
    FEATURE_SHIFT,
    CLASS_BALANCE_SHIFT,
    SCHEMA_CHANGE,
    LABEL_CHANGES,
)
