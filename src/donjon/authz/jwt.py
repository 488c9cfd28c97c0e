"""OIDC / JWT bearer tokens for the vault: the shared verifier, issuer and audience required.

The verification itself (allow-listed asymmetric algorithms, ``exp``, the JWKS
from a file or a URL through PyJWT's ``PyJWKClient``, key rotation) lives in
:mod:`donjon.credentials.jwt`, shared with the gateway.
"""

from __future__ import annotations

from collections.abc import Sequence

from donjon.credentials.jwt import ASYMMETRIC, PRINCIPAL_ID, JwksSource, JwtVerifier
from donjon.errors import ConfigError

__all__ = ["ASYMMETRIC", "PRINCIPAL_ID", "JwksSource", "JwtAuthenticator"]


class JwtAuthenticator(JwtVerifier):
    """A :class:`JwtVerifier` that insists on a trusted issuer and this audience."""

    def __init__(
        self,
        jwks: JwksSource,
        *,
        issuer: str,
        audience: str,
        algorithms: Sequence[str] = ("RS256", "ES256"),
        principal_claim: str = "sub",
        groups_claim: str = "groups",
        scope_claim: str = "scope",
        leeway: float = 30.0,
    ) -> None:
        super().__init__(
            jwks,
            issuer=issuer,
            audience=audience,
            algorithms=algorithms,
            principal_claim=principal_claim,
            groups_claim=groups_claim,
            scope_claim=scope_claim,
            leeway=leeway,
        )
        if not issuer or not audience:
            raise ConfigError("JWT checking needs an issuer and an audience")
