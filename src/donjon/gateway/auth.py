"""Authentication port and the stand-alone authenticators: API keys and JWT.

:class:`Authenticator` is the port: headers in, a :class:`Principal` out, or
:class:`AuthenticationError`. The vault's identities plug in through it
(``donjon.app`` wires them: :class:`VaultAuthenticator`); on its own the gateway reads

* an API-key file (JSON): keys look like ``djk_<id>_<secret>``; the file keeps
  only ``sha256(key)``, looked up by id and compared in constant time;
* a JWKS file or URL: JWTs are verified with PyJWT against its public keys, with
  the algorithms, issuer and audience configured, ``exp`` required.

Both are the shared implementations of :mod:`donjon.credentials`, the ones the
vault's tokens and JWTs use.

Keys travel as ``Authorization: Bearer <key or JWT>`` or ``X-API-Key: <key>``.

Behind an API gateway or service mesh that has already authenticated the caller,
:class:`TrustedHeaderAuthenticator` takes the principal from a configured header
(``X-Client-Id``), but only on connections from the trusted proxies' addresses
(CIDRs); the same header from anywhere else is refused, never believed.
"""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any, Protocol

from donjon.core.identity import Principal, PrincipalKind
from donjon.credentials import KEY_PREFIX, JwksSource, JwtVerifier, KeyEntry, KeyFile, new_api_key
from donjon.errors import AuthenticationError, ConfigError

__all__ = [
    "KEY_PREFIX",
    "ApiKeyAuthenticator",
    "Authenticator",
    "ChainAuthenticator",
    "CredentialPort",
    "JwtAuthenticator",
    "KeyEntry",
    "TrustedHeaderAuthenticator",
    "VaultAuthenticator",
    "credential",
    "new_api_key",
]

VAULT_TOKEN_PREFIX = "djt_"  # noqa: S105 - a prefix: the vault's API tokens
_HEADER_ID = re.compile(r"^[\x21-\x7e]{1,128}$")  # printable, no spaces
_HEADER_NAME = re.compile(r"^[A-Za-z0-9-]{1,64}$")


class Authenticator(Protocol):
    """Who is calling? Raise AuthenticationError when nobody valid is."""

    def authenticate(self, headers: Mapping[str, str]) -> Principal: ...


def credential(headers: Mapping[str, str]) -> str | None:
    """The bearer token or API key a request carries (header names lower-case)."""
    value = headers.get("authorization")
    if value is not None:
        scheme, _, token = value.partition(" ")
        if scheme.lower() != "bearer" or not token.strip():
            raise AuthenticationError("Authorization header must be 'Bearer <token>'")
        return token.strip()
    key = headers.get("x-api-key")
    return key.strip() if key else None


class ApiKeyAuthenticator:
    """API keys from a local key file (:class:`donjon.credentials.KeyFile`)."""

    def __init__(self, keys: KeyFile) -> None:
        self.keys = keys

    @classmethod
    def from_file(cls, path: Path) -> ApiKeyAuthenticator:
        return cls(KeyFile.load(path))

    def authenticate(self, headers: Mapping[str, str]) -> Principal:
        token = credential(headers)
        if token is None:
            raise AuthenticationError("no credentials")
        return self.verify(token)

    def verify(self, token: str) -> Principal:
        return self.keys.verify(token)


class JwtAuthenticator:
    """JWTs signed by a key of a JWKS (a file, or a URL fetched by PyJWT's ``PyJWKClient``),
    verified by the implementation the vault uses (:class:`donjon.credentials.JwtVerifier`).
    """

    def __init__(
        self,
        jwks: JwksSource,
        *,
        audience: str | None,
        issuer: str | None,
        algorithms: Sequence[str] = ("RS256", "ES256", "EdDSA"),
        groups_claim: str = "groups",
        leeway: float = 30.0,
    ) -> None:
        self._verifier = JwtVerifier(
            jwks,
            issuer=issuer,
            audience=audience,
            algorithms=algorithms,
            groups_claim=groups_claim,
            leeway=leeway,
        )

    @classmethod
    def from_file(cls, path: Path, **options: Any) -> JwtAuthenticator:
        source = JwksSource(path=path)
        source.keys()  # an unreadable or unusable key set stops the gateway at start-up
        return cls(source, **options)

    @classmethod
    def from_url(cls, url: str, **options: Any) -> JwtAuthenticator:
        return cls(JwksSource(url=url), **options)

    def authenticate(self, headers: Mapping[str, str]) -> Principal:
        token = credential(headers)
        if token is None:
            raise AuthenticationError("no credentials")
        return self.verify(token)

    def verify(self, token: str) -> Principal:
        try:
            return self._verifier.authenticate(token)
        except AuthenticationError as e:
            raise AuthenticationError(f"invalid JWT: {e}") from None
        except ConfigError as e:  # the key set went bad after start-up: refuse, fail closed
            raise AuthenticationError(f"cannot check JWTs right now: {e}") from None


