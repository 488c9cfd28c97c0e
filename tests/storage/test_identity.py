"""The SQL identity store on SQLite and PostgreSQL."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from donjon.errors import InputError
from donjon.storage.identity import SqlIdentityStore
from donjon.storage.sql import open_database

NOW = datetime(2026, 5, 1, tzinfo=UTC)


def test_round_trip(database_url: str) -> None:
    db = open_database(database_url)
    try:
        store = SqlIdentityStore(db)
        store.add_account("alice", "user", "Alice", NOW)
        store.add_account("ci", "service", None, NOW)
        store.add_group("g1", "first", NOW)
        store.add_group("g2", "", NOW)
        assert store.set_member("g1", "alice", True)
        assert store.set_member("g2", "alice", True)
        assert store.set_member("g2", "alice", True)  # idempotent
        assert not store.set_member("g3", "alice", True)
        assert not store.set_member("g1", "nobody", True)
        account = store.get_account("alice")
        assert account is not None
        assert (account["kind"], account["groups"]) == ("user", ["g1", "g2"])
        assert [a["id"] for a in store.list_accounts()] == ["alice", "ci"]
        assert [(g["id"], g["members"]) for g in store.list_groups()] == [
            ("g1", ["alice"]),
            ("g2", ["alice"]),
        ]
        assert store.set_member("g1", "alice", False)
        assert store.get_account("alice")["groups"] == ["g2"]  # type: ignore[index]
        with pytest.raises(InputError, match="already exists"):
            store.add_account("alice", "user", None, NOW)
        store.add_token(
            {
                "id": "tok_1",
                "hash": "h" * 64,
                "owner": "alice",
                "scopes": ["*"],
                "created_at": NOW,
                "expires_at": NOW + timedelta(days=1),
                "description": "",
            }
        )
        found = store.find_token("h" * 64)
        assert found is not None
        assert found["expires_at"] == NOW + timedelta(days=1)
        assert "hash" not in store.list_tokens("alice")[0]
        assert store.revoke_token("tok_1", NOW)
        assert not store.revoke_token("tok_1", NOW)
        assert store.find_token("h" * 64)["revoked_at"] == NOW  # type: ignore[index]
        with pytest.raises(InputError):
            store.add_token(
                {
                    "id": "tok_2",
                    "hash": "h" * 64,
                    "owner": "alice",
                    "scopes": ["*"],
                    "created_at": NOW,
                    "expires_at": None,
                    "description": "",
                }
            )
    finally:
        db.dispose()
