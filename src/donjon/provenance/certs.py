"""Local certificate chains: load, check usage, and verify a signing certificate offline.

Verification builds the path from the signing (leaf) certificate through the
intermediates carried in the bundle to one of the trust anchors the verifier
names, with ``cryptography``'s RFC 5280 path builder, at the leaf's
``notBefore`` like ``model-signing`` 1.1.1; the leaf must allow signing:
KeyUsage ``digitalSignature`` or EKU ``codeSigning``. Unlike ``model-signing``,
every certificate of the built chain must then also be valid at verification
time (``unsafe_ignore_cert_expiry`` opts out, with a warning), and CRLs the
verifier passes are checked offline (:mod:`donjon.provenance.validity`).
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID
from cryptography.x509.verification import (
    ExtensionPolicy,
    PolicyBuilder,
    Store,
)
from cryptography.x509.verification import (
    VerificationError as PathError,
)

from donjon.errors import InputError
from donjon.provenance.errors import Problem, SignatureMismatch, SigningError
from donjon.provenance.keys import check_curve, sign_bytes
from donjon.provenance.validity import (
    check_revocation,
    check_validity,
    describe,
    warn_ignored_expiry,
)


def load_certificates(paths: Iterable[Path]) -> list[x509.Certificate]:
    """Every PEM certificate in ``paths``; InputError names an unreadable or bad file."""
    certificates: list[x509.Certificate] = []
    for path in paths:
        try:
            data = path.read_bytes()
        except OSError as e:
            raise InputError(f"cannot read certificate file {path}: {e.strerror}") from e
        try:
            certificates += x509.load_pem_x509_certificates(data)
        except ValueError as e:
            raise InputError(f"{path} holds no valid PEM certificate") from e
    return certificates


def can_sign(certificate: x509.Certificate) -> bool:
    extensions = certificate.extensions
    try:
        if extensions.get_extension_for_class(x509.KeyUsage).value.digital_signature:
            return True
    except x509.ExtensionNotFound:
        pass
    try:
        usage = extensions.get_extension_for_class(x509.ExtendedKeyUsage).value
    except x509.ExtensionNotFound:
        return False
    return ExtendedKeyUsageOID.CODE_SIGNING in usage


@dataclass(frozen=True, slots=True)
class CertificateIdentity:
    """Who a verified signing certificate names."""

    subject: str
    issuer: str
    common_name: str | None
    emails: tuple[str, ...]
    uris: tuple[str, ...]
    fingerprint_sha256: str

    @classmethod
    def of(cls, certificate: x509.Certificate) -> CertificateIdentity:
        from cryptography.hazmat.primitives import hashes

        names = certificate.subject.get_attributes_for_oid(x509.NameOID.COMMON_NAME)
        emails: list[str] = []
        uris: list[str] = []
        try:
            san = certificate.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
            emails = san.get_values_for_type(x509.RFC822Name)
            uris = san.get_values_for_type(x509.UniformResourceIdentifier)
        except x509.ExtensionNotFound:
            pass
        return cls(
            subject=describe(certificate),
            issuer=certificate.issuer.rfc4514_string(),
            common_name=str(names[0].value) if names else None,
            emails=tuple(emails),
            uris=tuple(uris),
            fingerprint_sha256=certificate.fingerprint(hashes.SHA256()).hex(),
        )

    def matches(self, wanted: str) -> bool:
        """True when ``wanted`` is this certificate's subject, CN, an e-mail or URI SAN."""
        return wanted in (self.subject, self.common_name, *self.emails, *self.uris)


def verify_chain(
    leaf: x509.Certificate,
    intermediates: Sequence[x509.Certificate],
    anchors: Sequence[x509.Certificate],
    *,
    crls: Sequence[x509.CertificateRevocationList] = (),
    unsafe_ignore_cert_expiry: bool = False,
    at: dt.datetime | None = None,
) -> ec.EllipticCurvePublicKey:
    """Verify ``leaf`` up to one of ``anchors`` and return its key; SignatureMismatch says why not.

    ``at`` is the verification time (now by default): every certificate of the
    chain must be valid then, and ``crls`` (when given) must cover and clear it.
    """
    if not anchors:
        raise SignatureMismatch(
            [Problem("untrusted-certificate", "no trusted certificate was given")]
        )
    who = describe(leaf)
    builder = (
        PolicyBuilder()
        .store(Store(list(anchors)))
        .time(leaf.not_valid_before_utc)
        .max_chain_depth(8)
        .extension_policies(
            ca_policy=ExtensionPolicy.webpki_defaults_ca(),
            ee_policy=ExtensionPolicy.permit_all(),
        )
    )
    # A self-signed certificate in the bundle is a root: it is trusted only when the
    # verifier names it, so it never serves as an intermediate.
    usable = [c for c in intermediates if c.subject != c.issuer]
    try:
        chain = builder.build_client_verifier().verify(leaf, usable).chain
    except PathError as e:
        raise SignatureMismatch(
            [
                Problem(
                    "untrusted-certificate",
                    f"signing certificate {who!r} does not chain to a trusted certificate: {e}",
                )
            ]
        ) from e
    if not can_sign(leaf):
        raise SignatureMismatch(
            [
                Problem(
                    "untrusted-certificate",
                    f"signing certificate {who!r} is not allowed to sign "
                    "(needs KeyUsage digitalSignature or EKU codeSigning)",
                )
            ]
        )
    try:
        key = check_curve(leaf.public_key())
    except SigningError as e:
        raise SignatureMismatch([Problem("malformed-certificate", f"{who}: {e}")]) from e
    now = at or dt.datetime.now(dt.UTC)
    if unsafe_ignore_cert_expiry:
        warn_ignored_expiry(chain, now)
    else:
        check_validity(chain, now)
    if crls:
        check_revocation(chain, crls, now)
    return key


class CertificateSigner:
    """Signs with a private key whose public half is in a local signing certificate."""

    def __init__(
        self,
        key: ec.EllipticCurvePrivateKey,
        certificate: x509.Certificate,
        chain: Sequence[x509.Certificate] = (),
    ) -> None:
        if certificate.public_key() != key.public_key():
            raise SigningError("the signing certificate does not hold the private key's public key")
        if not can_sign(certificate):
            raise SigningError(
                f"certificate {describe(certificate)!r} is not allowed to sign "
                "(needs KeyUsage digitalSignature or EKU codeSigning)"
            )
        self._key = key
        self.certificate = certificate
        self.chain = tuple(chain)

    @property
    def public_key(self) -> ec.EllipticCurvePublicKey:
        return self._key.public_key()

    def sign(self, data: bytes) -> bytes:
        return sign_bytes(self._key, data)

    def __repr__(self) -> str:
        return f"CertificateSigner({describe(self.certificate)!r})"