class CredentialPort(Protocol):
    """The vault's ``Authenticator`` port (``donjon.core.ports``): a credential in, a
    principal out, AuthenticationError for a missing, unknown, revoked or expired one.
    ``verify`` records successes only: the gateway records each failure once itself,
    as a ``DJ-GW-006`` finding."""

    def verify(self, credential: str) -> Principal: ...


class VaultAuthenticator:
    """Callers authenticated by the vault's identities (its API tokens, its JWT issuer).

    The port checks the token against the vault's store on every request, so a
    revoked or expired token is refused at once, and records each attempt.
    """

    def __init__(self, port: CredentialPort) -> None:
        self.port = port

    def authenticate(self, headers: Mapping[str, str]) -> Principal:
        token = credential(headers)
        if token is None:
            raise AuthenticationError("no credentials: send 'Authorization: Bearer <token>'")
        return self.verify(token)

    def verify(self, token: str) -> Principal:
        principal = self.port.verify(token)
        if principal.kind not in (PrincipalKind.USER, PrincipalKind.SERVICE):
            raise AuthenticationError("the vault did not name a user or service account")
        return principal


class ChainAuthenticator:
    """API keys (``djk_...``) go to the key file, vault tokens (``djt_...``) to the vault,
    JWTs to the gateway's JWKS, or to the vault when the gateway has none."""

    def __init__(
        self,
        api_keys: ApiKeyAuthenticator | None = None,
        jwt_verifier: JwtAuthenticator | None = None,
        *,
        vault: VaultAuthenticator | None = None,
        allow_anonymous: bool = False,
    ) -> None:
        self.api_keys = api_keys
        self.jwt = jwt_verifier
        self.vault = vault
        self.allow_anonymous = allow_anonymous

    def authenticate(self, headers: Mapping[str, str]) -> Principal:
        token = credential(headers)
        if token is None:
            if self.allow_anonymous:
                return Principal.anonymous()
            raise AuthenticationError("no credentials: send 'Authorization: Bearer <token>'")
        if token.startswith(KEY_PREFIX) and self.api_keys is not None:
            return self.api_keys.verify(token)
        if token.startswith(VAULT_TOKEN_PREFIX) and self.vault is not None:
            return self.vault.verify(token)
        if token.count(".") == 2 and self.jwt is not None:
            return self.jwt.verify(token)
        if token.count(".") == 2 and self.vault is not None:
            return self.vault.verify(token)
        raise AuthenticationError("credential is neither a known API key nor an accepted JWT")


class TrustedHeaderAuthenticator:
    """The principal named by a header that a trusted proxy set (``X-Client-Id``)."""

    def __init__(
        self,
        header: str,
        trusted: Sequence[str],
        *,
        groups_header: str | None = None,
        kind: PrincipalKind = PrincipalKind.SERVICE,
    ) -> None:
        for name in (header, groups_header):
            if name is not None and not _HEADER_NAME.match(name):
                raise ConfigError(f"invalid header name {name!r}")
        if not trusted:
            raise ConfigError("a principal header needs auth.trusted_proxies (CIDRs)")
        try:
            self.trusted = tuple(ipaddress.ip_network(c, strict=False) for c in trusted)
        except ValueError as e:
            raise ConfigError(f"invalid trusted proxy address: {e}") from e
        self.header = header.lower()
        self.groups_header = groups_header.lower() if groups_header else None
        self.kind = kind

    def principal(self, headers: Mapping[str, str], client: str | None) -> Principal | None:
        """The principal the header names; None when the request carries no such header.

        AuthenticationError when it does but the connection is not from a trusted
        proxy (a caller naming itself), or the value is not a printable id.
        """
        value = headers.get(self.header)
        if value is None:
            return None
        if not self.trusts(client):
            raise AuthenticationError(
                f"the {self.header} header is accepted only from trusted proxies"
            )
        value = value.strip()
        if not _HEADER_ID.match(value):
            raise AuthenticationError(f"the {self.header} header is not a printable id")
        groups: tuple[str, ...] = ()
        if self.groups_header and (listed := headers.get(self.groups_header)):
            groups = tuple(g for g in (x.strip() for x in listed.split(",")) if g)
            if not all(_HEADER_ID.match(g) for g in groups):
                raise AuthenticationError(f"the {self.groups_header} header is malformed")
        return Principal(value, self.kind, groups=groups)

    def trusts(self, client: str | None) -> bool:
        if client is None:
            return False
        try:
            address = ipaddress.ip_address(client)
        except ValueError:
            return False
        if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
            address = address.ipv4_mapped
        return any(address in network for network in self.trusted)
