"""``donjon verify``: check a model's OMS signature, and optionally a whole policy.

``donjon verify MODEL --signature model.sig --public-key pub.pem`` (or
``--certificate-chain ca.pem``, or keyless ``--identity ID --issuer URL``
with an optional ``--trust-root trusted_root.json``) mirrors ``model_signing
verify key|certificate|sigstore``. With
``--policy policy.toml`` it also checks provenance, datasets, evaluation
metrics and the scan result. Exit 0 verified, 1 failed verification, 2 usage.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

from donjon.cli.sign import require
from donjon.cli.state import CliState, ExitCode, state
from donjon.cli.verify_options import (
    CertificateChain,
    Identity,
    Issuer,
    Offline,
    PolicyFile,
    PublicKey,
    TrustRoot,
)

if TYPE_CHECKING:
    from donjon.provenance.verify import Trust


@dataclass(frozen=True)
class ModelTarget:
    """What to verify: a folder or file, its signature, and the name reports give it."""

    folder: Path
    signature: Path
    name: str
    hub: bool = False  # a Hugging Face snapshot: its entries are links into the cache's blobs


def resolve_model(model: Path, signature: Path | None) -> ModelTarget:
    """A path as given, or ``hf://ORG/NAME[@REV]`` resolved like ``donjon scan`` does."""
    from donjon.cli.scan_hf import hub_spec, is_hub_source

    if is_hub_source(model):
        from donjon.hub import repo_snapshot

        snapshot, files = repo_snapshot(hub_spec(model))  # every link checked
        sig = signature if signature is not None else snapshot / "model.sig"
        return ModelTarget(snapshot, sig, files[0].snapshot_label, hub=True)
    if not model.exists():
        raise typer.BadParameter(f"{model} does not exist", param_hint="MODEL")
    return ModelTarget(model, signature or Path("model.sig"), str(model))


def verify(
    ctx: typer.Context,
    model: Annotated[
        Path,
        typer.Argument(help="Model folder or file to verify, or hf://ORG/NAME[@REVISION]."),
    ],
    signature: Annotated[
        Path | None,
        typer.Option(
            "--signature",
            help="The OMS signature bundle (default model.sig; in an hf:// snapshot, its "
            "model.sig).",
        ),
    ] = None,
    public_key: PublicKey = None,
    certificate_chain: CertificateChain = None,
    identity: Identity = None,
    issuer: Issuer = None,
    trust_root: TrustRoot = None,
    offline: Offline = False,
    ignore_unsigned_files: Annotated[
        bool, typer.Option("--ignore-unsigned-files", help="Do not fail on files added later.")
    ] = False,
    crl: Annotated[
        list[Path] | None,
        typer.Option(
            "--crl",
            help="Certificate revocation list (PEM or DER, repeatable); with it, every "
            "certificate below the trusted one must be covered by a current CRL of its issuer.",
        ),
    ] = None,
    unsafe_ignore_cert_expiry: Annotated[
        bool,
        typer.Option(
            "--unsafe-ignore-cert-expiry",
            help="Accept certificates outside their validity period (old bundles); logs a warning.",
        ),
    ] = False,
    policy: PolicyFile = None,
    provenance: Annotated[
        Path | None,
        typer.Option("--provenance", help="Provenance file (default <MODEL>.provenance.json)."),
    ] = None,
    scan_result: Annotated[
        Path | None, typer.Option("--scan-result", help="JSON result of the model's scan.")
    ] = None,
    workers: Annotated[
        int | None, typer.Option("--workers", min=1, help="Hashing threads (default: cores).")
    ] = None,
) -> int:
    """Verify MODEL against its signature (and a policy); exit 1 on any failure."""
    require("cryptography", "sign")
    from donjon.provenance import events
    from donjon.provenance.errors import SignatureMismatch
    from donjon.provenance.verify import verify_model

    cli = state(ctx)
    target = resolve_model(model, signature)
    model, signature, name = target.folder, target.signature, target.name
    keyless = identity is not None or issuer is not None or trust_root is not None or offline
    if policy is not None:
        if public_key is not None or certificate_chain or crl or unsafe_ignore_cert_expiry:
            raise typer.BadParameter(
                "with --policy, the trusted keys come from the policy file "
                "(--crl and --unsafe-ignore-cert-expiry do not apply)"
            )
        if keyless:
            raise typer.BadParameter(
                "--identity, --issuer and --trust-root do not go with --policy"
            )
        return run_policy(cli, target, policy, provenance, scan_result)
    if not signature.is_file():
        raise typer.BadParameter(f"{signature} does not exist", param_hint="--signature")
    trust = _trust(
        public_key,
        certificate_chain or [],
        crl or [],
        unsafe_ignore_cert_expiry=unsafe_ignore_cert_expiry,
        keyless=(identity, issuer, trust_root, offline) if keyless else None,
    )
    try:
        result = verify_model(
            model,
            signature,
            trust,
            ignore_unsigned_files=ignore_unsigned_files,
            workers=workers,
            follow_links=target.hub,
        )
    except SignatureMismatch as e:
        cli.app.bus.publish_all(events.verification_failed(name, e.problems))
        if cli.json:
            cli.print_json(
                {
                    "model": name,
                    "verified": False,
                    "problems": [
                        {"code": p.code, "path": p.path, "message": p.message} for p in e.problems
                    ],
                }
            )
        else:
            cli.err.print(f"Verification failed for {name}:", soft_wrap=True, markup=False)
            for problem in e.problems:
                cli.err.print(f"  - {problem.message}", soft_wrap=True, markup=False)
        return ExitCode.FINDINGS
    signer = result.signer
    cli.app.bus.publish(events.verified(name, result.subject_digest, signer))
    if cli.json:
        cli.print_json(
            {
                "model": name,
                "verified": True,
                "subject_digest": f"sha256:{result.subject_digest}",
                "signer": signer,
                "files": len(result.manifest.items),
            }
        )
    else:
        cli.out.print(f"Verification succeeded: {name} (signer {signer})", markup=False)
    return ExitCode.OK


