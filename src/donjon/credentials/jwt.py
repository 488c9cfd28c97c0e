"""JWT bearer tokens verified against a JSON Web Key Set (PyJWT), for every capability.

Only asymmetric algorithms from an allow-list pass (``none`` and HMAC never do, so
a public key cannot be abused as an HMAC secret); ``exp`` and the principal claim
are always required, issuer and audience whenever they are configured. The JWKS
comes from a file or from a URL, fetched and cached by PyJWT's ``PyJWKClient``; an
unknown ``kid`` triggers one refresh (key rotation), no more often than
``min_refresh`` seconds.
"""

from __future__ import annotations

import json
import re
import threading
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import jwt as pyjwt

from donjon.core.identity import Principal, PrincipalKind
from donjon.core.textfile import read_text
from donjon.credentials.secrets import SCOPE_PATTERN
from donjon.errors import AuthenticationError, ConfigError, InputError

ASYMMETRIC = frozenset(
    {"RS256", "RS384", "RS512", "PS256", "PS384", "PS512", "ES256", "ES384", "ES512", "EdDSA"}
)
PRINCIPAL_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._@+|:-]{0,254}$")


class JwksSource:
    """A JSON Web Key Set from a file or an HTTPS URL, cached for ``ttl`` seconds."""

    def __init__(
        self,
        *,
        path: Path | None = None,
        url: str | None = None,
        ttl: float = 300.0,
        min_refresh: float = 30.0,
        timeout: float = 5.0,
    ) -> None:
        if (path is None) == (url is None):
            raise ConfigError("a JWKS needs exactly one of a file path or a URL")
        self._client: pyjwt.PyJWKClient | None = None
        if url is not None:
            parsed = urlsplit(url)
            loopback = parsed.hostname in ("127.0.0.1", "::1", "localhost")
            if parsed.scheme != "https" and not (parsed.scheme == "http" and loopback):
                raise ConfigError(f"a JWKS URL must be https (plain http only on loopback): {url}")
            self._client = pyjwt.PyJWKClient(url, cache_jwk_set=True, lifespan=ttl, timeout=timeout)
        self._path = path
        self._url = url
        self._ttl = ttl
        self._min_refresh = min_refresh
        self._keys: pyjwt.PyJWKSet | None = None
        self._loaded_at = 0.0
        self._lock = threading.Lock()

    def keys(self, *, refresh: bool = False) -> pyjwt.PyJWKSet:
        with self._lock:
            age = time.monotonic() - self._loaded_at
            current = self._keys
            if current is None or age > self._ttl or (refresh and age > self._min_refresh):
                current = self._load(refresh=current is not None)
                self._keys = current
                self._loaded_at = time.monotonic()
            return current

    def _load(self, *, refresh: bool) -> pyjwt.PyJWKSet:
        if self._client is None:
            assert self._path is not None  # noqa: S101 - exactly one of path and url
            try:
                data: Any = json.loads(read_text(self._path, "JWKS file"))
            except (InputError, ValueError) as e:
                raise ConfigError(f"cannot read JWKS file {self._path}: {e}") from e
            if not isinstance(data, dict) or not isinstance(data.get("keys"), list):
                raise ConfigError("a JWKS must be a JSON object with a 'keys' list")
            try:
                return pyjwt.PyJWKSet.from_dict(data)
            except pyjwt.PyJWKSetError as e:
                raise ConfigError(f"unusable JWKS: {e}") from e
        try:
            return self._client.get_jwk_set(refresh=refresh)
        except pyjwt.PyJWKClientConnectionError as e:
            raise AuthenticationError(f"cannot fetch the JWKS from {self._url}: {e}") from e
        except (pyjwt.PyJWKClientError, pyjwt.PyJWKSetError) as e:
            raise ConfigError(f"unusable JWKS from {self._url}: {e}") from e


