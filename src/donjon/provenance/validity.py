"""Is each certificate of a verified chain usable now: validity periods and offline CRLs.

The chain is the one ``cryptography``'s path builder returned (signing
certificate first, trust anchor last). Every certificate in it must be valid at
verification time, unless the verifier opts out by name (``--unsafe-ignore-
cert-expiry``, to check an old bundle; a warning is logged).

Revocation is offline and only from certificate revocation lists (CRLs) the
verifier passes (``--crl``, PEM or DER); nothing is fetched. With CRLs given,
each certificate below the trust anchor must be covered by a CRL from its
issuer (the next certificate of the chain), like OpenSSL's ``-crl_check_all``:
signed by that issuer's key, current at verification time (``thisUpdate`` <=
now <= ``nextUpdate``), and not listing the certificate's serial number. A
certificate that no CRL covers fails: a partial check would pass silently.
Delta CRLs and CRLs with an issuing distribution point (scoped, partitioned or
indirect CRLs) are refused rather than half understood.
"""

from __future__ import annotations

import datetime as dt
import logging
from collections.abc import Iterable, Sequence
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives.asymmetric import ec, ed448, ed25519, rsa

from donjon.errors import InputError
from donjon.provenance.errors import Problem, SignatureMismatch

log = logging.getLogger(__name__)
_PEM_CRL = b"-----BEGIN X509 CRL-----"
_UNSUPPORTED_CRL = (x509.DeltaCRLIndicator, x509.IssuingDistributionPoint)


def describe(certificate: x509.Certificate) -> str:
    return certificate.subject.rfc4514_string() or "(empty subject)"


def label(chain: Sequence[x509.Certificate], index: int) -> str:
    """``signing certificate 'CN=...'``, ``intermediate certificate ...`` or ``trusted ...``."""
    if index == 0:
        role = "signing certificate"
    elif index == len(chain) - 1:
        role = "trusted certificate"
    else:
        role = "intermediate certificate"
    return f"{role} {describe(chain[index])!r}"


def _utc(moment: dt.datetime) -> str:
    return moment.strftime("%Y-%m-%d %H:%M:%S UTC")


def window(certificate: x509.Certificate) -> str:
    return (
        f"valid from {_utc(certificate.not_valid_before_utc)} "
        f"to {_utc(certificate.not_valid_after_utc)}"
    )


def check_validity(chain: Sequence[x509.Certificate], at: dt.datetime) -> None:
    """Raise SignatureMismatch naming every certificate of ``chain`` not valid at ``at``."""
    problems = []
    for index, certificate in enumerate(chain):
        if certificate.not_valid_after_utc < at:
            state = "has expired"
        elif certificate.not_valid_before_utc > at:
            state = "is not yet valid"
        else:
            continue
        problems.append(
            Problem(
                "expired-certificate",
                f"{label(chain, index)} {state} ({window(certificate)}; verification time "
                f"{_utc(at)}); --unsafe-ignore-cert-expiry verifies an old bundle anyway",
            )
        )
    if problems:
        raise SignatureMismatch(problems)


def warn_ignored_expiry(chain: Sequence[x509.Certificate], at: dt.datetime) -> None:
    """The opt-out: log that validity is not checked, and which certificates it lets through."""
    log.warning("certificate validity periods are not checked (--unsafe-ignore-cert-expiry)")
    for index, certificate in enumerate(chain):
        if not certificate.not_valid_before_utc <= at <= certificate.not_valid_after_utc:
            log.warning(
                "%s is outside its validity period (%s) and was accepted anyway",
                label(chain, index),
                window(certificate),
            )


def load_crls(paths: Iterable[Path]) -> list[x509.CertificateRevocationList]:
    """Every CRL in ``paths`` (PEM, several per file, or DER); InputError names a bad file."""
    crls: list[x509.CertificateRevocationList] = []
    for path in paths:
        try:
            data = path.read_bytes()
        except OSError as e:
            raise InputError(f"cannot read CRL file {path}: {e.strerror}") from e
        try:
            if _PEM_CRL in data:
                blocks = data.split(_PEM_CRL)[1:]
                crls += [x509.load_pem_x509_crl(_PEM_CRL + block) for block in blocks]
            else:
                crls.append(x509.load_der_x509_crl(data))
        except ValueError as e:
            raise InputError(f"{path} holds no valid CRL (PEM or DER): {e}") from e
    return crls


def _signed_by(crl: x509.CertificateRevocationList, issuer: x509.Certificate) -> bool:
    key = issuer.public_key()
    if not isinstance(
        key,
        ec.EllipticCurvePublicKey
        | rsa.RSAPublicKey
        | ed25519.Ed25519PublicKey
        | ed448.Ed448PublicKey,
    ):
        return False
    return crl.is_signature_valid(key)


def _crl_problem(
    crl: x509.CertificateRevocationList, issuer: x509.Certificate, by: str, at: dt.datetime
) -> str | None:
    """Why ``crl`` (naming ``issuer``) cannot be used at ``at``, or None."""
    if not _signed_by(crl, issuer):
        return f"a CRL naming {by} as its issuer is not signed by its key"
    for extension in crl.extensions:
        if isinstance(extension.value, _UNSUPPORTED_CRL):
            return f"the CRL of {by} is a delta or scoped CRL, which is not supported"
    if crl.last_update_utc > at:
        return f"the CRL of {by} is not valid yet (issued {_utc(crl.last_update_utc)})"
    next_update = crl.next_update_utc
    if next_update is None:
        return f"the CRL of {by} has no nextUpdate, so its freshness is unknown"
    if next_update < at:
        return f"the CRL of {by} is out of date (next update was due {_utc(next_update)})"
    return None


def check_revocation(
    chain: Sequence[x509.Certificate],
    crls: Sequence[x509.CertificateRevocationList],
    at: dt.datetime,
) -> None:
    """Raise SignatureMismatch unless every certificate below the anchor is covered and live."""
    problems: list[Problem] = []
    for index in range(len(chain) - 1):
        certificate, issuer = chain[index], chain[index + 1]
        who, by = label(chain, index), label(chain, index + 1)
        candidates = [crl for crl in crls if crl.issuer == issuer.subject]
        if not candidates:
            problems.append(
                Problem("revocation-unchecked", f"no CRL from {by} was given to check {who}")
            )
            continue
        reasons = [_crl_problem(crl, issuer, by, at) for crl in candidates]
        if all(reasons):  # an old CRL next to a current one is fine; none usable is not
            problems += [Problem("revocation-unchecked", f"{r} (checking {who})") for r in reasons]
        # A listing in any CRL the issuer signed counts, even a stale one: revocation is final.
        for crl in candidates:
            revoked = crl.get_revoked_certificate_by_serial_number(certificate.serial_number)
            if revoked is not None and _signed_by(crl, issuer):
                problems.append(Problem("revoked-certificate", _revoked(who, by, revoked)))
                break
    if problems:
        raise SignatureMismatch(list(dict.fromkeys(problems)))


def _revoked(who: str, by: str, entry: x509.RevokedCertificate) -> str:
    try:
        reason = entry.extensions.get_extension_for_class(x509.CRLReason).value.reason.name
    except x509.ExtensionNotFound:
        reason = "unspecified"
    return (
        f"{who} (serial {entry.serial_number:#x}) was revoked on "
        f"{_utc(entry.revocation_date_utc)} (reason: {reason}) per the CRL of {by}"
    )
