"""The threat taxonomies Donjon maps its rules to.

MITRE ATLAS (techniques, tactics and mitigations) as of ATLAS 5.6.0, and the
OWASP Machine Learning Security Top 10 (2023) and Top 10 for LLM Applications
(2025). Only the entries Donjon's rules use are kept; ids are stable, names are
copied from the pinned ATLAS data file and checked against it in the tests.
The OWASP <-> ATLAS cross-walk used by the rules is Donjon's own, not official.
"""

from __future__ import annotations

from dataclasses import dataclass

ATLAS_VERSION = "5.6.0"
ATLAS_URL = "https://atlas.mitre.org"


@dataclass(frozen=True, slots=True)
class Technique:
    """An ATLAS technique or sub-technique."""

    id: str
    name: str
    tactics: tuple[str, ...]
    parent: str | None = None

    @property
    def url(self) -> str:
        return f"{ATLAS_URL}/techniques/{self.id}"


@dataclass(frozen=True, slots=True)
class OwaspEntry:
    """One entry of an OWASP Top 10 list."""

    id: str
    name: str
    list_name: str


ATLAS_TACTICS: dict[str, str] = {
    "AML.TA0002": "Reconnaissance",
    "AML.TA0003": "Resource Development",
    "AML.TA0004": "Initial Access",
    "AML.TA0000": "AI Model Access",
    "AML.TA0005": "Execution",
    "AML.TA0006": "Persistence",
    "AML.TA0012": "Privilege Escalation",
    "AML.TA0007": "Defense Evasion",
    "AML.TA0013": "Credential Access",
    "AML.TA0008": "Discovery",
    "AML.TA0015": "Lateral Movement",
    "AML.TA0009": "Collection",
    "AML.TA0001": "AI Attack Staging",
    "AML.TA0014": "Command and Control",
    "AML.TA0010": "Exfiltration",
    "AML.TA0011": "Impact",
}

ATLAS_MITIGATIONS: dict[str, str] = {
    "AML.M0002": "Passive AI Output Obfuscation",
    "AML.M0004": "Restrict Number of AI Model Queries",
    "AML.M0005": "Control Access to AI Models and Data at Rest",
    "AML.M0007": "Sanitize Training Data",
    "AML.M0008": "Validate AI Model",
    "AML.M0011": "Restrict Library Loading",
    "AML.M0013": "Code Signing",
    "AML.M0014": "Verify AI Artifacts",
    "AML.M0015": "Adversarial Input Detection",
    "AML.M0016": "Vulnerability Scanning",
    "AML.M0019": "Control Access to AI Models and Data in Production",
    "AML.M0023": "AI Bill of Materials",
    "AML.M0024": "AI Telemetry Logging",
    "AML.M0025": "Maintain AI Dataset Provenance",
}

_PARENTS: dict[str, Technique] = {}


def _tech(technique_id: str, name: str, *tactics: str) -> Technique:
    technique = Technique(technique_id, name, tactics)
    _PARENTS[technique_id] = technique
    return technique


def _sub(technique_id: str, name: str) -> Technique:
    parent = _PARENTS[technique_id.rsplit(".", 1)[0]]
    return Technique(technique_id, name, parent.tactics, parent.id)


