"""Keyless (Sigstore) signatures of models, through sigstore-python (extra ``sigstore``).

A keyless bundle is what ``model_signing sign sigstore`` writes: a Sigstore bundle
v0.3 whose verification material is a short-lived Fulcio certificate, naming the
signer's OIDC identity and issuer, and one Rekor transparency-log entry, around the
same DSSE envelope and OMS in-toto statement as Donjon's key and certificate modes.

Verification is sigstore-python's own ``Verifier.verify_dsse``: the certificate
chains to the trust root's Fulcio CA at the time the log recorded the entry, its
SCT verifies against the trust root's CT logs, the log entry's inclusion proof,
checkpoint and signed entry timestamp verify against its Rekor keys, the
certificate names the expected identity and issuer, and the envelope's signature
verifies with the certificate's key. With a trust root file it needs no network.

Signing needs the network (an OIDC identity token, Fulcio, Rekor): it cannot run
offline, and says so.
"""

from __future__ import annotations

import json
import os
import sys
from dataclasses import dataclass, replace
from pathlib import Path
from typing import TYPE_CHECKING

from cryptography import x509
from cryptography.exceptions import InvalidSignature, UnsupportedAlgorithm

from donjon.errors import ConfigError, InputError
from donjon.provenance.bundle import MAX_BUNDLE_BYTES, manifest_payload
from donjon.provenance.errors import Problem, SignatureMismatch, SigningError
from donjon.provenance.hashing import HashOptions, Manifest, build_manifest
from donjon.provenance.sign import signature_ignore

if TYPE_CHECKING:
    from collections.abc import Callable

    from sigstore.models import ClientTrustConfig, TrustedRoot

IDENTITY_TOKEN_ENV = "SIGSTORE_ID_TOKEN"  # noqa: S105 - a variable name (sigstore-python's)


@dataclass(frozen=True, slots=True)
class KeylessTrust:
    """Trust a keyless signature made by ``identity``, vouched for by OIDC ``issuer``.

    ``trust_root`` is a Sigstore ``trusted_root.json`` (a private instance, or a
    copy kept for offline use); without it, Sigstore's public instance, refreshed
    over TUF (or, ``offline``, the copy sigstore-python already holds).
    """

    identity: str
    issuer: str
    trust_root: Path | None = None
    offline: bool = False


def _sigstore() -> None:
    try:
        import sigstore  # noqa: F401
    except ImportError as e:
        raise ConfigError("keyless signatures need sigstore: pip install 'donjon[sigstore]'") from e


def trusted_root(trust: KeylessTrust) -> TrustedRoot:
    """The trust root to verify against; InputError for an unreadable or foreign file."""
    _sigstore()
    from sigstore.errors import Error as SigstoreError
    from sigstore.models import ClientTrustConfig, TrustedRoot

    if trust.trust_root is not None:
        try:
            return TrustedRoot.from_file(str(trust.trust_root))
        except OSError as e:
            raise InputError(f"cannot read trust root {trust.trust_root}: {e.strerror}") from e
        except (ValueError, SigstoreError) as e:
            raise InputError(
                f"{trust.trust_root} is not a Sigstore trusted_root.json: {str(e)[:300]}"
            ) from e
    try:
        return ClientTrustConfig.production(offline=trust.offline).trusted_root
    except (SigstoreError, OSError) as e:
        raise ConfigError(
            f"cannot refresh Sigstore's public trust root over TUF ({e}); offline, pass "
            "--trust-root trusted_root.json, or --offline to use the copy already held"
        ) from e


def _malformed(message: str) -> SignatureMismatch:
    return SignatureMismatch([Problem("malformed-signature", message)])


def _read(signature: Path) -> str:
    try:
        if signature.stat().st_size > MAX_BUNDLE_BYTES:
            raise _malformed(f"signature file {signature} is larger than 64 MiB")
        return signature.read_text(encoding="utf-8")
    except OSError as e:
        raise _malformed(f"cannot read signature file {signature}: {e}") from e
    except UnicodeDecodeError as e:
        raise _malformed(f"signature file {signature} is not UTF-8 JSON") from e