def _trust(
    public_key: Path | None,
    chain: list[Path],
    crls: list[Path],
    *,
    unsafe_ignore_cert_expiry: bool,
    keyless: tuple[str | None, str | None, Path | None, bool] | None,
) -> Trust:
    """The one trust the options name: a key, certificates, or a keyless identity."""
    from donjon.provenance.certs import load_certificates
    from donjon.provenance.keys import load_public_key
    from donjon.provenance.validity import load_crls
    from donjon.provenance.verify import CertificateTrust, KeyTrust

    if (public_key is not None) + bool(chain) + (keyless is not None) != 1:
        raise typer.BadParameter(
            "give exactly one of --public-key, --certificate-chain and --identity/--issuer"
        )
    if (crls or unsafe_ignore_cert_expiry) and not chain:
        raise typer.BadParameter(
            "--crl and --unsafe-ignore-cert-expiry apply to --certificate-chain only"
        )
    if keyless is not None:
        from donjon.provenance.keyless import KeylessTrust

        identity, issuer, trust_root, offline = keyless
        if not identity or not issuer:
            raise typer.BadParameter(
                "a keyless signature is checked with both --identity and --issuer"
            )
        if trust_root is not None and offline:
            raise typer.BadParameter("--offline applies without --trust-root only")
        return KeylessTrust(identity, issuer, trust_root, offline)
    if public_key is not None:
        return KeyTrust(load_public_key(public_key))
    return CertificateTrust(
        load_certificates(chain),
        crls=load_crls(crls),
        unsafe_ignore_cert_expiry=unsafe_ignore_cert_expiry,
    )


def run_policy(
    cli: CliState,
    target: ModelTarget,
    policy_path: Path,
    provenance: Path | None,
    scan_result: Path | None,
) -> int:
    """``verify --policy``: every requirement checked, unmet ones listed, exit 1 if any."""
    from donjon.core.events import SecurityEvent
    from donjon.core.findings import Finding, Subject

    require("cryptography", "sign")
    from donjon.provenance import events
    from donjon.provenance.policy import Policy, ScanResultFile, check_policy
    from donjon.provenance.rules import POLICY_UNMET

    model, name = target.folder, target.name
    policy = Policy.load(policy_path)
    named = name if target.hub else None  # hf://ORG/NAME@COMMIT: scans name it so
    scan = ScanResultFile(scan_result, named) if scan_result is not None else None
    result = check_policy(
        model,
        policy,
        signature=target.signature,
        provenance=provenance,
        scan=scan,
        follow_links=target.hub,
    )
    signature_problems = [r.problem for r in result.unmet if r.problem and r.section == "signature"]
    cli.app.bus.publish_all(events.verification_failed(name, signature_problems))
    for requirement in result.unmet:
        if requirement.section == "signature" and requirement.problem:
            continue
        finding = Finding(
            POLICY_UNMET,
            Subject(model=name),
            str(requirement),
            evidence={"section": requirement.section, "policy": str(policy_path)},
        )
        cli.app.bus.publish(SecurityEvent.of_finding(finding, events.SOURCE))
    if result.passed:
        cli.app.bus.publish(
            events.activity(
                "policy", f"{name} meets policy {policy_path.name}", ok=True, model=name
            )
        )
    if cli.json:
        cli.print_json(
            {
                "model": name,
                "policy": str(policy_path),
                "passed": result.passed,
                "subject_digest": result.subject_digest and f"sha256:{result.subject_digest}",
                "unmet": [{"section": r.section, "message": r.message} for r in result.unmet],
                "met": list(result.met),
            }
        )
    elif result.passed:
        cli.out.print(f"Policy passed: {name}", markup=False)
        for line in result.met:
            cli.out.print(f"  + {line}", markup=False)
    else:
        cli.err.print(f"Policy failed for {name}:", soft_wrap=True, markup=False)
        for requirement in result.unmet:
            cli.err.print(f"  - {requirement}", soft_wrap=True, markup=False)
    return ExitCode.OK if result.passed else ExitCode.FINDINGS