ATLAS_TECHNIQUES: dict[str, Technique] = {
    t.id: t
    for t in (
        _tech("AML.T0005", "Create Proxy AI Model", "AML.TA0001"),
        _sub("AML.T0005.001", "Train Proxy via Replication"),
        _tech("AML.T0007", "Discover AI Artifacts", "AML.TA0008"),
        _tech("AML.T0010", "AI Supply Chain Compromise", "AML.TA0004"),
        _sub("AML.T0010.001", "AI Software"),
        _sub("AML.T0010.002", "Data"),
        _sub("AML.T0010.003", "Model"),
        _tech("AML.T0011", "User Execution", "AML.TA0005"),
        _sub("AML.T0011.000", "Unsafe AI Artifacts"),
        _tech("AML.T0012", "Valid Accounts", "AML.TA0004", "AML.TA0012"),
        _tech("AML.T0013", "Discover AI Model Ontology", "AML.TA0008"),
        _tech("AML.T0014", "Discover AI Model Family", "AML.TA0008"),
        _tech("AML.T0015", "Evade AI Model", "AML.TA0004", "AML.TA0007", "AML.TA0011"),
        _tech("AML.T0018", "Manipulate AI Model", "AML.TA0006", "AML.TA0001"),
        _sub("AML.T0018.000", "Poison AI Model"),
        _sub("AML.T0018.001", "Modify AI Model Architecture"),
        _sub("AML.T0018.002", "Embed Malware"),
        _tech("AML.T0019", "Publish Poisoned Datasets", "AML.TA0003"),
        _tech("AML.T0020", "Poison Training Data", "AML.TA0003", "AML.TA0006"),
        _tech("AML.T0024", "Exfiltration via AI Inference API", "AML.TA0010"),
        _sub("AML.T0024.000", "Infer Training Data Membership"),
        _sub("AML.T0024.001", "Invert AI Model"),
        _sub("AML.T0024.002", "Extract AI Model"),
        _tech("AML.T0025", "Exfiltration via Cyber Means", "AML.TA0010"),
        _tech("AML.T0029", "Denial of AI Service", "AML.TA0011"),
        _tech("AML.T0031", "Erode AI Model Integrity", "AML.TA0011"),
        _tech("AML.T0034", "Cost Harvesting", "AML.TA0011"),
        _sub("AML.T0034.000", "Excessive Queries"),
        _tech("AML.T0035", "AI Artifact Collection", "AML.TA0009"),
        _tech("AML.T0036", "Data from Information Repositories", "AML.TA0009"),
        _tech("AML.T0040", "AI Model Inference API Access", "AML.TA0000"),
        _tech("AML.T0042", "Verify Attack", "AML.TA0001"),
        _tech("AML.T0043", "Craft Adversarial Data", "AML.TA0001"),
        _sub("AML.T0043.000", "White-Box Optimization"),
        _sub("AML.T0043.001", "Black-Box Optimization"),
        _sub("AML.T0043.002", "Black-Box Transfer"),
        _sub("AML.T0043.003", "Manual Modification"),
        _sub("AML.T0043.004", "Insert Backdoor Trigger"),
        _tech("AML.T0044", "Full AI Model Access", "AML.TA0000"),
        _tech("AML.T0046", "Spamming AI System with Chaff Data", "AML.TA0011"),
        _tech("AML.T0048", "External Harms", "AML.TA0011"),
        _sub("AML.T0048.004", "AI Intellectual Property Theft"),
        _tech("AML.T0051", "LLM Prompt Injection", "AML.TA0005"),
        _tech("AML.T0058", "Publish Poisoned Models", "AML.TA0003"),
        _tech("AML.T0059", "Erode Dataset Integrity", "AML.TA0011"),
        _tech("AML.T0063", "Discover AI Model Outputs", "AML.TA0008"),
        _tech("AML.T0070", "RAG Poisoning", "AML.TA0006"),
        _tech("AML.T0076", "Corrupt AI Model", "AML.TA0007"),
    )
}

_ML = "OWASP Machine Learning Security Top 10 (2023)"
_LLM = "OWASP Top 10 for LLM Applications (2025)"

OWASP_ENTRIES: dict[str, OwaspEntry] = {
    e.id: e
    for e in (
        OwaspEntry("ML01", "Input Manipulation Attack", _ML),
        OwaspEntry("ML02", "Data Poisoning Attack", _ML),
        OwaspEntry("ML03", "Model Inversion Attack", _ML),
        OwaspEntry("ML04", "Membership Inference Attack", _ML),
        OwaspEntry("ML05", "Model Theft", _ML),
        OwaspEntry("ML06", "AI Supply Chain Attacks", _ML),
        OwaspEntry("ML07", "Transfer Learning Attack", _ML),
        OwaspEntry("ML08", "Model Skewing", _ML),
        OwaspEntry("ML09", "Output Integrity Attack", _ML),
        OwaspEntry("ML10", "Model Poisoning", _ML),
        OwaspEntry("LLM01", "Prompt Injection", _LLM),
        OwaspEntry("LLM02", "Sensitive Information Disclosure", _LLM),
        OwaspEntry("LLM03", "Supply Chain", _LLM),
        OwaspEntry("LLM04", "Data and Model Poisoning", _LLM),
        OwaspEntry("LLM05", "Improper Output Handling", _LLM),
        OwaspEntry("LLM06", "Excessive Agency", _LLM),
        OwaspEntry("LLM07", "System Prompt Leakage", _LLM),
        OwaspEntry("LLM08", "Vector and Embedding Weaknesses", _LLM),
        OwaspEntry("LLM09", "Misinformation", _LLM),
        OwaspEntry("LLM10", "Unbounded Consumption", _LLM),
    )
}


def technique(technique_id: str) -> Technique:
    """Return the ATLAS technique ``technique_id``; KeyError names unknown ids."""
    try:
        return ATLAS_TECHNIQUES[technique_id]
    except KeyError:
        raise KeyError(f"unknown ATLAS technique {technique_id!r}") from None


def owasp(entry_id: str) -> OwaspEntry:
    """Return the OWASP entry ``entry_id`` (``ML06``, ``LLM03`` ...)."""
    try:
        return OWASP_ENTRIES[entry_id]
    except KeyError:
        raise KeyError(f"unknown OWASP Top 10 entry {entry_id!r}") from None