class JwtVerifier:
    """Turns a verified JWT into a principal: ``sub`` (or another claim), groups, scopes."""

    method = "jwt"

    def __init__(
        self,
        jwks: JwksSource,
        *,
        issuer: str | None,
        audience: str | None,
        algorithms: Sequence[str] = ("RS256", "ES256"),
        principal_claim: str = "sub",
        groups_claim: str = "groups",
        scope_claim: str = "scope",
        leeway: float = 30.0,
    ) -> None:
        bad = [alg for alg in algorithms if alg not in ASYMMETRIC]
        if bad:
            raise ConfigError(f"JWT algorithms must be asymmetric; refused {', '.join(bad)}")
        self._jwks = jwks
        self._issuer = issuer
        self._audience = audience
        self._algorithms = tuple(algorithms)
        self._principal_claim = principal_claim
        self._groups_claim = groups_claim
        self._scope_claim = scope_claim
        self._leeway = leeway
        required = ["exp", principal_claim]
        required += [c for c, v in (("iss", issuer), ("aud", audience)) if v]
        self._required = required

    def _key(self, token: str) -> tuple[pyjwt.PyJWK, str]:
        try:
            header = pyjwt.get_unverified_header(token)
        except pyjwt.DecodeError as e:
            raise AuthenticationError(f"malformed JWT: {e}") from None
        alg = header.get("alg")
        if alg not in self._algorithms:
            raise AuthenticationError(f"JWT algorithm {alg!r} is not allowed")
        kid = header.get("kid")
        keys = self._jwks.keys()
        for attempt in range(2):
            candidates = [k for k in keys.keys if kid is None or k.key_id == kid]
            if kid is None and len(candidates) > 1:
                raise AuthenticationError("JWT has no 'kid' and the JWKS holds several keys")
            if candidates:
                return candidates[0], str(alg)
            if attempt == 0:
                keys = self._jwks.keys(refresh=True)
        raise AuthenticationError(f"JWT key {str(kid)[:40]!r} is not in the JWKS")

    def authenticate(self, credential: str) -> Principal:
        return self._principal(self.claims(credential))

    def principal(self, claims: dict[str, Any]) -> Principal:
        """The principal of claims :meth:`claims` verified."""
        return self._principal(claims)

    def claims(self, credential: str) -> dict[str, Any]:
        """The verified claims of a JWT (signature, algorithm, exp, iss, aud); raises
        AuthenticationError otherwise."""
        key, alg = self._key(credential)
        try:
            claims = pyjwt.decode(
                credential,
                key.key,
                algorithms=[alg],
                audience=self._audience,
                issuer=self._issuer,
                leeway=self._leeway,
                options={"require": self._required, "verify_aud": self._audience is not None},
            )
        except pyjwt.ExpiredSignatureError:
            raise AuthenticationError("JWT expired") from None
        except pyjwt.InvalidAudienceError:
            raise AuthenticationError("JWT audience is not this service") from None
        except pyjwt.InvalidIssuerError:
            raise AuthenticationError("JWT issuer is not trusted") from None
        except pyjwt.InvalidSignatureError:
            raise AuthenticationError("JWT signature does not verify") from None
        except pyjwt.MissingRequiredClaimError as e:
            raise AuthenticationError(f"JWT lacks the {e.claim!r} claim") from None
        except pyjwt.InvalidTokenError as e:
            raise AuthenticationError(f"invalid JWT: {e}") from None
        found: dict[str, Any] = claims
        return found

    def _principal(self, claims: dict[str, Any]) -> Principal:
        subject = claims.get(self._principal_claim)
        if not isinstance(subject, str) or not PRINCIPAL_ID.match(subject):
            raise AuthenticationError(f"JWT claim {self._principal_claim!r} is not a usable id")
        groups = claims.get(self._groups_claim) or []
        if not isinstance(groups, list) or not all(isinstance(g, str) for g in groups):
            raise AuthenticationError(f"JWT claim {self._groups_claim!r} must be a list of names")
        scope = claims.get(self._scope_claim)
        scopes: frozenset[str] | None = None
        if isinstance(scope, str):
            # Only Donjon's own scopes narrow access; "openid profile" alone does not.
            ours = frozenset(s for s in scope.split() if SCOPE_PATTERN.match(s))
            scopes = ours or None
        elif scope is not None:
            raise AuthenticationError(f"JWT claim {self._scope_claim!r} must be a string")
        name = claims.get("name") if isinstance(claims.get("name"), str) else None
        return Principal(subject, PrincipalKind.USER, name, tuple(sorted(set(groups))), scopes)
