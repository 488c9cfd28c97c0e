"""Who is calling: the credential a request presents, then the principal it stands for.

Split in two so that the event loop does only the first (reading headers) and a worker
thread the second (the failed-authentication limit, the token lookup), in the same
thread call as the rest of the request's database work (:mod:`donjon.server.hot`).
A refused credential gets 401 "invalid credentials" (the reason goes to the ledger only);
failures are limited and aggregated per source address
(:mod:`donjon.server.auth_failures`).
"""

from __future__ import annotations

import logging
import re
import uuid
from dataclasses import dataclass
from typing import Protocol, runtime_checkable

from starlette.types import Scope

from donjon.core.identity import Principal, PrincipalKind
from donjon.core.ports import Authenticator
from donjon.errors import AuthenticationError
from donjon.server.auth_failures import FailedAuthLimiter
from donjon.server.tls import CLIENT_CERT_NAME

log = logging.getLogger(__name__)

INVALID_CREDENTIALS = "invalid credentials"
# RFC 6750: the scheme, one or more spaces, one b64token; nothing before or after.
BEARER = re.compile(r"[Bb][Ee][Aa][Rr][Ee][Rr] +([A-Za-z0-9._~+/-]+=*)")


class TooManyFailures(AuthenticationError):
    """A source address is over its failed-authentication limit (429)."""

    def __init__(self, retry_after: float) -> None:
        super().__init__("too many failed authentications from this address; retry later")
        self.retry_after = retry_after


@runtime_checkable
class CertAuthenticator(Protocol):
    """An authenticator that also maps a verified client certificate to a principal."""

    def authenticate_certificate(self, name: str) -> Principal: ...


@dataclass(frozen=True, slots=True)
class Presented:
    """What a request presents: its source, its id, its Authorization headers and the
    name in a client certificate the TLS layer verified."""

    source: str
    request_id: str
    authorization: tuple[str, ...]
    certified: str | None

    @classmethod
    def of(cls, scope: Scope) -> Presented:
        client = scope.get("client")
        state = scope.get("state") or {}
        values = tuple(
            value.decode("latin-1") for key, value in scope["headers"] if key == b"authorization"
        )
        certified = state.get(CLIENT_CERT_NAME)
        return cls(
            source=client[0] if client else "unknown",
            request_id=str(state.get("request_id") or uuid.uuid4().hex),
            authorization=values,
            certified=str(certified) if certified else None,
        )

    @property
    def has_bearer(self) -> bool:
        """A ``Bearer <something>`` first Authorization header (FastAPI's HTTPBearer test)."""
        if not self.authorization:
            return False
        scheme, _, credentials = self.authorization[0].partition(" ")
        return scheme.lower() == "bearer" and bool(credentials)


class Callers:
    """Turns what a request presents into a principal, or refuses it (fail closed)."""

    def __init__(self, authenticator: Authenticator, failures: FailedAuthLimiter) -> None:
        self.authenticator = authenticator
        self.failures = failures
        self._identify = getattr(authenticator, "verify", None) or authenticator.authenticate

    def principal(self, presented: Presented) -> Principal:
        """The principal (blocking: call it in a worker thread); AuthenticationError else."""
        source, request_id = presented.source, presented.request_id
        wait = self.failures.retry_after(source, request_id)
        if wait is not None:
            raise TooManyFailures(wait)
        authenticator = self.authenticator
        if (
            not presented.has_bearer
            and presented.certified
            and isinstance(authenticator, CertAuthenticator)
        ):
            try:  # a client certificate the TLS layer verified names a service account
                return authenticator.authenticate_certificate(presented.certified)
            except AuthenticationError:  # the authenticator recorded why
                raise AuthenticationError(INVALID_CREDENTIALS) from None
        try:
            principal = self._identify(bearer_token(list(presented.authorization)))
            if principal.kind is PrincipalKind.ANONYMOUS:
                raise AuthenticationError("anonymous principal refused")
        except AuthenticationError as e:
            self.failures.failed(source, request_id, str(e))
            raise AuthenticationError(INVALID_CREDENTIALS) from None
        except Exception as e:  # noqa: BLE001 - fail closed: an authenticator error refuses
            log.warning("authenticator failed: %s", type(e).__name__)
            self.failures.failed(source, request_id, f"authenticator error: {type(e).__name__}")
            raise AuthenticationError(INVALID_CREDENTIALS) from None
        return principal


def bearer_token(values: list[str]) -> str:
    """The token of the one ``Authorization: Bearer <token>`` header; AuthenticationError else."""
    if not values:
        raise AuthenticationError("missing bearer token")
    if len(values) > 1:
        raise AuthenticationError(f"{len(values)} Authorization headers")
    found = BEARER.fullmatch(values[0])
    if found is None or found.group(1).lower() == "bearer":
        raise AuthenticationError("malformed Authorization header: expected 'Bearer <token>'")
    return found.group(1)
