"""The identity store on SQL: accounts, groups, memberships and token hashes.

Implements ``donjon.authz.IdentityStore`` with plain-mapping rows. Token rows
hold the SHA-256 of the token (unique, indexed) and never the token itself.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime
from typing import Any

from sqlalchemy import (
    JSON,
    Boolean,
    Column,
    DateTime,
    ForeignKey,
    String,
    Table,
    bindparam,
    select,
)
from sqlalchemy.exc import IntegrityError, SQLAlchemyError

from donjon.errors import InputError, StorageError
from donjon.storage.sql import Database, as_utc, metadata

accounts = Table(
    "identity_accounts",
    metadata,
    Column("id", String(128), primary_key=True),
    Column("kind", String(16), nullable=False),
    Column("display_name", String(256)),
    Column("disabled", Boolean, nullable=False, default=False),
    Column("created_at", DateTime(timezone=True), nullable=False),
)
groups = Table(
    "identity_groups",
    metadata,
    Column("id", String(128), primary_key=True),
    Column("description", String(1024), nullable=False, default=""),
    Column("created_at", DateTime(timezone=True), nullable=False),
)
memberships = Table(
    "identity_memberships",
    metadata,
    Column("group_id", String(128), ForeignKey("identity_groups.id"), primary_key=True),
    Column("account_id", String(128), ForeignKey("identity_accounts.id"), primary_key=True),
)
tokens = Table(
    "identity_tokens",
    metadata,
    Column("id", String(32), primary_key=True),
    Column("hash", String(64), nullable=False, unique=True),
    Column("owner", String(128), ForeignKey("identity_accounts.id"), nullable=False),
    Column("scopes", JSON(), nullable=False),
    Column("description", String(1024), nullable=False, default=""),
    Column("created_at", DateTime(timezone=True), nullable=False),
    Column("expires_at", DateTime(timezone=True)),
    Column("revoked_at", DateTime(timezone=True)),
)


# A presented token, its owner and the owner's groups in one query (every request asks);
# built once, as SQLAlchemy caches its compiled form by the statement's structure.
_TOKEN_FIELDS = tuple(column.name for column in tokens.columns)
_ACCOUNT_FIELDS = tuple(column.name for column in accounts.columns)
_ACCOUNT_COLUMNS = [accounts.c[name].label(f"account_{name}") for name in _ACCOUNT_FIELDS]
_TOKEN_AND_ACCOUNT = (
    select(tokens, *_ACCOUNT_COLUMNS, memberships.c.group_id)
    .select_from(
        tokens.outerjoin(accounts, accounts.c.id == tokens.c.owner).outerjoin(
            memberships, memberships.c.account_id == accounts.c.id
        )
    )
    .where(tokens.c.hash == bindparam("token_hash"))
)


def _utc(value: datetime | None) -> datetime | None:
    return None if value is None else as_utc(value)


class SqlIdentityStore:
    def __init__(self, database: Database) -> None:
        self._db = database

    def _write(self, what: str, statement: Any, conflict: str | None = None) -> int:
        try:
            with self._db.engine.begin() as connection:
                return int(connection.execute(statement).rowcount)
        except IntegrityError as e:
            raise InputError(conflict or f"cannot {what}: conflicting data") from e
        except SQLAlchemyError as e:
            raise StorageError(f"cannot {what}: {e}") from e

    def _read(self, what: str, statement: Any) -> list[Mapping[str, Any]]:
        try:
            with self._db.reader() as connection:
                return [dict(row._mapping) for row in connection.execute(statement)]
        except SQLAlchemyError as e:
            raise StorageError(f"cannot read {what}: {e}") from e

    # -- accounts ----------------------------------------------------------

    def add_account(
        self, account_id: str, kind: str, display_name: str | None, created_at: datetime
    ) -> None:
        self._write(
            f"add account {account_id}",
            accounts.insert().values(
                id=account_id,
                kind=kind,
                display_name=display_name,
                disabled=False,
                created_at=created_at,
            ),
            f"account {account_id!r} already exists",
        )

    def _groups_of(self) -> dict[str, list[str]]:
        found: dict[str, list[str]] = {}
        for row in self._read("memberships", select(memberships)):
            found.setdefault(row["account_id"], []).append(row["group_id"])
        return found

    def get_account(self, account_id: str) -> Mapping[str, Any] | None:
        """The account and its groups, in one query (every authentication asks)."""
        query = (
            select(accounts, memberships.c.group_id)
            .select_from(accounts.outerjoin(memberships, memberships.c.account_id == accounts.c.id))
            .where(accounts.c.id == account_id)
        )
        rows = self._read("account", query)
        if not rows:
            return None
        account = {k: v for k, v in rows[0].items() if k != "group_id"}
        groups = sorted(str(r["group_id"]) for r in rows if r["group_id"] is not None)
        return {**account, "groups": groups}

    def list_accounts(self) -> list[Mapping[str, Any]]:
        member_of = self._groups_of()
        return [
            {**row, "groups": sorted(member_of.get(row["id"], []))}
            for row in self._read("accounts", select(accounts).order_by(accounts.c.id))
        ]

    def set_disabled(self, account_id: str, disabled: bool) -> bool:
        statement = accounts.update().where(accounts.c.id == account_id).values(disabled=disabled)
        return self._write(f"update account {account_id}", statement) > 0

    # -- groups ------------------------------------------------------------

    def add_group(self, group_id: str, description: str, created_at: datetime) -> None:
        self._write(
            f"add group {group_id}",
            groups.insert().values(id=group_id, description=description, created_at=created_at),
            f"group {group_id!r} already exists",
        )

    def list_groups(self) -> list[Mapping[str, Any]]:
        members: dict[str, list[str]] = {}
        for account, names in self._groups_of().items():
            for name in names:
                members.setdefault(name, []).append(account)
        return [
            {**row, "members": sorted(members.get(row["id"], []))}
            for row in self._read("groups", select(groups).order_by(groups.c.id))
        ]

    def set_member(self, group_id: str, account_id: str, member: bool) -> bool:
        if member:
            known = self._read("group", select(groups.c.id).where(groups.c.id == group_id))
            account = self.get_account(account_id)
            if not known or account is None:
                return False
            if group_id in account["groups"]:
                return True
            statement: Any = memberships.insert().values(group_id=group_id, account_id=account_id)
            self._write(f"add {account_id} to {group_id}", statement)  # rowcount may be -1
            return True
        statement = memberships.delete().where(
            memberships.c.group_id == group_id, memberships.c.account_id == account_id
        )
        return self._write(f"remove {account_id} from {group_id}", statement) > 0

    # -- tokens ------------------------------------------------------------

    def add_token(self, row: Mapping[str, Any]) -> None:
        self._write(f"add token {row['id']}", tokens.insert().values(**row))

    @staticmethod
    def _token(row: Mapping[str, Any]) -> Mapping[str, Any]:
        return {
            **row,
            "scopes": list(row["scopes"]),
            "created_at": _utc(row["created_at"]),
            "expires_at": _utc(row["expires_at"]),
            "revoked_at": _utc(row["revoked_at"]),
        }

    def find_token(self, token_hash: str) -> Mapping[str, Any] | None:
        rows = self._read("token", select(tokens).where(tokens.c.hash == token_hash))
        return self._token(rows[0]) if rows else None

    def find_token_and_account(
        self, token_hash: str
    ) -> tuple[Mapping[str, Any], Mapping[str, Any] | None] | None:
        """The token, and its owner's account with its groups (None if it has none), read
        in one query and one transaction: the authentication of every request."""
        try:
            with self._db.reader() as connection:
                rows = [
                    dict(row._mapping)
                    for row in connection.execute(_TOKEN_AND_ACCOUNT, {"token_hash": token_hash})
                ]
        except SQLAlchemyError as e:
            raise StorageError(f"cannot read token: {e}") from e
        if not rows:
            return None
        first = rows[0]
        token = self._token({k: first[k] for k in _TOKEN_FIELDS})
        if first["account_id"] is None:
            return token, None
        account = {name: first[f"account_{name}"] for name in _ACCOUNT_FIELDS}
        account["groups"] = sorted(str(r["group_id"]) for r in rows if r["group_id"] is not None)
        return token, account

    def list_tokens(self, owner: str | None = None) -> list[Mapping[str, Any]]:
        query = select(tokens).order_by(tokens.c.created_at, tokens.c.id)
        if owner is not None:
            query = query.where(tokens.c.owner == owner)
        return [
            {k: v for k, v in self._token(r).items() if k != "hash"}
            for r in self._read("tokens", query)
        ]

    def revoke_token(self, token_id: str, at: datetime) -> bool:
        statement = (
            tokens.update()
            .where(tokens.c.id == token_id, tokens.c.revoked_at.is_(None))
            .values(revoked_at=at)
        )
        return self._write(f"revoke token {token_id}", statement) > 0
