"""Detection rules of the inference firewall (``DJ-GW-*``)."""

from __future__ import annotations

from donjon.core.rules import Rule
from donjon.core.severity import Severity

EVASION_PROBING = Rule(
    id="DJ-GW-001",
    title="Query-based evasion: a principal walks close queries across a decision boundary",
    description=(
        "One principal searches for a decision boundary: either two of its queries in the "
        "window each lie on the segment between its previous query and an earlier one the "
        "model answered differently (within 2 % of the segment's length: a bisection or "
        "line search, as HopSkipJump, Boundary Attack and sign-OPT begin), or many "
        "distinct, near-identical queries straddle a boundary (closer than half the "
        "training data's 1 % nearest-neighbour distance, with two labels). Exact "
        "duplicates (retries) are not counted; natural records are almost never collinear "
        "to 2 %, nor that close."
    ),
    remediation=(
        "Block or throttle the principal, review its recent queries, and consider label-only "
        "or coarsened outputs for this model."
    ),
    severity=Severity.HIGH,
    atlas=("AML.T0043", "AML.T0015", "AML.T0040"),
    owasp=("ML01",),
    mitigations=("AML.M0015", "AML.M0004"),
)

EXTRACTION = Rule(
    id="DJ-GW-002",
    title="Model extraction: a principal's query distribution departs from the reference data",
    description=(
        "A sequential test finds that most of one principal's queries are synthetic: far "
        "from the training data (1.5 times its calibrated 99th-percentile distance) or off "
        "its value grid (noise, surrogate data sets for KnockoffNets or CopycatCNN), or "
        "derived from the principal's own earlier queries (closer than 90 % of natural "
        "records are to their nearest neighbour: Jacobian-based augmentation). H0 'at most "
        "half are synthetic' is rejected at alpha 1e-6 (exact binomial tail), so covariate "
        "shift and jittered re-sends, which make a minority of such queries, do not fire."
    ),
    remediation=(
        "Throttle or block the principal, lower its query budget, and harden this model's "
        "outputs (top-k, rounding, label-only)."
    ),
    severity=Severity.HIGH,
    atlas=("AML.T0024.002", "AML.T0040"),
    owasp=("ML05",),
    mitigations=("AML.M0004", "AML.M0002"),
)

QUERY_BUDGET = Rule(
    id="DJ-GW-003",
    title="Cumulative query budget exhausted",
    description=(
        "A principal has sent more queries to one model than its cumulative budget allows. "
        "Extraction with natural data looks like normal traffic; a budget bounds how much of "
        "the model any one principal can copy."
    ),
    remediation="Review whether the principal needs this volume; raise its budget explicitly.",
    severity=Severity.MEDIUM,
    atlas=("AML.T0024.002", "AML.T0034"),
    owasp=("ML05",),
    mitigations=("AML.M0004",),
)

ADVERSARIAL_INPUT = Rule(
    id="DJ-GW-004",
    title="Out-of-distribution or adversarial input",
    description=(
        "One input lies farther from the reference profile of the training data than the "
        "calibrated per-input threshold (nearest-neighbour distance above its 99th "
        "percentile on held-out reference data), or off the value grid of the training data, "
        "or with more features outside the training data's per-feature range than all but "
        "0.5 % of held-out reference rows (sign-gradient perturbations such as FGSM and PGD "
        "push the constant background of the data off its range): the only per-request "
        "handle on one-shot transfer attacks."
    ),
    remediation="Inspect the input; if such inputs are legitimate, rebuild the profile with them.",
    severity=Severity.MEDIUM,
    atlas=("AML.T0043", "AML.T0015"),
    owasp=("ML01",),
    mitigations=("AML.M0015",),
)

MEMBERSHIP_PROBING = Rule(
    id="DJ-GW-005",
    title="Membership-inference probing: one record queried with many small perturbations",
    description=(
        "One principal sends many distinct, near-identical variants of the same record: the "
        "query pattern of label-only and noise-robustness membership-inference attacks that "
        "estimate how stable the model's answer is around a candidate training record."
    ),
    remediation="Block the principal and consider label-only outputs for sensitive models.",
    severity=Severity.HIGH,
    atlas=("AML.T0024.000", "AML.T0040"),
    owasp=("ML04",),
    mitigations=("AML.M0004", "AML.M0002"),
)

AUTH_FAILURE = Rule(
    id="DJ-GW-006",
    title="Request refused: missing or invalid credentials",
    description="A request to a guarded model carried no valid API key or JWT.",
    remediation="Check the caller's credentials; repeated failures may be credential stuffing.",
    severity=Severity.LOW,
    atlas=("AML.T0040", "AML.T0012"),
    mitigations=("AML.M0019",),
)

