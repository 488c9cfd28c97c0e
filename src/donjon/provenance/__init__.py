"""Provenance: OMS-compatible model signing, SLSA training provenance, policies, ML-BOM.

Heavy optional parts (fairlearn evaluation, CycloneDX) are imported lazily by
their modules; this package needs ``cryptography`` (extra ``sign``).
"""

from donjon.provenance.errors import (
    MalformedSignature,
    Problem,
    SignatureMismatch,
    SigningError,
)
from donjon.provenance.hashing import HashOptions, Manifest, build_manifest
from donjon.provenance.keys import FileKeySigner, LocalKeyProvider, ProviderSigner
from donjon.provenance.sign import SignResult, sign_model
from donjon.provenance.verify import (
    CertificateTrust,
    KeyTrust,
    VerifiedModel,
    verify_model,
)

__all__ = [
    "CertificateTrust",
    "FileKeySigner",
    "HashOptions",
    "KeyTrust",
    "LocalKeyProvider",
    "MalformedSignature",
    "Manifest",
    "Problem",
    "ProviderSigner",
    "SignResult",
    "SignatureMismatch",
    "SigningError",
    "VerifiedModel",
    "build_manifest",
    "sign_model",
    "verify_model",
]