def _extension(certificate: x509.Certificate, oid: str) -> str | None:
    try:
        value = certificate.extensions.get_extension_for_oid(x509.ObjectIdentifier(oid)).value
    except x509.ExtensionNotFound:
        return None
    raw = getattr(value, "value", b"")
    return raw.decode(errors="replace") if isinstance(raw, bytes) else None


def _names(certificate: x509.Certificate) -> list[str]:
    try:
        san = certificate.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    except x509.ExtensionNotFound:
        return []
    return [
        *san.get_values_for_type(x509.RFC822Name),
        *san.get_values_for_type(x509.UniformResourceIdentifier),
    ]


def _logged_at(text: str) -> int | None:
    try:
        entry = json.loads(text)["verificationMaterial"]["tlogEntries"][0]
        return int(entry["integratedTime"])
    except (ValueError, KeyError, IndexError, TypeError):
        return None


def _problem(error: Exception, leaf: x509.Certificate, trust: KeylessTrust, text: str) -> Problem:
    """Sigstore's reason, as a stable code and a sentence naming what differs."""
    reason = str(error)
    if "OIDCIssuer" in reason:
        found = _extension(leaf, "1.3.6.1.4.1.57264.1.1")
        return Problem(
            "wrong-issuer",
            f"the signing certificate's OIDC issuer is {found!r}, not the expected "
            f"{trust.issuer!r}",
        )
    if "SANs do not match" in reason:
        return Problem(
            "wrong-identity",
            f"the signing certificate names {', '.join(_names(leaf)) or 'no identity'}, not the "
            f"expected identity {trust.identity!r}",
        )
    logged = _logged_at(text)
    start, end = leaf.not_valid_before_utc, leaf.not_valid_after_utc
    if logged is not None and not start.timestamp() <= logged <= end.timestamp():
        off = (
            f"{logged - end.timestamp():.0f} s after it expired"
            if logged > end.timestamp()
            else f"{start.timestamp() - logged:.0f} s before it was valid"
        )
        return Problem(
            "expired-certificate",
            f"the signing certificate (valid {start:%Y-%m-%d %H:%M:%S} to {end:%H:%M:%S} UTC) "
            f"was not valid when the transparency log recorded the signature ({off}): {reason}",
        )
    if "certificate chain" in reason or "SCT" in reason:
        return Problem(
            "untrusted-certificate",
            f"the signing certificate does not come from the trust root's Fulcio CA and CT log: "
            f"{reason}",
        )
    if "log entry" in reason or "inclusion" in reason or "checkpoint" in reason:
        return Problem("invalid-log-entry", f"the transparency log entry does not verify: {reason}")
    if "ignature" in reason:
        return Problem("bad-signature", f"the signature does not verify: {reason}")
    return Problem("keyless-verification-failed", f"keyless verification failed: {reason}")


def verify_keyless(signature: Path, trust: KeylessTrust) -> tuple[str, bytes, x509.Certificate]:
    """(payload type, payload, signing certificate) of a verified keyless bundle.

    Raises SignatureMismatch naming why it does not verify.
    """
    _sigstore()
    from sigstore.errors import Error as SigstoreError
    from sigstore.models import Bundle
    from sigstore.verify import Verifier
    from sigstore.verify.policy import Identity

    root = trusted_root(trust)
    text = _read(signature)
    try:
        bundle = Bundle.from_json(text)
    except (SigstoreError, ValueError) as e:
        kind = "" if '"certificate"' in text else " (a key or certificate-chain bundle?)"
        raise _malformed(f"not a keyless Sigstore bundle{kind}: {str(e)[:300]}") from e
    policy = Identity(identity=trust.identity, issuer=trust.issuer)
    try:
        payload_type, payload = Verifier(trusted_root=root).verify_dsse(bundle, policy)
    except (
        SigstoreError,
        ValueError,
        KeyError,
        TypeError,
        InvalidSignature,
        UnsupportedAlgorithm,
    ) as e:
        # anything a hostile bundle makes the verifier raise fails closed, with its reason
        raise SignatureMismatch([_problem(e, bundle.signing_certificate, trust, text)]) from e
    return payload_type, payload, bundle.signing_certificate


