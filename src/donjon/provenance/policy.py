"""Verification policies: what a model must prove before it is trusted or promoted.

A policy is a TOML file (paths in it are relative to the file)::

    [signature]
    public_keys = ["keys/release.pub"]        # trusted signing keys, or
    certificate_chain = ["pki/root.pem"]      # trusted CA certificates ...
    identities = ["ml-release@example.com"]   # ... and the signer identities allowed

    [provenance]
    required = true
    builder_keys = ["keys/builder.pub"]
    builders = ["https://ci.example.com/runner"]
    datasets_need_manifest = true
    allow_dirty_source = false

    [metrics]
    accuracy = { min = 0.9 }
    demographic_parity_difference = { max = 0.1 }

    [scan]
    required = true
    max_severity = "low"                      # a finding above this fails

:func:`check_policy` returns a :class:`PolicyResult`: passed, or the list of
unmet requirements. The scan result reaches it through the :class:`ScanGate`
port (a capability never imports another): the CLI passes a result file, the
registry's promotion gate passes the wiring ``app.py`` gives it.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, Protocol
from urllib.parse import unquote

from cryptography import x509
from cryptography.hazmat.primitives.asymmetric import ec
from pydantic import BaseModel, ConfigDict, model_validator

from donjon.core.severity import Severity
from donjon.core.textfile import read_text
from donjon.core.tomlfile import read_toml, validate
from donjon.errors import InputError
from donjon.provenance.attest import provenance_path
from donjon.provenance.certs import load_certificates
from donjon.provenance.errors import Problem, SignatureMismatch
from donjon.provenance.hashing import HashOptions, build_manifest
from donjon.provenance.keys import load_public_key
from donjon.provenance.sign import signature_ignore
from donjon.provenance.slsa import verify_provenance
from donjon.provenance.verify import CertificateTrust, KeyTrust, Trust, verify_model


class _Table(BaseModel):
    model_config = ConfigDict(extra="forbid")


class SignatureTable(_Table):
    public_keys: list[str] = []
    certificate_chain: list[str] = []
    identities: list[str] = []
    ignore_unsigned_files: bool = False


class ProvenanceTable(_Table):
    required: bool = False
    builder_keys: list[str] = []
    builders: list[str] = []
    datasets_need_manifest: bool = False
    allow_dirty_source: bool = True


class MetricBound(_Table):
    min: float | None = None
    max: float | None = None

    @model_validator(mode="after")
    def _some_bound(self) -> MetricBound:
        if self.min is None and self.max is None:
            raise ValueError("a metric needs { min = x } and/or { max = y }")
        return self


class ScanTable(_Table):
    required: bool = False
    max_severity: str = "info"


class PolicyFile(_Table):
    """The verification policy file, validated before any key or certificate is read."""

    signature: SignatureTable = SignatureTable()
    provenance: ProvenanceTable = ProvenanceTable()
    metrics: dict[str, MetricBound] = {}
    scan: ScanTable = ScanTable()


SCAN_SCHEMA = "donjon.scan/v1"


@dataclass(frozen=True, slots=True)
class Bound:
    minimum: float | None = None
    maximum: float | None = None


@dataclass(frozen=True)
class Policy:
    public_keys: tuple[ec.EllipticCurvePublicKey, ...] = ()
    anchors: tuple[x509.Certificate, ...] = ()
    identities: tuple[str, ...] = ()
    ignore_unsigned_files: bool = False
    provenance_required: bool = False
    builder_keys: tuple[ec.EllipticCurvePublicKey, ...] = ()
    builders: tuple[str, ...] = ()
    datasets_need_manifest: bool = False
    allow_dirty_source: bool = True
    metrics: dict[str, Bound] = field(default_factory=dict)
    scan_required: bool = False
    scan_max_severity: Severity = Severity.INFO

    @classmethod
    def load(cls, path: Path) -> Policy:
        return cls.from_dict(read_toml(path, "policy"), path.parent)

    @classmethod
    def from_dict(cls, data: dict[str, Any], base: Path) -> Policy:
        for section in data:
            if section not in PolicyFile.model_fields:
                raise InputError(f"policy: unknown section [{section}]")
        doc = validate(PolicyFile, data, "policy")
        sig, prov, scan = doc.signature, doc.provenance, doc.scan
        metrics = {name: Bound(b.min, b.max) for name, b in doc.metrics.items()}
        try:
            max_severity = Severity.parse(scan.max_severity)
        except ValueError as e:
            raise InputError(f"policy: {e}") from e

        def paths(values: list[str]) -> list[Path]:
            return [base / v for v in values]

        policy = cls(
            public_keys=tuple(load_public_key(p) for p in paths(sig.public_keys)),
            anchors=tuple(load_certificates(paths(sig.certificate_chain))),
            identities=tuple(sig.identities),
            ignore_unsigned_files=sig.ignore_unsigned_files,
            provenance_required=prov.required,
            builder_keys=tuple(load_public_key(p) for p in paths(prov.builder_keys)),
            builders=tuple(prov.builders),
            datasets_need_manifest=prov.datasets_need_manifest,
            allow_dirty_source=prov.allow_dirty_source,
            metrics=metrics,
            scan_required=scan.required,
            scan_max_severity=max_severity,
        )
        if not policy.public_keys and not policy.anchors:
            raise InputError("policy: [signature] needs public_keys or certificate_chain")
        if (policy.provenance_required or policy.metrics) and not policy.builder_keys:
            raise InputError("policy: [provenance] needs builder_keys to trust provenance")
        return policy


@dataclass(frozen=True, slots=True)
class ScanStatus:
    """What the model scanner concluded about one model."""

    findings: int
    max_severity: Severity | None
    source: str = "scan"


class ScanGate(Protocol):
    """Port to the scanner's verdict; ``None`` when the model was never scanned."""

    def scan_status(self, model: Path) -> ScanStatus | None: ...


