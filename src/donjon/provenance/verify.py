"""Verify an OMS signature natively with ``cryptography``: who signed, and what changed.

Trust comes from the verifier, never from the bundle: either a public key
(``--public-key``) or trust-anchor certificates (``--certificate-chain``). The
hashing options come from the signed ``serialization`` block, so a tampered
bundle cannot change how the model is hashed without breaking the signature.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, replace
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives.asymmetric import ec

from donjon.errors import InputError
from donjon.provenance.bundle import Bundle, manifest_from_statement
from donjon.provenance.certs import CertificateIdentity, verify_chain
from donjon.provenance.dsse import Envelope
from donjon.provenance.errors import (
    MalformedCertificate,
    MalformedSignature,
    Problem,
    SignatureMismatch,
)
from donjon.provenance.hashing import HashOptions, Manifest, build_manifest
from donjon.provenance.keyless import KeylessTrust, verify_keyless
from donjon.provenance.keys import check_curve, key_hint
from donjon.provenance.sign import signature_ignore


@dataclass(frozen=True, slots=True)
class KeyTrust:
    """Trust one public key."""

    public_key: ec.EllipticCurvePublicKey


@dataclass(frozen=True, slots=True)
class CertificateTrust:
    """Trust signing certificates that chain to one of ``anchors``.

    Every certificate of the chain must be valid now, unless
    ``unsafe_ignore_cert_expiry`` (a warning is logged); with ``crls``, each one
    below the anchor must be covered by a current CRL of its issuer and not listed.
    """

    anchors: Sequence[x509.Certificate]
    crls: Sequence[x509.CertificateRevocationList] = ()
    unsafe_ignore_cert_expiry: bool = False


Trust = KeyTrust | CertificateTrust | KeylessTrust


@dataclass(frozen=True, slots=True)
class VerifiedModel:
    """A model whose signature verified: its manifest and who signed it."""

    model: Path
    manifest: Manifest
    key_hint: str
    identity: CertificateIdentity | None = None
    keyless: KeylessTrust | None = None  # the identity and issuer a keyless signature proved

    @property
    def subject_digest(self) -> str:
        return self.manifest.subject_digest

    @property
    def signer(self) -> str:
        """Who signed, in words: an OIDC identity, a certificate's subject, or a key."""
        if self.keyless is not None:
            return f"{self.keyless.identity} (OIDC issuer {self.keyless.issuer}, Sigstore)"
        if self.identity is not None:
            return self.identity.subject
        return f"key {self.key_hint[:16]}"


def _fail(code: str, message: str, path: str | None = None) -> SignatureMismatch:
    return SignatureMismatch([Problem(code, message, path)])


def _signer_key(
    bundle: Bundle, trust: KeyTrust | CertificateTrust
) -> tuple[ec.EllipticCurvePublicKey, CertificateIdentity | None]:
    if isinstance(trust, KeyTrust):
        if bundle.certificates:
            leaf_key = bundle.certificates[0].public_key()
            if leaf_key != trust.public_key:
                raise _fail(
                    "wrong-key",
                    "key mismatch: the signature was made with a certificate whose key is "
                    "not the given public key",
                )
        elif bundle.key_hint and bundle.key_hint != key_hint(trust.public_key):
            raise _fail(
                "wrong-key",
                "key mismatch: the signature names a different public key than the one given",
            )
        return trust.public_key, None
    if not bundle.certificates:
        raise _fail(
            "untrusted-certificate",
            "the signature carries no certificate chain; verify it with --public-key",
        )
    leaf, *intermediates = bundle.certificates
    key = verify_chain(
        leaf,
        intermediates,
        trust.anchors,
        crls=trust.crls,
        unsafe_ignore_cert_expiry=trust.unsafe_ignore_cert_expiry,
    )
    return key, CertificateIdentity.of(leaf)


