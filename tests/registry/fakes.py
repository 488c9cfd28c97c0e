"""Fakes of the access ports and the scanner gate, for the vault's tests.

They implement the ports (``Authenticator``, ``Authorizer``, ``ScanGate``)
honestly: a token table and a grant table that denies by default.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from donjon.core.artifacts import Digest
from donjon.core.decision import Decision, Effect
from donjon.core.identity import Principal
from donjon.errors import AuthenticationError
from donjon.registry import BlobReader, ScanVerdict


class TokenAuthenticator:
    """Bearer token -> principal, from a dict; anything else is refused."""

    def __init__(self, tokens: Mapping[str, Principal]) -> None:
        # keep hashes only, as the real one does
        self._by_hash = {hashlib.sha256(t.encode()).hexdigest(): p for t, p in tokens.items()}

    def authenticate(self, credential: str) -> Principal:
        principal = self._by_hash.get(hashlib.sha256(credential.encode()).hexdigest())
        if principal is None:
            raise AuthenticationError("unknown or revoked token")
        return principal


@dataclass(frozen=True)
class Grant:
    """``principal_id`` may do ``action`` on ``resource`` or anything under it."""

    principal_id: str
    action: str
    resource: str
    when: Mapping[str, Any] = field(default_factory=dict)


class TableAuthorizer:
    """Allows exactly what a grant covers; denies everything else."""

    def __init__(self, grants: Iterable[Grant] = ()) -> None:
        self.grants = list(grants)
        self.calls: list[tuple[str, str, str]] = []

    def allow(self, principal_id: str, action: str, resource: str, **when: Any) -> None:
        self.grants.append(Grant(principal_id, action, resource, when))

    def authorize(
        self,
        principal: Principal,
        action: str,
        resource: str,
        context: Mapping[str, Any] | None = None,
    ) -> Decision:
        self.calls.append((principal.id, action, resource))
        ctx = dict(context or {})
        for i, grant in enumerate(self.grants):
            if (
                grant.principal_id == principal.id
                and grant.action == action
                and _covers(grant.resource, resource)
                and all(ctx.get(k) == v for k, v in grant.when.items())
            ):
                return Decision(Effect.ALLOW, principal, action, resource, ("granted",), (f"g{i}",))
        return Decision.deny(principal, action, resource, "no grant")


def _covers(granted: str, requested: str) -> bool:
    base = requested.split("@", 1)[0]
    return requested == granted or base == granted or base.startswith(granted.rstrip("/") + "/")


class MarkerScanGate:
    """A stand-in scanner: bytes containing ``EVIL`` are not clean."""

    name = "marker-scanner"

    def __init__(self) -> None:
        self.scanned: list[Digest] = []

    def scan(
        self, name: str, digest: Digest, open_blob: BlobReader, filename: str | None = None
    ) -> ScanVerdict:
        self.scanned.append(digest)
        with open_blob() as stream:
            data = stream.read()
        if b"EVIL" in data:
            return ScanVerdict(False, summary="marker EVIL found")
        return ScanVerdict(True, summary="clean")