class ScanResultFile:
    """A ScanGate over the JSON or SARIF that ``donjon scan --format json|sarif`` writes.

    The JSON document (``"schema": "donjon.scan/v1"``) lists the scanned roots and, per
    file, its findings and any error; the SARIF log (2.1.0, tool ``donjon``) its roots in
    the run's ``properties``, each result's severity in its own, and the files it could not
    read as error notifications. The result speaks for ``model`` only when one of its roots
    is the model or a folder holding it (paths as given to ``scan``, read from the current
    folder or the result file's); a file the scanner could not read counts as a high
    finding (fail closed). A bare ``{"findings": [{"severity": ...}]}`` is still read.
    """

    def __init__(self, path: Path, name: str | None = None) -> None:
        """``name``: the model's name when it is not a local path (``hf://ORG/NAME@COMMIT``,
        the snapshot ``scan hf://ORG/NAME`` resolved): a result whose root or files carry
        that name covers it."""
        self.path = path
        self.name = name

    def scan_status(self, model: Path) -> ScanStatus | None:
        if not self.path.is_file():
            return None
        try:  # UTF-16 too: what PowerShell 5's `donjon scan ... > scan.json` writes
            data = json.loads(read_text(self.path, "scan result"))
        except ValueError as e:
            raise InputError(f"{self.path} is not a Donjon scan result: {e}") from e
        try:
            if isinstance(data, dict) and data.get("schema") == SCAN_SCHEMA:
                roots, files = data.get("roots", []), data["files"]
                if not self._covers(roots, model, [*roots, *(f["path"] for f in files)]):
                    return None
                levels = self._scan_levels(files)
            elif isinstance(data, dict) and "runs" in data and "version" in data:
                runs = [run for run in data["runs"] if self._donjon_run(run)]
                if not runs:
                    raise ValueError("no run of donjon's scanner in this SARIF log")
                covering = [r for r in runs if self._covers_run(r, model)]
                if not covering:
                    return None
                levels = [level for run in covering for level in self._sarif_levels(run)]
            else:
                findings = data["findings"] if isinstance(data, dict) else data
                levels = [Severity.parse(str(f["severity"])) for f in findings]
        except (ValueError, KeyError, TypeError) as e:
            raise InputError(
                f"{self.path} is not a Donjon scan result (write one with "
                f"`donjon scan MODEL --format json -o scan.json` or `--format sarif`): {e!r}"
            ) from e
        return ScanStatus(len(levels), max(levels, default=None), str(self.path))

    @staticmethod
    def _scan_levels(files: list[dict[str, Any]]) -> list[Severity]:
        levels = []
        for entry in files:
            levels += [Severity.parse(str(f["severity"])) for f in entry["findings"]]
            if entry.get("error"):
                levels.append(Severity.HIGH)  # unreadable is not clean
        return levels

    @staticmethod
    def _donjon_run(run: dict[str, Any]) -> bool:
        return bool(run["tool"]["driver"]["name"] == "donjon")

    @staticmethod
    def _sarif_levels(run: dict[str, Any]) -> list[Severity]:
        levels = [Severity.parse(str(r["properties"]["severity"])) for r in run["results"]]
        for invocation in run.get("invocations", []):
            if not invocation.get("executionSuccessful", False):
                levels.append(Severity.HIGH)  # a file it could not read is not clean
        return levels

    def _covers_run(self, run: dict[str, Any], model: Path) -> bool:
        roots = run.get("properties", {}).get("roots", [])
        snapshots = run.get("properties", {}).get("snapshots", [])
        uris = [
            unquote(where["physicalLocation"]["artifactLocation"]["uri"])
            for result in run["results"]
            for where in result.get("locations", [])
        ]
        return self._covers(roots, model, [*roots, *snapshots, *uris])

    def _covers(self, roots: list[str], model: Path, named: list[str] | None = None) -> bool:
        if self.name is not None and any(
            n == self.name or n.startswith(f"{self.name}/") for n in named or ()
        ):
            return True
        target = model.resolve()
        for root in roots:
            for base in (Path.cwd(), self.path.parent):
                where = (base / root).resolve()
                if target == where or where in target.parents:
                    return True
        return False