def identity_token(variable: str = IDENTITY_TOKEN_ENV) -> str | None:
    """The OIDC identity token from ``$variable``, or ambient credentials (CI); else None."""
    _sigstore()
    from sigstore.oidc import IdentityError, detect_credential

    token = os.environ.get(variable)
    if token:
        return token
    try:
        return detect_credential()
    except IdentityError as e:
        raise SigningError(f"ambient OIDC credentials were found but unusable: {e}") from e


def _interactive_token(config: ClientTrustConfig) -> str:
    """The browser flow of the instance's OIDC provider (a person at a terminal only)."""
    from sigstore.errors import Error as SigstoreError
    from sigstore.oidc import Issuer

    if not sys.stdin.isatty():
        raise SigningError(
            f"keyless signing needs an OIDC identity token: set ${IDENTITY_TOKEN_ENV}, or run "
            "where ambient credentials exist (GitHub Actions with id-token: write), or at a "
            "terminal for the browser sign-in"
        )
    try:
        return str(Issuer(config.signing_config.get_oidc_url()).identity_token())
    except (SigstoreError, OSError) as e:
        raise SigningError(f"the OIDC sign-in failed: {e}") from e


def _trust_config(path: Path | None, staging: bool) -> ClientTrustConfig:
    from sigstore.errors import Error as SigstoreError
    from sigstore.models import ClientTrustConfig

    if path is not None:
        try:
            return ClientTrustConfig.from_json(path.read_text(encoding="utf-8"))
        except OSError as e:
            raise SigningError(f"cannot read trust config {path}: {e.strerror}") from e
        except (ValueError, SigstoreError) as e:
            raise SigningError(f"{path} is not a Sigstore ClientTrustConfig: {e}") from e
    try:
        return ClientTrustConfig.staging() if staging else ClientTrustConfig.production()
    except (SigstoreError, OSError) as e:
        raise SigningError(
            f"keyless signing needs Sigstore's services, which are unreachable ({e}): it "
            "cannot run offline; sign with a key (--private-key) instead"
        ) from e


def sign_keyless(
    model: Path,
    signature: Path,
    options: HashOptions,
    *,
    token: str | None = None,
    trust_config: Path | None = None,
    staging: bool = False,
    progress: Callable[[int], None] | None = None,
) -> tuple[Manifest, x509.Certificate]:
    """Hash ``model``, sign its manifest keylessly and write the bundle to ``signature``.

    ``token`` is an OIDC identity token (else ambient credentials, else the
    browser sign-in at a terminal). Returns the manifest and the Fulcio
    certificate. Needs the network; every failure is a SigningError and leaves
    no signature file.
    """
    _sigstore()
    from sigstore.dsse import Statement
    from sigstore.errors import Error as SigstoreError
    from sigstore.models import Bundle
    from sigstore.oidc import IdentityError, IdentityToken
    from sigstore.sign import SigningContext

    if not model.exists():
        raise SigningError(f"model {model} does not exist")
    config = _trust_config(trust_config, staging)  # first: it fails fast offline
    raw = token or identity_token() or _interactive_token(config)
    try:
        identity = IdentityToken(raw)
    except IdentityError as e:
        raise SigningError(f"the OIDC identity token is not usable: {e}") from e
    inside = signature_ignore(model, signature)
    if inside and model.is_dir():
        options = replace(options, ignore_paths=(*options.ignore_paths, inside))
    manifest = build_manifest(model, options, progress=progress)
    try:
        context = SigningContext.from_trust_config(config)
        with context.signer(identity) as signer:
            bundle: Bundle = signer.sign_dsse(Statement(manifest_payload(manifest)))
    except (SigstoreError, OSError, ValueError) as e:  # requests' errors are OSErrors
        raise SigningError(f"keyless signing failed (is Sigstore reachable?): {e}") from e
    signature.parent.mkdir(parents=True, exist_ok=True)
    partial = signature.with_name(f".{signature.name}.{os.getpid()}.partial")
    try:
        partial.write_text(bundle.to_json() + "\n", encoding="utf-8")
        partial.replace(signature)
    finally:
        partial.unlink(missing_ok=True)
    return manifest, bundle.signing_certificate
