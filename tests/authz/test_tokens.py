"""API tokens on SQLite and PostgreSQL: issue, authenticate, expire, revoke, never leak."""

from __future__ import annotations

import logging
from collections.abc import Iterator
from datetime import timedelta

import pytest
from sqlalchemy import text

from donjon.authz import CredentialAuthenticator, IdentityService, TokenAuthenticator
from donjon.core import ManualClock, PrincipalKind, SecurityEvent
from donjon.core.events import EventKind, Outcome
from donjon.errors import AuthenticationError, InputError
from donjon.storage.identity import SqlIdentityStore
from donjon.storage.sql import Database, open_database


@pytest.fixture
def database(database_url: str) -> Iterator[Database]:
    db = open_database(database_url)
    yield db
    db.dispose()


class Setup:
    def __init__(self, db: Database) -> None:
        self.db = db
        self.clock = ManualClock()
        self.events: list[SecurityEvent] = []
        store = SqlIdentityStore(db)
        self.identity = IdentityService(store, clock=self.clock, publish=self.events.append)
        self.auth = CredentialAuthenticator(
            TokenAuthenticator(store, clock=self.clock), publish=self.events.append
        )


@pytest.fixture
def setup(database: Database) -> Setup:
    s = Setup(database)
    s.identity.create_group("analysts")
    s.identity.create_user("alice", "Alice A.")
    s.identity.set_member("analysts", "alice")
    s.identity.create_service_account("ci-bot")
    return s


def test_issue_and_authenticate(setup: Setup) -> None:
    issued = setup.identity.issue_token("alice", ["dataset.read"], timedelta(days=1))
    principal = setup.auth.authenticate(issued.secret)
    assert (principal.id, principal.kind, principal.groups) == (
        "alice",
        PrincipalKind.USER,
        ("analysts",),
    )
    assert principal.scopes == frozenset({"dataset.read"})
    assert setup.auth.authenticate(f"Bearer {issued.secret}") == principal
    bot = setup.identity.issue_token("ci-bot", ["model.*"], None)
    assert setup.auth.authenticate(bot.secret).kind is PrincipalKind.SERVICE
    assert setup.events[-1].kind is EventKind.AUTHENTICATION
    assert setup.events[-1].outcome is Outcome.SUCCESS
    assert setup.events[-1].attributes["token_id"] == bot.info.id


def test_expired_revoked_and_disabled_tokens_fail(setup: Setup) -> None:
    issued = setup.identity.issue_token("alice", ["*"], timedelta(hours=1))
    setup.clock.advance(3600)
    with pytest.raises(AuthenticationError, match="expired"):
        setup.auth.authenticate(issued.secret)
    again = setup.identity.issue_token("alice", ["*"], timedelta(hours=1))
    setup.identity.revoke_token(again.info.id)
    with pytest.raises(AuthenticationError, match="revoked"):
        setup.auth.authenticate(again.secret)
    with pytest.raises(InputError, match="no active token"):
        setup.identity.revoke_token(again.info.id)
    third = setup.identity.issue_token("alice", ["*"], timedelta(hours=1))
    setup.identity.set_disabled("alice", True)
    with pytest.raises(AuthenticationError, match="disabled"):
        setup.auth.authenticate(third.secret)
    failures = [e for e in setup.events if e.kind is EventKind.AUTHENTICATION]
    assert [e.outcome for e in failures] == [Outcome.FAILURE] * 3


@pytest.mark.parametrize(
    ("credential", "message"),
    [
        ("", "anonymous access is not allowed"),
        ("Bearer ", "anonymous access is not allowed"),
        ("djt_short", "malformed API token"),
        ("djt_" + "A" * 43, "unknown API token"),
        ("password123", "unrecognised credential"),
        ("a.b.c", "JWT bearer tokens are not configured"),
    ],
)
def test_bad_credentials_get_a_clear_error(setup: Setup, credential: str, message: str) -> None:
    with pytest.raises(AuthenticationError, match=message):
        setup.auth.authenticate(credential)
    assert setup.events[-1].outcome is Outcome.FAILURE


@pytest.mark.parametrize(
    ("owner", "scopes", "ttl", "message"),
    [
        ("nobody", ["*"], timedelta(days=1), "no account"),
        ("alice", ["dataset.steal!"], timedelta(days=1), "bad token scope"),
        ("alice", [], timedelta(days=1), "at least one scope"),
        ("alice", ["*"], timedelta(0), "must be positive"),
    ],
)
def test_bad_token_requests_change_nothing(
    setup: Setup, owner: str, scopes: list[str], ttl: timedelta, message: str
) -> None:
    with pytest.raises(InputError, match=message):
        setup.identity.issue_token(owner, scopes, ttl)
    assert setup.identity.tokens() == []


def test_duplicate_and_bad_names_are_refused(setup: Setup) -> None:
    with pytest.raises(InputError, match="already exists"):
        setup.identity.create_user("alice")
    with pytest.raises(InputError, match="already exists"):
        setup.identity.create_group("analysts")
    with pytest.raises(InputError, match="bad user name"):
        setup.identity.create_user("../etc")
    with pytest.raises(InputError, match="no group"):
        setup.identity.set_member("nope", "alice")


def test_a_token_never_appears_after_creation(
    setup: Setup, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    logging.getLogger("sqlalchemy.engine").setLevel(logging.INFO)  # log every SQL statement
    try:
        issued = setup.identity.issue_token("alice", ["dataset.read"], timedelta(days=1))
        secret = issued.secret
        setup.auth.authenticate(secret)
        with pytest.raises(AuthenticationError) as caught:
            setup.auth.authenticate(secret[:-1] + ("A" if secret[-1] != "A" else "B"))
        setup.identity.revoke_token(issued.info.id)
        with pytest.raises(AuthenticationError) as revoked:
            setup.auth.authenticate(secret)
    finally:
        logging.getLogger("sqlalchemy.engine").setLevel(logging.WARNING)
    assert "SELECT" in caplog.text  # the SQL log was really captured
    assert secret not in caplog.text
    assert secret[4:] not in caplog.text
    assert secret not in repr(issued)
    assert secret not in repr(issued.info)
    assert secret not in str(caught.value)
    assert secret not in str(revoked.value)
    for event in setup.events:
        assert secret not in repr(event.to_dict())
    with setup.db.engine.connect() as connection:
        for table in ("identity_tokens", "identity_accounts"):
            dump = repr(connection.execute(text(f"SELECT * FROM {table}")).all())  # noqa: S608
            assert secret not in dump
    assert issued.info.id in repr(setup.events)
