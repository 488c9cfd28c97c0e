"""Identities, tokens and least-privilege policies (Cedar) -> ``Decision``.

Implements the core ``Authenticator`` (API tokens and OIDC / JWT bearer tokens)
and ``Authorizer`` (Cedar policies, deny by default) ports. Storage adapters
implement :class:`IdentityStore`; ``donjon.app`` wires them.
"""

from donjon.authz.authenticate import CredentialAuthenticator, TokenAuthenticator
from donjon.authz.authorizer import CedarAuthorizer
from donjon.authz.cedar import ACTIONS, SCHEMA, Policies, PolicyError, Resource, load_policies
from donjon.authz.identity import Account, IdentityService, IdentityStore
from donjon.authz.jwt import JwksSource, JwtAuthenticator
from donjon.authz.tokens import IssuedToken, TokenInfo

__all__ = [
    "ACTIONS",
    "SCHEMA",
    "Account",
    "CedarAuthorizer",
    "CredentialAuthenticator",
    "IdentityService",
    "IdentityStore",
    "IssuedToken",
    "JwksSource",
    "JwtAuthenticator",
    "Policies",
    "PolicyError",
    "Resource",
    "TokenAuthenticator",
    "TokenInfo",
    "load_policies",
]
