"""Users, groups, service accounts and their API tokens.

:class:`IdentityService` holds the rules (names, scopes, expiry, events); an
:class:`IdentityStore` adapter (``donjon.storage.identity``) keeps the rows.
Every change is published as a SecurityEvent (``account`` or ``permission``)
that names the account or token id and never carries a secret.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any, Protocol

from donjon.authz.tokens import (
    IssuedToken,
    TokenInfo,
    check_scopes,
    hash_token,
    new_token,
    new_token_id,
)
from donjon.core.clock import SystemClock
from donjon.core.events import EventKind, Outcome, SecurityEvent
from donjon.core.identity import Principal, PrincipalKind
from donjon.core.ports import Clock
from donjon.core.severity import Severity
from donjon.errors import InputError

NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._@+-]{0,127}$")
SOURCE = "authz"

Publish = Callable[[SecurityEvent], object]


class IdentityStore(Protocol):
    """Rows of accounts, groups and token hashes (``donjon.storage.identity``).

    Rows are plain mappings so adapters need nothing from this package. ``add_*``
    raise ``InputError`` when the id exists.
    """

    def add_account(
        self, account_id: str, kind: str, display_name: str | None, created_at: datetime
    ) -> None: ...

    def get_account(self, account_id: str) -> Mapping[str, Any] | None: ...

    def list_accounts(self) -> list[Mapping[str, Any]]: ...

    def set_disabled(self, account_id: str, disabled: bool) -> bool: ...

    def add_group(self, group_id: str, description: str, created_at: datetime) -> None: ...

    def list_groups(self) -> list[Mapping[str, Any]]: ...

    def set_member(self, group_id: str, account_id: str, member: bool) -> bool: ...

    def add_token(self, row: Mapping[str, Any]) -> None: ...

    def find_token(self, token_hash: str) -> Mapping[str, Any] | None: ...

    def find_token_and_account(
        self, token_hash: str
    ) -> tuple[Mapping[str, Any], Mapping[str, Any] | None] | None:
        """The token and its owner (with ``groups``), or None: one read per request."""
        ...

    def list_tokens(self, owner: str | None = None) -> list[Mapping[str, Any]]: ...

    def revoke_token(self, token_id: str, at: datetime) -> bool: ...


@dataclass(frozen=True, slots=True)
class Account:
    id: str
    kind: PrincipalKind
    display_name: str | None
    disabled: bool
    groups: tuple[str, ...]

    def principal(self, scopes: frozenset[str] | None = None) -> Principal:
        return Principal(self.id, self.kind, self.display_name, self.groups, scopes)


def account_from_row(row: Mapping[str, Any]) -> Account:
    return Account(
        id=str(row["id"]),
        kind=PrincipalKind(row["kind"]),
        display_name=row.get("display_name"),
        disabled=bool(row.get("disabled")),
        groups=tuple(sorted(row.get("groups") or ())),
    )


def token_from_row(row: Mapping[str, Any]) -> TokenInfo:
    return TokenInfo(
        id=str(row["id"]),
        owner=str(row["owner"]),
        scopes=tuple(row.get("scopes") or ()),
        created_at=row["created_at"],
        expires_at=row.get("expires_at"),
        revoked_at=row.get("revoked_at"),
        description=str(row.get("description") or ""),
    )


def check_name(what: str, name: str) -> str:
    if not NAME.match(name):
        raise InputError(
            f"bad {what} name {name!r}: 1-128 characters, letters, digits and . _ @ + -"
        )
    return name


class IdentityService:
    def __init__(
        self,
        store: IdentityStore,
        *,
        clock: Clock | None = None,
        publish: Publish | None = None,
        actor: Principal | None = None,
    ) -> None:
        """``actor`` is who makes the changes (the events' principal), when known."""
        self._store = store
        self._clock: Clock = clock or SystemClock()
        self._publish = publish
        self._actor = actor

    # -- accounts and groups ----------------------------------------------

    def create_user(self, user_id: str, display_name: str | None = None) -> Account:
        return self._create_account(user_id, PrincipalKind.USER, display_name)

    def create_service_account(self, account_id: str, display_name: str | None = None) -> Account:
        return self._create_account(account_id, PrincipalKind.SERVICE, display_name)

    def _create_account(self, account_id: str, kind: PrincipalKind, name: str | None) -> Account:
        check_name(kind.value, account_id)
        self._store.add_account(account_id, kind.value, name, self._clock.now())
        account = Account(account_id, kind, name, False, ())
        self._event(
            EventKind.ACCOUNT,
            "account.create",
            f"{kind.value} {account_id} created",
            account=account_id,
            account_kind=kind.value,
        )
        return account

    def account(self, account_id: str) -> Account:
        row = self._store.get_account(account_id)
        if row is None:
            raise InputError(f"no account {account_id!r}")
        return account_from_row(row)

    def accounts(self) -> list[Account]:
        return [account_from_row(row) for row in self._store.list_accounts()]

    def set_disabled(self, account_id: str, disabled: bool) -> None:
        if not self._store.set_disabled(account_id, disabled):
            raise InputError(f"no account {account_id!r}")
        verb = "disable" if disabled else "enable"
        self._event(
            EventKind.ACCOUNT,
            f"account.{verb}",
            f"account {account_id} {verb}d",
            account=account_id,
        )

    def create_group(self, group_id: str, description: str = "") -> None:
        check_name("group", group_id)
        self._store.add_group(group_id, description, self._clock.now())
        self._event(EventKind.ACCOUNT, "group.create", f"group {group_id} created", group=group_id)

    def groups(self) -> list[Mapping[str, Any]]:
        return self._store.list_groups()

    def set_member(self, group_id: str, account_id: str, member: bool = True) -> None:
        if not self._store.set_member(group_id, account_id, member):
            raise InputError(f"no group {group_id!r} or no account {account_id!r}")
        verb = "add_member" if member else "remove_member"
        text = "added to" if member else "removed from"
        self._event(
            EventKind.PERMISSION,
            f"group.{verb}",
            f"{account_id} {text} group {group_id}",
            group=group_id,
            account=account_id,
        )

    # -- tokens -----------------------------------------------------------

    def issue_token(
        self,
        owner: str,
        scopes: Sequence[str] = ("*",),
        ttl: timedelta | None = timedelta(days=90),
        description: str = "",
    ) -> IssuedToken:
        """Issue a token for ``owner``; the secret is in the result and nowhere else."""
        account = self.account(owner)
        if account.disabled:
            raise InputError(f"account {owner!r} is disabled")
        try:
            checked = check_scopes(tuple(scopes))
        except ValueError as e:
            raise InputError(str(e)) from None
        if not checked:
            raise InputError("a token needs at least one scope")
        if ttl is not None and ttl <= timedelta(0):
            raise InputError("a token's lifetime must be positive")
        now = self._clock.now()
        secret = new_token()
        info = TokenInfo(
            new_token_id(), owner, checked, now, now + ttl if ttl else None, description=description
        )
        self._store.add_token(
            {
                "id": info.id,
                "hash": hash_token(secret),
                "owner": owner,
                "scopes": list(info.scopes),
                "created_at": now,
                "expires_at": info.expires_at,
                "description": description,
            }
        )
        self._event(
            EventKind.ACCOUNT,
            "token.issue",
            f"token {info.id} issued to {owner}",
            token_id=info.id,
            account=owner,
            scopes=list(info.scopes),
            expires_at=info.expires_at.isoformat() if info.expires_at else None,
        )
        return IssuedToken(info, secret)

    def revoke_token(self, token_id: str) -> None:
        if not self._store.revoke_token(token_id, self._clock.now()):
            raise InputError(f"no active token {token_id!r}")
        self._event(
            EventKind.ACCOUNT, "token.revoke", f"token {token_id} revoked", token_id=token_id
        )

    def tokens(self, owner: str | None = None) -> list[TokenInfo]:
        return [token_from_row(row) for row in self._store.list_tokens(owner)]

    def _event(self, kind: EventKind, action: str, message: str, **attributes: Any) -> None:
        if self._publish is not None:
            self._publish(
                SecurityEvent(
                    kind=kind,
                    source=SOURCE,
                    action=action,
                    message=message,
                    severity=Severity.INFO,
                    outcome=Outcome.SUCCESS,
                    principal=self._actor,
                    attributes=attributes,
                )
            )
