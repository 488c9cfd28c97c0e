"""Access wiring: identities and tokens, Cedar policies and the audit ledger."""

from __future__ import annotations

from typing import TYPE_CHECKING

from donjon.config import Settings
from donjon.core.bus import EventBus
from donjon.core.ports import Authenticator, Authorizer
from donjon.core.textfile import read_text
from donjon.errors import ConfigError, InputError

if TYPE_CHECKING:
    from donjon.audit import Ledger
    from donjon.authz import CedarAuthorizer, CredentialAuthenticator, IdentityService
    from donjon.core.identity import Principal
    from donjon.storage.sql import Database


def build_ledger(settings: Settings, database: Database | None = None) -> Ledger:
    """The tamper-evident ledger (an ``EventJournal``) on ``database`` or ``settings.sql_url``.

    Its key is the one the database registers (``LedgerKey``); its checkpoints
    go to the witness file and URL the settings name (the wiring adds the bus).
    """
    from donjon.app.sql import open_sql
    from donjon.audit import FileWitness, Ledger, UrlWitness, Witness
    from donjon.storage.ledger import SqlLedgerStore
    from donjon.storage.ledger_keys import LedgerKey

    audit = settings.audit
    store = SqlLedgerStore(database or open_sql(settings))
    witnesses: list[Witness] = []
    if audit.witness_file is not None:
        witnesses.append(FileWitness(audit.witness_file))
    if audit.witness_url:
        witnesses.append(UrlWitness(audit.witness_url))
    key = LedgerKey(
        store,
        default_file=settings.keys_dir / f"{audit.key_id}.key.pem",
        key_file=audit.key_file,
        env=audit.key_env,
    )
    return Ledger(
        store,
        keys=key,
        key_id=None,
        checkpoint_every=audit.checkpoint_every,
        checkpoint_seconds=audit.checkpoint_seconds,
        witnesses=witnesses,
    )


def build_identity(
    settings: Settings,
    bus: EventBus,
    database: Database | None = None,
    actor: Principal | None = None,
) -> IdentityService:
    """Users, groups, service accounts and API tokens; ``actor`` is who changes them."""
    from donjon.app.sql import open_sql
    from donjon.authz import IdentityService
    from donjon.storage.identity import SqlIdentityStore

    store = SqlIdentityStore(database or open_sql(settings))
    return IdentityService(store, publish=bus.publish, actor=actor)


def build_authenticator(
    settings: Settings, bus: EventBus, database: Database | None = None
) -> CredentialAuthenticator:
    """The ``Authenticator`` port: API tokens, plus JWTs when an issuer is configured."""
    from donjon.app.sql import open_sql
    from donjon.authz import (
        CredentialAuthenticator,
        JwksSource,
        JwtAuthenticator,
        TokenAuthenticator,
    )
    from donjon.storage.identity import SqlIdentityStore

    tokens = TokenAuthenticator(SqlIdentityStore(database or open_sql(settings)))
    jwt = None
    authz = settings.authz
    if authz.jwt_issuer:
        if not authz.jwt_audience:
            raise ConfigError("authz.jwt_issuer is set but authz.jwt_audience is not")
        jwks = JwksSource(path=authz.jwks_path, url=authz.jwks_url)
        jwt = JwtAuthenticator(
            jwks,
            issuer=authz.jwt_issuer,
            audience=authz.jwt_audience,
            algorithms=authz.jwt_algorithms,
            principal_claim=authz.jwt_principal_claim,
            groups_claim=authz.jwt_groups_claim,
        )
    return CredentialAuthenticator(tokens, jwt, publish=bus.publish)


def build_authorizer(settings: Settings, bus: EventBus) -> CedarAuthorizer:
    """The ``Authorizer`` port: Cedar policies from ``settings.policy_path``.

    A missing policy file is an empty policy set: everything is denied.
    """
    from donjon.authz import CedarAuthorizer, load_policies

    path = settings.policy_path
    try:
        text = read_text(path, "policy file") if path.exists() else ""
    except InputError as e:
        raise ConfigError(str(e)) from e
    return CedarAuthorizer(load_policies(text, str(path)), publish=bus.publish)


def vault_access(settings: Settings, bus: EventBus) -> tuple[Authenticator, Authorizer]:
    """The vault's authenticator and authorizer, wired from settings.

    There is no anonymous or allow-all mode. Without a policy file nothing could
    ever be allowed, so the vault refuses to start and says what to write.
    """
    if not settings.policy_path.is_file():
        raise ConfigError(
            f"the vault needs access control: no Cedar policy file at {settings.policy_path} "
            "(set authz.policy_path; docs/access.md has an example)"
        )
    return build_authenticator(settings, bus), build_authorizer(settings, bus)
