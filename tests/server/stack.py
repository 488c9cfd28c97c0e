"""The vault wired as ``donjon server`` wires it (Cedar, API tokens, the audit ledger), on loopback.

Unlike ``conftest.served`` (port fakes), nothing here is a fake: identities and
tokens in the SQL store, the Cedar policy file, the signed ledger as the bus's
journal. ``Stack.entries_since`` reads back what the ledger recorded.
"""

from __future__ import annotations

import io
import json
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from fastapi import FastAPI

from donjon.app import (
    build,
    build_authenticator,
    build_authorizer,
    build_identity,
    build_ledger,
    build_vault,
)
from donjon.audit import Ledger
from donjon.authz import IdentityService
from donjon.config import load_settings
from donjon.core.clock import ManualClock
from donjon.server import ServerLimits, create_app
from donjon.storage.sql import open_database
from tests.server.conftest import serve

POLICY = """
@id("admin-all")
permit(principal == User::"admin", action, resource);

@id("readers")
permit(principal == User::"reader",
       action in [Action::"dataset.read", Action::"dataset.list",
                  Action::"model.read", Action::"model.list"],
       resource);

@id("writers")
permit(principal == User::"writer",
       action in [Action::"dataset.read", Action::"dataset.list", Action::"dataset.write",
                  Action::"model.read", Action::"model.list", Action::"model.write"],
       resource);

@id("promoters")
permit(principal == User::"promoter", action == Action::"model.promote", resource);

@id("operators")
permit(principal == User::"operator",
       action in [Action::"admin", Action::"dataset.delete", Action::"model.delete"],
       resource);

@id("pii-analyst")
permit(principal == User::"analyst",
       action in [Action::"dataset.read", Action::"dataset.list"],
       resource in Collection::"datasets/fraud");

@id("no-pii")
forbid(principal == User::"analyst", action, resource in Collection::"datasets/fraud/pii");
"""

# What each role may do (mirrors POLICY; the analyst only under datasets/fraud, not its pii).
ROLES: dict[str, set[str]] = {
    "admin": {"*"},
    "reader": {"dataset.read", "dataset.list", "model.read", "model.list"},
    "writer": {
        "dataset.read",
        "dataset.list",
        "dataset.write",
        "model.read",
        "model.list",
        "model.write",
    },
    "promoter": {"model.promote"},
    "operator": {"admin", "dataset.delete", "model.delete"},
}


@dataclass
class Stack:
    url: str
    app: FastAPI
    ledger: Ledger
    tokens: dict[str, str]  # who -> secret; also "revoked", "expired", "disabled"
    home: Path
    seen: int = 0
    extra: dict[str, Any] = field(default_factory=dict)

    def auth(self, who: str) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.tokens[who]}"}

    def mark(self) -> None:
        self.seen = self.ledger.head()[0]

    def entries_since(self) -> list[dict[str, Any]]:
        """The ledger entries (events) written since :meth:`mark`."""
        out = io.StringIO()
        self.ledger.export(out, self.seen + 1)
        return [json.loads(line)["entry"]["event"] for line in out.getvalue().splitlines()]


def _identities(identity: IdentityService, past: IdentityService) -> dict[str, str]:
    tokens = {}
    for who in (*ROLES, "analyst", "sleeper"):
        identity.create_user(who)
    for who in (*ROLES, "analyst"):
        tokens[who] = identity.issue_token(who, description="matrix").secret
    revoked = identity.issue_token("reader", description="revoked")
    identity.revoke_token(revoked.info.id)
    tokens["revoked"] = revoked.secret
    tokens["expired"] = past.issue_token("reader", ttl=timedelta(hours=1)).secret
    tokens["disabled"] = identity.issue_token("sleeper").secret
    identity.set_disabled("sleeper", True)
    return tokens


@contextmanager
def real_stack(
    database_url: str, home: Path, limits: ServerLimits | None = None
) -> Iterator[Stack]:
    """The whole vault as ``donjon server`` builds it, served on 127.0.0.1."""
    settings = load_settings(home=home, database_url=database_url)
    settings.home.mkdir(parents=True, exist_ok=True)
    settings.policy_path.write_text(POLICY, encoding="utf-8")
    donjon = build(settings)
    database = open_database(settings.sql_url)
    try:
        bus = donjon.bus
        identity = build_identity(settings, bus, database)
        past = IdentityService(
            identity._store,  # the same store, with a clock two hours back
            clock=ManualClock(datetime.now(UTC) - timedelta(hours=2)),
            publish=bus.publish,
        )
        tokens = _identities(identity, past)
        authenticator = build_authenticator(settings, bus, database)  # as vault_access does
        authorizer = build_authorizer(settings, bus)
        services = build_vault(settings, authenticator, authorizer, bus, promotion_gates={})
        app = create_app(
            services.registry,
            services.authenticator,
            bus,
            limits=limits or ServerLimits(auth_failure_limit=0, auth_failure_window=0),
        )
        ledger = build_ledger(settings, services.database)
        try:
            with serve(app) as url:
                yield Stack(url, app, ledger, tokens, home)
        finally:
            services.close()
    finally:
        database.dispose()
        donjon.close()
