"""``donjon.app.build_vault``: settings in, a working vault out (embedded defaults)."""

from __future__ import annotations

import io
import pickle
from pathlib import Path

import pytest

from donjon.app import build_vault, vault_access
from donjon.config import load_settings
from donjon.core.bus import EventBus, MemorySink
from donjon.errors import AccessDenied, ConfigError
from donjon.registry import GateFailed, Kind, Quarantined, Stage, Status, TooLarge
from tests.registry.fakes import TableAuthorizer, TokenAuthenticator
from tests.registry.harness import ALICE, BOB


def test_build_vault_wires_sqlite_blobs_and_default_gates(donjon_home: Path) -> None:
    settings = load_settings(vault={"require_lineage": True, "max_upload_bytes": 1000})
    authorizer = TableAuthorizer()
    authorizer.allow("alice", "model.write", "models/m")
    authorizer.allow("alice", "model.promote", "models/m")
    sink = MemorySink()
    services = build_vault(settings, TokenAuthenticator({}), authorizer, EventBus([sink]))
    try:
        version = services.registry.push(ALICE, Kind.MODEL, "m", io.BytesIO(b"weights"))
        assert (donjon_home / "donjon.db").is_file()
        assert services.blobs.path(version.digest).is_relative_to(donjon_home / "blobs")
        # the real scanner is wired: raw bytes of no risky format scan clean
        assert services.registry.promote(ALICE, "m", 1, Stage.STAGING).stage is Stage.STAGING
        with pytest.raises(GateFailed, match="lineage"):  # prod needs admitted lineage
            services.registry.promote(ALICE, "m", 1, Stage.PROD)
        with pytest.raises(AccessDenied):
            services.registry.push(BOB, Kind.MODEL, "m", io.BytesIO(b"x"))
        with pytest.raises(TooLarge, match="limit of 1000"):
            services.registry.push(ALICE, Kind.MODEL, "m", io.BytesIO(b"x" * 1001))
        assert sink.events
    finally:
        services.close()


def test_no_policy_file_means_no_vault(donjon_home: Path) -> None:
    with pytest.raises(ConfigError, match="access control: no Cedar policy file"):
        vault_access(load_settings(), EventBus())


def test_vault_access_wires_tokens_and_cedar_policies(donjon_home: Path) -> None:
    from donjon.app import build_identity
    from donjon.core import Principal

    donjon_home.mkdir(parents=True, exist_ok=True)
    (donjon_home / "policies.cedar").write_text(
        '@id("alice-reads")\npermit (principal == User::"alice", '
        'action == Action::"dataset.read", resource in Collection::"datasets/fraud");\n'
    )
    settings = load_settings()
    sink = MemorySink()
    bus = EventBus([sink])
    identity = build_identity(settings, bus)
    identity.create_user("alice")
    token = identity.issue_token("alice").secret
    authenticator, authorizer = vault_access(settings, bus)
    alice = authenticator.authenticate(token)
    assert alice.id == "alice"
    assert authorizer.authorize(alice, "dataset.read", "datasets/fraud/transactions").allowed
    assert not authorizer.authorize(alice, "dataset.write", "datasets/fraud/transactions").allowed
    assert not authorizer.authorize(Principal("bob"), "dataset.read", "datasets/fraud/x").allowed


def test_pushed_models_are_scanned_and_a_payload_is_quarantined(donjon_home: Path) -> None:
    settings = load_settings()
    authorizer = TableAuthorizer()
    for action in ("model.write", "model.promote", "model.read"):
        authorizer.allow("alice", action, "models/m")
    services = build_vault(settings, TokenAuthenticator({}), authorizer, EventBus([MemorySink()]))
    try:
        payload = b"cos\nsystem\n(S'id'\ntR."  # os.system('id'), protocol 0
        bad = services.registry.push(ALICE, Kind.MODEL, "m", io.BytesIO(payload))
        assert bad.status is Status.QUARANTINED
        assert "os.system" in (bad.status_reason or "")
        with pytest.raises(Quarantined, match="quarantined"):
            services.registry.promote(ALICE, "m", bad.number, Stage.STAGING)
        good = services.registry.push(
            ALICE, Kind.MODEL, "m", io.BytesIO(pickle.dumps({"w": [1.0, 2.0]}))
        )
        assert good.status is Status.ACTIVE
        promoted = services.registry.promote(ALICE, "m", good.number, Stage.STAGING)
        assert promoted.stage is Stage.STAGING
    finally:
        services.close()