QUOTA_EXCEEDED = Rule(
    id="DJ-GW-007",
    title="Rate quota exceeded",
    description="A principal, or the gateway as a whole, exceeded its token-bucket rate quota.",
    remediation="Slow the client down or raise its quota explicitly.",
    severity=Severity.LOW,
    atlas=("AML.T0034", "AML.T0029"),
    owasp=("LLM10",),
    mitigations=("AML.M0004",),
)

INVALID_REQUEST = Rule(
    id="DJ-GW-008",
    title="Request rejected by validation",
    description=(
        "A request did not match the model's declared input contract (shape, dtype, value "
        "range, size, body format)."
    ),
    remediation="Fix the client; repeated malformed requests may be fuzzing of the model API.",
    severity=Severity.LOW,
    atlas=("AML.T0040",),
    owasp=("ML01",),
    mitigations=("AML.M0015",),
)

FAIL_CLOSED = Rule(
    id="DJ-GW-009",
    title="Gateway error: request denied (fail closed)",
    description="An unexpected error inside the gateway's pipeline; the request was denied.",
    remediation="Read the gateway's log for the request id and fix the cause.",
    severity=Severity.MEDIUM,
    mitigations=("AML.M0019",),
)

UNREADABLE_RESPONSE = Rule(
    id="DJ-GW-010",
    title="Model answer unreadable: forwarded without hardening or labels",
    description=(
        "The gateway could not find the scores or labels in the model server's answer (an "
        "unknown response shape, or not JSON). The answer was forwarded as it is: output "
        "hardening (top-k, rounding, label-only) was not applied and the detectors that need "
        "the model's labels (evasion, membership) learned nothing from it."
    ),
    remediation=(
        "Set the model's 'output' to the key or JSON pointer of its scores (and 'output_kind'), "
        "or fix the model server's answers."
    ),
    severity=Severity.MEDIUM,
    atlas=("AML.T0024",),
    owasp=("ML05",),
    mitigations=("AML.M0002",),
)

STOLEN_MODEL = Rule(
    id="DJ-GW-011",
    title="Model theft proven: a suspect model reproduces the gateway's watermarked answers",
    description=(
        "Queried on the inputs one principal sent, whose answers the gateway had changed to "
        "keyed labels (watermarks, under 0.5 % of answers), a suspect model gives those keyed "
        "labels far more often than on look-alike inputs that were answered truthfully: the "
        "exact binomial tail under the look-alike rate (or the rate measured on independent "
        "models) and Fisher's exact test are both below alpha (1e-6 by default). A model "
        "trained on other data has no reason to prefer the keyed wrong labels; a surrogate "
        "trained on that principal's answers has learnt them. The signed verdict lists the "
        "digest of every input queried."
    ),
    remediation=(
        "Keep the signed verdict and the recorded inputs as evidence, revoke the principal's "
        "credentials, and act on the stolen model (takedown, legal notice)."
    ),
    severity=Severity.HIGH,
    atlas=("AML.T0024.002",),
    owasp=("ML05",),
    mitigations=("AML.M0002", "AML.M0004"),
)

INCONSISTENT_ANSWER = Rule(
    id="DJ-GW-012",
    title="Adversarial input: atypical of the class the model answered",
    description=(
        "After the model answered, the input is farther from the training rows of the "
        "class it was given than the calibrated quantile (0.995) of natural rows from their "
        "own class (and than 99.25 % of benign changes of them: one feature jittered, sensor "
        "noise): the sum over features of each feature's squared standardised residual "
        "given the others (a shared covariance), on log-compressed features, after the "
        "benign gain and offset alignment, the largest term left out. A transfer attack "
        "(FGSM, PGD from a surrogate) changes the answer while the input keeps the shape of "
        "its old class, pushed in a direction that breaks how its features move together. "
        "By default an alert; in block mode the answer is withheld."
    ),
    remediation=(
        "Inspect the input and the answer; if such inputs are legitimate for that class, "
        "rebuild the profile with them (and their labels)."
    ),
    severity=Severity.MEDIUM,
    atlas=("AML.T0043",),
    owasp=("ML01",),
    mitigations=("AML.M0015",),
)

RULES: tuple[Rule, ...] = (
    EVASION_PROBING,
    EXTRACTION,
    QUERY_BUDGET,
    ADVERSARIAL_INPUT,
    MEMBERSHIP_PROBING,
    AUTH_FAILURE,
    QUOTA_EXCEEDED,
    INVALID_REQUEST,
    FAIL_CLOSED,
    UNREADABLE_RESPONSE,
    STOLEN_MODEL,
    INCONSISTENT_ANSWER,
)