@dataclass(frozen=True, slots=True)
class Requirement:
    """One unmet requirement: which part of the policy, and why."""

    section: str
    message: str
    problem: Problem | None = None

    def __str__(self) -> str:
        return f"{self.section}: {self.message}"


@dataclass(frozen=True, slots=True)
class PolicyResult:
    model: Path
    unmet: tuple[Requirement, ...]
    met: tuple[str, ...]
    subject_digest: str | None = None

    @property
    def passed(self) -> bool:
        return not self.unmet


def _check_signature(
    model: Path,
    signature: Path,
    policy: Policy,
    unmet: list[Requirement],
    met: list[str],
    follow_links: bool = False,
) -> str | None:
    trusts: list[Trust] = [KeyTrust(k) for k in policy.public_keys]
    if policy.anchors:
        trusts.append(CertificateTrust(policy.anchors))
    if not signature.is_file():
        unmet.append(Requirement("signature", f"no signature file {signature}"))
        return None
    failures: list[Problem] = []
    for trust in trusts:
        try:
            verified = verify_model(
                model,
                signature,
                trust,
                ignore_unsigned_files=policy.ignore_unsigned_files,
                follow_links=follow_links,
            )
        except SignatureMismatch as e:
            failures.extend(e.problems)
            if any(p.code in {"changed", "missing", "extra"} for p in e.problems):
                break  # the content is wrong whoever signed it
            continue
        identity = verified.identity
        if identity is not None and not _allowed(identity.matches, policy.identities):
            message = f"signed by {identity.subject!r}, not an allowed identity"
            unmet.append(Requirement("signature", message))
            return verified.subject_digest
        met.append("signature: signed by a trusted key or certificate identity")
        return verified.subject_digest
    seen: set[tuple[str, str]] = set()
    for problem in failures:
        if (problem.code, problem.message) not in seen:
            seen.add((problem.code, problem.message))
            unmet.append(Requirement("signature", problem.message, problem))
    return None


def _allowed(matches: Callable[[str], bool], identities: tuple[str, ...]) -> bool:
    return not identities or any(matches(i) for i in identities)


def _model_digest(model: Path, signature: Path, follow_links: bool = False) -> str:
    options = HashOptions(allow_symlinks=follow_links)
    inside = signature_ignore(model, signature)
    if inside and model.is_dir():
        options = replace(options, ignore_paths=(inside,))
    return build_manifest(model, options).subject_digest