def test_stage_gates_from_settings(donjon_home: Path) -> None:
    from donjon.app.vault import stage_gates
    from donjon.provenance import LocalKeyProvider

    def names(**vault: object) -> dict[str, list[str]]:
        gates = stage_gates(load_settings(vault=vault))
        return {stage.value: [g.name for g in found] for stage, found in gates.items()}

    assert names() == {"staging": ["clean-scan"], "prod": ["clean-scan", "admitted-lineage"]}
    LocalKeyProvider(donjon_home / "keys").generate("release")
    trusted = names(trusted_keys=["keys/release.pub.pem"])  # relative to DONJON_HOME
    assert trusted["prod"] == ["clean-scan", "admitted-lineage", "signature", "provenance"]
    assert trusted["staging"] == ["clean-scan"]
    chosen = names(trusted_keys=["keys/release.pub.pem"], gates={"staging": ["signature"]})
    assert chosen == {"staging": ["signature"]}
    with pytest.raises(ConfigError, match="no trust is configured"):
        names(gates={"prod": ["clean-scan", "signature"]})
    with pytest.raises(ConfigError, match="unknown gate"):
        names(gates={"prod": ["vibes"]})
    with pytest.raises(ConfigError, match="unknown stage"):
        names(gates={"moon": ["clean-scan"]})
    with pytest.raises(ConfigError, match="vault trust"):
        names(trusted_keys=["keys/missing.pub.pem"])


def test_with_the_app_every_vault_write_is_ledgered_in_its_own_transaction(
    donjon_home: Path, database_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    import json

    from sqlalchemy import text

    from donjon.app import build
    from donjon.storage.sql import open_database

    monkeypatch.setenv("DONJON_DATABASE_URL", database_url)
    settings = load_settings()
    authorizer = TableAuthorizer()
    for act in ("model.write", "model.promote", "admin"):
        authorizer.allow("alice", act, "models/m")
    with build(settings) as app:
        bus = app.bus
        services = build_vault(settings, TokenAuthenticator({}), authorizer, bus, app=app)
        try:
            registry = services.registry
            assert registry.store._journal is not None  # type: ignore[attr-defined]
            registry.push(ALICE, Kind.MODEL, "m", io.BytesIO(b"weights"))
            registry.promote(ALICE, "m", 1, Stage.STAGING)
            with pytest.raises(GateFailed):
                registry.promote(ALICE, "m", 1, Stage.PROD)  # no lineage
            registry.quarantine(ALICE, Kind.MODEL, "m", 1, "suspicious")
        finally:
            services.close()
    database = open_database(settings.sql_url)
    try:
        with database.engine.connect() as connection:
            bodies = connection.execute(text("SELECT body FROM audit_ledger ORDER BY seq"))
            events = [json.loads(b)["event"] for (b,) in bodies]
    finally:
        database.dispose()
    facts = [
        (e["action"], e["outcome"])
        for e in events
        if e["source"] == "registry" and not e["decision"]
    ]
    assert facts == [
        ("registry.gate.scan", "success"),
        ("model.write", "success"),
        ("registry.gate.clean-scan", "success"),
        ("model.promote", "success"),
        ("registry.gate.clean-scan", "success"),
        ("registry.gate.admitted-lineage", "failure"),
        ("model.promote", "failure"),
        ("admin", "success"),
    ]
