"""Console login through an OpenID Connect provider: authorization code with PKCE.

Where ``vault.console_oidc_issuer`` and ``vault.console_oidc_client_id`` are set,
the login page offers the provider's own sign-in:

1. ``/ui/oidc/start`` reads the issuer's discovery document (its ``issuer`` must
   be the configured one), draws a ``state``, a ``nonce`` and a PKCE verifier,
   keeps them in a short-lived HttpOnly cookie scoped to ``/ui/oidc`` and sends
   the browser to the authorization endpoint (``code_challenge_method=S256``);
2. ``/ui/oidc/callback`` refuses a ``state`` that is not the cookie's, redeems
   the code with the verifier at the token endpoint, and verifies the ID token
   with the shared :class:`donjon.credentials.jwt.JwtVerifier` (signature from
   the issuer's JWKS through PyJWKClient, ``iss`` the configured issuer, ``aud``
   the client id, ``exp``) and its ``nonce`` against the cookie's;
3. the session keeps the ID token (sealed, like an API token) and re-verifies it
   on every request: the principal is its subject (``sub``, or the configured
   claim) with its groups, which the Cedar policies see as for any JWT.
"""

from __future__ import annotations

import base64
import hashlib
import json
import secrets
import threading
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlencode, urlsplit

import httpx

from donjon.core.identity import Principal
from donjon.credentials.jwt import JwksSource, JwtVerifier
from donjon.errors import AuthenticationError, ConfigError
from donjon.server.ui.sessions import same_secret

PREFIX = "oidc:"  # a session credential that is an ID token from the console's provider
PENDING_COOKIE = "donjon_oidc"
PENDING_SECONDS = 600


@dataclass(frozen=True)
class OidcConfig:
    issuer: str
    client_id: str
    client_secret: str | None = None
    scopes: str = "openid profile email"
    principal_claim: str = "sub"
    groups_claim: str = "groups"
    algorithms: tuple[str, ...] = ("RS256", "ES256")


@dataclass(frozen=True)
class Pending:
    """What the browser carries between the start and the callback (HttpOnly cookie)."""

    state: str
    nonce: str
    verifier: str

    def encode(self) -> str:
        raw = json.dumps([self.state, self.nonce, self.verifier]).encode()
        return base64.urlsafe_b64encode(raw).decode()

    @classmethod
    def decode(cls, text: str | None) -> Pending | None:
        try:
            state, nonce, verifier = json.loads(base64.urlsafe_b64decode(text or ""))
        except (ValueError, TypeError):
            return None
        if not all(isinstance(v, str) and v for v in (state, nonce, verifier)):
            return None
        return cls(state, nonce, verifier)


def _challenge(verifier: str) -> str:
    digest = hashlib.sha256(verifier.encode("ascii")).digest()
    return base64.urlsafe_b64encode(digest).rstrip(b"=").decode()


def _check_url(url: str, what: str) -> None:
    parsed = urlsplit(url)
    loopback = parsed.hostname in ("127.0.0.1", "::1", "localhost")
    if parsed.scheme != "https" and not (parsed.scheme == "http" and loopback):
        raise ConfigError(f"the OIDC {what} must be https (plain http only on loopback): {url}")


class OidcLogin:
    """The console's OIDC client for one configured issuer."""

    def __init__(self, config: OidcConfig, timeout: float = 10.0) -> None:
        _check_url(config.issuer, "issuer")
        self.config = config
        self._timeout = timeout
        self._endpoints: dict[str, str] | None = None
        self._verifier: JwtVerifier | None = None
        self._lock = threading.Lock()

    def _discover(self) -> tuple[dict[str, str], JwtVerifier]:
        with self._lock:
            if self._endpoints is None or self._verifier is None:
                url = self.config.issuer.rstrip("/") + "/.well-known/openid-configuration"
                try:
                    document = httpx.get(url, timeout=self._timeout).raise_for_status().json()
                except (httpx.HTTPError, ValueError) as e:
                    raise AuthenticationError(
                        f"cannot read the OIDC discovery document: {e}"
                    ) from e
                if document.get("issuer") != self.config.issuer:
                    raise AuthenticationError(
                        f"the discovery document names issuer {document.get('issuer')!r}, "
                        f"not {self.config.issuer!r}"
                    )
                endpoints = {
                    k: str(document[k])
                    for k in ("authorization_endpoint", "token_endpoint", "jwks_uri")
                }
                for key, value in endpoints.items():
                    _check_url(value, key)
                self._verifier = JwtVerifier(
                    JwksSource(url=endpoints["jwks_uri"], timeout=self._timeout),
                    issuer=self.config.issuer,
                    audience=self.config.client_id,
                    algorithms=self.config.algorithms,
                    principal_claim=self.config.principal_claim,
                    groups_claim=self.config.groups_claim,
                )
                self._endpoints = endpoints
            return self._endpoints, self._verifier

    def start(self, redirect_uri: str) -> tuple[str, Pending]:
        """The authorization URL to send the browser to, and what it must bring back."""
        endpoints, _ = self._discover()
        pending = Pending(
            secrets.token_urlsafe(32), secrets.token_urlsafe(32), secrets.token_urlsafe(48)
        )
        query = {
            "response_type": "code",
            "client_id": self.config.client_id,
            "redirect_uri": redirect_uri,
            "scope": self.config.scopes,
            "state": pending.state,
            "nonce": pending.nonce,
            "code_challenge": _challenge(pending.verifier),
            "code_challenge_method": "S256",
        }
        return f"{endpoints['authorization_endpoint']}?{urlencode(query)}", pending

    def finish(
        self, pending: Pending | None, state: str, code: str, redirect_uri: str
    ) -> tuple[str, Principal]:
        """Check ``state``, redeem ``code``, verify the ID token and its nonce; the token
        (the session's credential) and its principal. AuthenticationError otherwise."""
        if pending is None or not same_secret(state, pending.state):
            raise AuthenticationError("the sign-in's state does not match this browser's")
        if not code:
            raise AuthenticationError("the provider sent no authorization code")
        endpoints, verifier = self._discover()
        form = {
            "grant_type": "authorization_code",
            "code": code,
            "redirect_uri": redirect_uri,
            "code_verifier": pending.verifier,
            "client_id": self.config.client_id,
        }
        auth = (self.config.client_id, self.config.client_secret or "")
        try:
            response = httpx.post(
                endpoints["token_endpoint"],
                data=form,
                auth=auth if self.config.client_secret else None,
                timeout=self._timeout,
            )
            tokens: Any = response.raise_for_status().json()
        except (httpx.HTTPError, ValueError) as e:
            raise AuthenticationError(f"the token endpoint refused the code: {e}") from e
        id_token = tokens.get("id_token") if isinstance(tokens, dict) else None
        if not isinstance(id_token, str):
            raise AuthenticationError("the token endpoint sent no ID token")
        claims = verifier.claims(id_token)
        if not same_secret(str(claims.get("nonce", "")), pending.nonce):
            raise AuthenticationError("the ID token's nonce is not this sign-in's")
        return PREFIX + id_token, verifier.principal(claims)

    def verify(self, credential: str) -> Principal:
        """A session's ID token, verified again (signature, issuer, audience, expiry)."""
        _, verifier = self._discover()
        return verifier.authenticate(credential.removeprefix(PREFIX))
