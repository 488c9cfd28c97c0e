"""High-entropy secrets, shown once, stored and compared only as SHA-256 hashes."""

from __future__ import annotations

import hashlib
import hmac
import re
import secrets

# Donjon's scopes: an action (dataset.read), a family (model.*), 'admin' or '*'
SCOPE_PATTERN = re.compile(r"^(\*|admin|(dataset|model)\.(\*|[a-z]+))$")


def new_secret(prefix: str, nbytes: int = 32) -> str:
    """``prefix`` + ``nbytes`` from the OS's CSPRNG, URL-safe base64."""
    return prefix + secrets.token_urlsafe(nbytes)


def hash_secret(secret: str) -> str:
    """The hex SHA-256 of ``secret``: what is stored, never the secret itself."""
    return hashlib.sha256(secret.encode("utf-8")).hexdigest()


def secrets_match(stored_hash: str, presented_hash: str) -> bool:
    """Constant-time comparison of two hex hashes."""
    return hmac.compare_digest(stored_hash.encode("ascii"), presented_hash.encode("ascii"))
