"""Credential primitives shared by the vault and the gateway: one implementation.

Below the capabilities (``authz``, ``gateway``), above the core: secrets shown
once and stored as SHA-256 hashes (:mod:`.secrets`), the stand-alone API-key file
(:mod:`.keyfile`), and JWTs verified against a JWKS (:mod:`.jwt`, PyJWT; JWKS
URLs fetched and cached by PyJWT's ``PyJWKClient``).
"""

from donjon.credentials.jwt import ASYMMETRIC, PRINCIPAL_ID, JwksSource, JwtVerifier
from donjon.credentials.keyfile import KEY_PREFIX, KeyEntry, KeyFile, new_api_key
from donjon.credentials.secrets import SCOPE_PATTERN, hash_secret, new_secret, secrets_match

__all__ = [
    "ASYMMETRIC",
    "KEY_PREFIX",
    "PRINCIPAL_ID",
    "SCOPE_PATTERN",
    "JwksSource",
    "JwtVerifier",
    "KeyEntry",
    "KeyFile",
    "hash_secret",
    "new_api_key",
    "new_secret",
    "secrets_match",
]
