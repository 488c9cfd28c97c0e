"""API tokens: high-entropy secrets shown once, stored only as SHA-256 hashes.

A token looks like ``djt_<43 url-safe characters>`` (256 random bits). The
``djt_`` prefix lets secret scanners and log filters recognise a leaked token.
Only ``sha256(token)`` is stored; a presented token is hashed and looked up
by its hash, then compared in constant time (the primitives are
:mod:`donjon.credentials.secrets`, shared with the gateway's API keys).
A token's public id (``tok_...``) names it in listings, events and revocations.
"""

from __future__ import annotations

import re
import secrets
from dataclasses import dataclass, field
from datetime import datetime

from donjon.credentials.secrets import SCOPE_PATTERN, hash_secret, new_secret, secrets_match

TOKEN_PREFIX = "djt_"  # noqa: S105 - a public prefix, not a secret
TOKEN_PATTERN = re.compile(r"^djt_[A-Za-z0-9_-]{43}$")


def new_token() -> str:
    """A fresh secret token (256 bits from the OS's CSPRNG)."""
    return new_secret(TOKEN_PREFIX)


def new_token_id() -> str:
    return "tok_" + secrets.token_hex(8)


def hash_token(token: str) -> str:
    """The hex SHA-256 of ``token``: what is stored, never the token itself."""
    return hash_secret(token)


def looks_like_token(credential: str) -> bool:
    return bool(TOKEN_PATTERN.match(credential))


def hashes_match(stored: str, presented_hash: str) -> bool:
    """Constant-time comparison of two token hashes."""
    return secrets_match(stored, presented_hash)


def check_scopes(scopes: tuple[str, ...]) -> tuple[str, ...]:
    """Validate scope patterns; ValueError names the bad one."""
    for scope in scopes:
        if not SCOPE_PATTERN.match(scope):
            raise ValueError(
                f"bad token scope {scope!r}: use an action (dataset.read), "
                "a family (model.*), 'admin' or '*'"
            )
    return tuple(sorted(set(scopes)))


def scope_allows(scopes: frozenset[str] | None, action: str) -> bool:
    """Does a credential scoped to ``scopes`` cover ``action``? ``None`` is unscoped."""
    if scopes is None:
        return True
    if "*" in scopes or action in scopes:
        return True
    family = action.split(".", 1)[0]
    return f"{family}.*" in scopes


@dataclass(frozen=True, slots=True)
class TokenInfo:
    """What is stored about a token (never the secret)."""

    id: str
    owner: str
    scopes: tuple[str, ...]
    created_at: datetime
    expires_at: datetime | None
    revoked_at: datetime | None = None
    description: str = ""

    def active(self, now: datetime) -> bool:
        return self.revoked_at is None and (self.expires_at is None or now < self.expires_at)


@dataclass(frozen=True, slots=True)
class IssuedToken:
    """A token just issued: ``secret`` is shown once and never again.

    The secret is kept out of ``repr`` so a log line or traceback that prints
    this value does not leak it.
    """

    info: TokenInfo
    secret: str = field(repr=False)