def compare(expected: Manifest, actual: Manifest) -> list[Problem]:
    """Every difference between the signed and the current manifest, file by file."""
    problems: list[Problem] = []
    signed, found = expected.digests(), actual.digests()
    for name in sorted(found.keys() - signed.keys()):
        problems.append(Problem("extra", f"extra file {name!r}: present but not signed", name))
    for name in sorted(signed.keys() - found.keys()):
        problems.append(Problem("missing", f"missing file {name!r}: signed but not found", name))
    signed_alg = {item.name: item.algorithm for item in expected.items}
    found_alg = {item.name: item.algorithm for item in actual.items}
    for name in sorted(signed.keys() & found.keys()):
        if signed_alg[name] != found_alg[name]:
            problems.append(
                Problem(
                    "changed",
                    f"file {name!r} was signed with {signed_alg[name]} but hashes "
                    f"as {found_alg[name]}",
                    name,
                )
            )
        elif signed[name] != found[name]:
            problems.append(
                Problem(
                    "changed",
                    f"changed file {name!r}: digest {found[name][:16]}... "
                    f"does not match the signed {signed[name][:16]}...",
                    name,
                )
            )
    return problems


def verify_model(
    model: Path,
    signature: Path,
    trust: Trust,
    *,
    ignore_unsigned_files: bool = False,
    workers: int | None = None,
    follow_links: bool = False,
) -> VerifiedModel:
    """Return the verified model or raise :class:`SignatureMismatch` listing every problem.

    A malformed bundle raises :class:`MalformedSignature`; both are
    ``VerificationError``. A model that cannot be read raises ``InputError``.
    ``follow_links`` hashes linked files as the files they link to, whatever the
    signature says: only for links the caller checked (a Hugging Face snapshot's
    entries, each a link into its repository's blobs).
    """
    if not model.exists():
        raise InputError(f"model {model} does not exist")
    if isinstance(trust, KeylessTrust):
        payload_type, payload, leaf = verify_keyless(signature, trust)
        envelope = Envelope(payload, payload_type, ())
        public_key = check_curve(leaf.public_key())
        identity: CertificateIdentity | None = CertificateIdentity.of(leaf)
    else:
        envelope, public_key, identity = _verified_envelope(signature, trust)
    try:
        expected = manifest_from_statement(envelope.statement())
    except MalformedSignature as e:
        raise _fail("malformed-signature", str(e)) from e
    try:
        options = HashOptions.from_serialization(expected.serialization, workers=workers)
    except InputError as e:
        raise _fail("unsupported", f"the signature's serialization is not supported: {e}") from e
    inside = signature_ignore(model, signature)
    if inside and model.is_dir():
        options = replace(options, ignore_paths=(*options.ignore_paths, inside))
    if follow_links:
        options = replace(options, allow_symlinks=True)
    only = expected.files if ignore_unsigned_files else None
    try:
        actual = build_manifest(model, options, only=only)
    except InputError as e:
        raise _fail("unsupported", f"cannot hash {model}: {e}") from e
    problems = compare(expected, actual)
    if problems:
        raise SignatureMismatch(problems)
    keyless = trust if isinstance(trust, KeylessTrust) else None
    return VerifiedModel(model, expected, key_hint(public_key), identity, keyless)


def _verified_envelope(
    signature: Path, trust: KeyTrust | CertificateTrust
) -> tuple[Envelope, ec.EllipticCurvePublicKey, CertificateIdentity | None]:
    """The envelope of a key or certificate-chain bundle, its signature checked."""
    try:
        bundle = Bundle.read(signature)
    except MalformedCertificate as e:
        raise _fail("malformed-certificate", str(e)) from e
    except MalformedSignature as e:
        raise _fail("malformed-signature", str(e)) from e
    public_key, identity = _signer_key(bundle, trust)
    if not bundle.envelope.verify(public_key):
        raise _fail(
            "bad-signature",
            "the signature does not verify: it was made by another key, or the signed "
            "manifest or signature bytes were altered",
        )
    return bundle.envelope, public_key, identity