def check_policy(
    model: Path,
    policy: Policy,
    *,
    signature: Path,
    provenance: Path | None = None,
    scan: ScanGate | None = None,
    follow_links: bool = False,
) -> PolicyResult:
    """Check every requirement of ``policy`` for ``model``; never stops at the first.

    ``follow_links``: as :func:`~donjon.provenance.verify.verify_model` (checked links only).
    """
    if not model.exists():
        raise InputError(f"model {model} does not exist")
    unmet: list[Requirement] = []
    met: list[str] = []
    digest = _check_signature(model, signature, policy, unmet, met, follow_links)
    subject = digest or _model_digest(model, signature, follow_links)
    _check_provenance(model, policy, provenance, subject, unmet, met)
    _check_scan(model, policy, scan, unmet, met)
    return PolicyResult(model, tuple(unmet), tuple(met), digest)


def _check_provenance(
    model: Path,
    policy: Policy,
    path: Path | None,
    digest: str,
    unmet: list[Requirement],
    met: list[str],
) -> None:
    wanted = policy.provenance_required or bool(policy.metrics) or policy.datasets_need_manifest
    if not wanted:
        return
    path = path or provenance_path(model)
    if not path.is_file():
        unmet.append(Requirement("provenance", f"no provenance file {path.name}"))
        return
    try:
        verified = verify_provenance(path, policy.builder_keys, subject_digest=digest)
    except SignatureMismatch as e:
        unmet += [Requirement("provenance", p.message, p) for p in e.problems]
        return
    doc = verified.provenance
    if policy.builders and doc.builder not in policy.builders:
        unmet.append(Requirement("provenance", f"builder {doc.builder!r} is not trusted"))
    else:
        met.append("provenance: signed by a trusted builder, about this model")
    if policy.datasets_need_manifest:
        datasets = doc.dependencies("dataset")
        if not datasets:
            unmet.append(Requirement("provenance", "the run recorded no input dataset"))
        for dataset in datasets:
            if not (dataset.get("annotations") or {}).get("manifest"):
                name = dataset.get("name")
                unmet.append(Requirement("datasets", f"input dataset {name!r} has no manifest"))
    if not policy.allow_dirty_source:
        for source in doc.dependencies("source"):
            if (source.get("annotations") or {}).get("dirty"):
                unmet.append(
                    Requirement("provenance", "trained from a git work tree with local changes")
                )
    values = doc.metrics()
    for name, bound in sorted(policy.metrics.items()):
        value = values.get(name)
        if value is None:
            unmet.append(Requirement("metrics", f"{name} was not recorded"))
        elif bound.minimum is not None and value < bound.minimum:
            unmet.append(Requirement("metrics", f"{name} = {value:g} is below {bound.minimum:g}"))
        elif bound.maximum is not None and value > bound.maximum:
            unmet.append(Requirement("metrics", f"{name} = {value:g} is above {bound.maximum:g}"))
        else:
            met.append(f"metrics: {name} = {value:g} within bounds")


def _check_scan(
    model: Path,
    policy: Policy,
    scan: ScanGate | None,
    unmet: list[Requirement],
    met: list[str],
) -> None:
    if not policy.scan_required:
        return
    status = scan.scan_status(model) if scan is not None else None
    if status is None:
        unmet.append(Requirement("scan", "no scan result for this model"))
    elif status.max_severity is not None and status.max_severity > policy.scan_max_severity:
        unmet.append(
            Requirement(
                "scan",
                f"{status.findings} finding(s), worst {status.max_severity.label} "
                f"(allowed up to {policy.scan_max_severity.label})",
            )
        )
    else:
        met.append("scan: clean")


class PolicyGate:
    """A policy bound to its scan port: what the registry's promotion gate holds and calls."""

    def __init__(self, policy: Policy, scan: ScanGate | None = None) -> None:
        self.policy = policy
        self.scan = scan

    def check(self, model: Path, signature: Path, provenance: Path | None = None) -> PolicyResult:
        return check_policy(
            model, self.policy, signature=signature, provenance=provenance, scan=self.scan
        )


def gate(
    model: Path,
    policy_path: Path,
    *,
    signature: Path,
    provenance: Path | None = None,
    scan: ScanGate | None = None,
) -> PolicyResult:
    """The promotion gate's entry point: load the policy and check it."""
    return check_policy(
        model, Policy.load(policy_path), signature=signature, provenance=provenance, scan=scan
    )


__all__: Sequence[str] = (
    "Policy",
    "PolicyGate",
    "PolicyResult",
    "Requirement",
    "ScanGate",
    "ScanResultFile",
    "ScanStatus",
    "check_policy",
    "gate",
)
