"""Authenticators: API tokens and OIDC / JWT bearer tokens, never anonymous.

:class:`CredentialAuthenticator` implements the core ``Authenticator`` port: it
takes a credential as presented (``djt_...``, a JWT, either optionally after
``Bearer``), hands it to the token or JWT checker, and publishes one
``authentication`` event per attempt, success or failure. Events and errors
name the method and the token id, never the credential.
"""

from __future__ import annotations

import logging
from datetime import datetime

from donjon.authz.identity import IdentityStore, Publish, account_from_row
from donjon.authz.jwt import JwtAuthenticator
from donjon.authz.tokens import hash_token, hashes_match, looks_like_token
from donjon.core.clock import SystemClock
from donjon.core.events import EventKind, Outcome, SecurityEvent
from donjon.core.identity import Principal, PrincipalKind
from donjon.core.ports import Clock
from donjon.core.severity import Severity
from donjon.errors import AuthenticationError, ConfigError, StorageError

SOURCE = "authz"
log = logging.getLogger(__name__)


class TokenAuthenticator:
    """Checks ``djt_`` API tokens against the stored hashes."""

    method = "token"

    def __init__(self, store: IdentityStore, *, clock: Clock | None = None) -> None:
        self._store = store
        self._clock: Clock = clock or SystemClock()

    def authenticate(self, credential: str) -> Principal:
        return self.check(credential)[0]

    def check(self, credential: str) -> tuple[Principal, str]:
        """The principal and the token id; AuthenticationError says why not."""
        if not looks_like_token(credential):
            raise AuthenticationError("malformed API token")
        presented = hash_token(credential)
        found = self._store.find_token_and_account(presented)
        if found is None or not hashes_match(str(found[0]["hash"]), presented):
            raise AuthenticationError("unknown API token")
        row, account_row = found
        token_id = str(row["id"])
        now = self._clock.now()
        if row.get("revoked_at") is not None:
            raise AuthenticationError(f"API token {token_id} was revoked")
        expires_at: datetime | None = row.get("expires_at")
        if expires_at is not None and now >= expires_at:
            raise AuthenticationError(f"API token {token_id} expired at {expires_at.isoformat()}")
        if account_row is None:
            raise AuthenticationError(f"API token {token_id} belongs to no account")
        account = account_from_row(account_row)
        if account.disabled:
            raise AuthenticationError(f"account {account.id} is disabled")
        return account.principal(frozenset(row.get("scopes") or ())), token_id

    def service(self, account_id: str) -> Principal:
        """The service account a verified client certificate names (mTLS)."""
        row = self._store.get_account(account_id)
        if row is None:
            raise AuthenticationError(f"no service account {account_id!r} for the certificate")
        account = account_from_row(row)
        if account.kind is not PrincipalKind.SERVICE:
            raise AuthenticationError(f"{account.id} is not a service account")
        if account.disabled:
            raise AuthenticationError(f"account {account.id} is disabled")
        return account.principal()


def bare_credential(presented: str) -> str:
    """The credential alone: ``tok`` or ``Bearer tok``; anything else is refused.

    ``Bearer Bearer tok``, ``Bearer tok junk`` and other schemes are malformed,
    not stripped until something looks like a token.
    """
    parts = (presented or "").split()
    if parts and parts[0].lower() == "bearer" and len(parts) <= 2:
        parts = parts[1:]
    if not parts:
        raise AuthenticationError("no credential: anonymous access is not allowed")
    if len(parts) != 1 or parts[0].lower() == "bearer":
        raise AuthenticationError("malformed credential: expected 'Bearer <token>'")
    return parts[0]


class CredentialAuthenticator:
    """The ``Authenticator`` port: API tokens and, when configured, JWTs."""

    def __init__(
        self,
        tokens: TokenAuthenticator | None,
        jwt: JwtAuthenticator | None = None,
        *,
        publish: Publish | None = None,
    ) -> None:
        if tokens is None and jwt is None:
            raise ValueError("an authenticator needs API tokens, JWTs or both")
        self._tokens = tokens
        self._jwt = jwt
        self._publish = publish

    def authenticate(self, credential: str) -> Principal:
        """The principal; every attempt, success or failure, is published."""
        return self._authenticate(credential, record_failure=True)

    def verify(self, credential: str) -> Principal:
        """Like :meth:`authenticate`, but a failure is left to the caller to record.

        The vault server does so: it counts failures per source address and
        records them aggregated, so that a flood of bad tokens cannot grow the
        ledger without bound. A success is published here as usual.
        """
        return self._authenticate(credential, record_failure=False)

    def _authenticate(self, credential: str, *, record_failure: bool) -> Principal:
        method = "none"
        token_id: str | None = None
        try:
            credential = bare_credential(credential)
            if credential.startswith("djt_"):
                method = "token"
                if self._tokens is None:
                    raise AuthenticationError("API tokens are not accepted here")
                principal, token_id = self._tokens.check(credential)
            elif credential.count(".") == 2:
                method = "jwt"
                if self._jwt is None:
                    raise AuthenticationError("JWT bearer tokens are not configured")
                principal = self._jwt.authenticate(credential)
            else:
                raise AuthenticationError("unrecognised credential: expected djt_... or a JWT")
        except AuthenticationError as e:
            if record_failure:
                self._event(None, method, Outcome.FAILURE, str(e), token_id)
            raise
        except (StorageError, ConfigError) as e:  # a broken store or JWKS: fail closed
            log.error("cannot check a %s credential: %s", method, e)
            if record_failure:
                self._event(
                    None, method, Outcome.FAILURE, "credential checker unavailable", token_id
                )
            raise AuthenticationError("cannot check the credential right now") from e
        self._event(principal, method, Outcome.SUCCESS, "authenticated", token_id)
        return principal

    def authenticate_certificate(self, name: str) -> Principal:
        """The service account named by a client certificate the TLS layer verified."""
        try:
            if self._tokens is None:
                raise AuthenticationError("client certificates are not accepted here")
            principal = self._tokens.service(name)
        except AuthenticationError as e:
            self._event(None, "mtls", Outcome.FAILURE, str(e), None)
            raise
        except StorageError as e:
            log.error("cannot check a client certificate: %s", e)
            self._event(None, "mtls", Outcome.FAILURE, "credential checker unavailable", None)
            raise AuthenticationError("cannot check the credential right now") from e
        self._event(principal, "mtls", Outcome.SUCCESS, "authenticated", None)
        return principal

    def _event(
        self,
        principal: Principal | None,
        method: str,
        outcome: Outcome,
        reason: str,
        token_id: str | None,
    ) -> None:
        if self._publish is None:
            return
        who = str(principal) if principal else "unknown caller"
        attributes: dict[str, object] = {"method": method, "reason": reason}
        if token_id:
            attributes["token_id"] = token_id
        self._publish(
            SecurityEvent(
                kind=EventKind.AUTHENTICATION,
                source=SOURCE,
                action=f"authenticate.{method}",
                message=f"{who}: {reason}",
                severity=Severity.INFO if outcome is Outcome.SUCCESS else Severity.LOW,
                outcome=outcome,
                principal=principal,
                attributes=attributes,
            )
        )
