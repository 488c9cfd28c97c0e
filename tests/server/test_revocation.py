"""Revoking a token or disabling an account takes effect at once, on every replica.

Each request reads its token and the owner's account in one query (nothing is cached
between requests), so a change made through one replica, or the CLI, refuses the very
next request that reaches another.
"""

from __future__ import annotations

from pathlib import Path

import httpx
import pytest

from donjon.authz import CredentialAuthenticator, IdentityService, TokenAuthenticator
from donjon.server import ServerLimits, create_app
from donjon.storage.identity import SqlIdentityStore
from tests.registry.harness import make_vault
from tests.server.conftest import serve

pytestmark = pytest.mark.integration

LIMITS = ServerLimits(auth_failure_limit=0, auth_failure_window=0)


def test_a_revoked_token_and_a_disabled_account_are_refused_by_the_other_replica(
    database_url: str, tmp_path: Path
) -> None:
    vaults = [make_vault(database_url, tmp_path / "blobs") for _ in range(2)]
    identity = IdentityService(SqlIdentityStore(vaults[0].db))
    identity.create_user("alice")
    first, second = identity.issue_token("alice"), identity.issue_token("alice")
    for vault in vaults:
        vault.authorizer.allow("alice", "model.list", "models/m")
    apps = [
        create_app(
            vault.registry,
            CredentialAuthenticator(TokenAuthenticator(SqlIdentityStore(vault.db))),
            vault.registry.bus,
            limits=LIMITS,
        )
        for vault in vaults
    ]

    def status(url: str, secret: str) -> int:
        auth = {"Authorization": f"Bearer {secret}"}
        return httpx.get(f"{url}/v1/models/m/versions", headers=auth, timeout=30).status_code

    try:
        with serve(apps[0]) as one, serve(apps[1]) as two:
            assert [status(url, first.secret) for url in (one, two)] == [200, 200]
            identity.revoke_token(first.info.id)
            assert [status(url, first.secret) for url in (two, one)] == [401, 401]
            assert status(two, second.secret) == 200  # the owner's other token still works
            identity.set_disabled("alice", True)
            assert [status(url, second.secret) for url in (two, one)] == [401, 401]
            identity.set_disabled("alice", False)
            assert status(two, second.secret) == 200
    finally:
        for vault in vaults:
            vault.db.dispose()
