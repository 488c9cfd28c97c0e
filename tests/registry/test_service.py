from __future__ import annotations

import hashlib
import io
import threading
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import func, select

from donjon.core.artifacts import Digest
from donjon.core.decision import Decision, Effect
from donjon.core.events import EventKind, Outcome
from donjon.core.identity import Principal
from donjon.errors import AccessDenied, InputError, NotFound
from donjon.registry import (
    GateFailed,
    GateResult,
    Gone,
    Kind,
    Quarantined,
    Stage,
    Status,
    TooLarge,
    VersionRef,
)
from donjon.storage.blobs import DigestMismatch
from donjon.storage.registry import versions as versions_table
from tests.registry.harness import ALICE, BOB, Vault


def sha(data: bytes) -> Digest:
    return Digest("sha256", hashlib.sha256(data).hexdigest())


def blob_files(root: Path) -> list[Path]:
    return sorted(p for p in root.rglob("*") if p.is_file())


def row_count(vault: Vault) -> int:
    with vault.db.engine.connect() as conn:
        return int(conn.execute(select(func.count()).select_from(versions_table)).scalar_one())


def grant_datasets(vault: Vault, who: str = "alice", under: str = "datasets/fraud") -> None:
    for verb in ("read", "write", "list", "delete"):
        vault.authorizer.allow(who, f"dataset.{verb}", under)


def grant_models(vault: Vault, who: str = "alice", under: str = "models/fraud-clf") -> None:
    for verb in ("read", "write", "list", "promote", "delete"):
        vault.authorizer.allow(who, f"model.{verb}", under)


def test_push_and_read_back_versions(vault: Vault) -> None:
    grant_datasets(vault)
    reg = vault.registry
    v1 = reg.push(ALICE, Kind.DATASET, "fraud/tx", io.BytesIO(b"a,b\n1,2\n"), metadata={"rows": 1})
    v2 = reg.push(ALICE, Kind.DATASET, "fraud/tx", io.BytesIO(b"a,b\n1,2\n"), expected=v1.digest)
    assert (v1.number, v2.number) == (1, 2)
    assert v1.digest == v2.digest == sha(b"a,b\n1,2\n")
    assert v1.size == 8
    assert v1.created_by == "user:alice"
    assert reg.get(ALICE, Kind.DATASET, "fraud/tx").number == 2  # latest
    version, stream = reg.open(ALICE, Kind.DATASET, "fraud/tx", 1)
    with stream:
        assert stream.read() == b"a,b\n1,2\n"
    assert version.metadata == {"rows": 1}
    assert [v.number for v in reg.versions(ALICE, Kind.DATASET, "fraud/tx")] == [1, 2]
    assert reg.names(ALICE, Kind.DATASET, "fraud") == ["fraud/tx"]
    # one blob for two versions of the same bytes
    assert len(blob_files(vault.blobs_dir / "sha256")) == 1
    kinds = [(e.kind, e.action) for e in vault.sink.events]
    assert kinds[:2] == [
        (EventKind.ACCESS, "dataset.write"),
        (EventKind.DATA_ACCESS, "dataset.write"),
    ]
    writes = [e for e in vault.sink.events if e.kind is EventKind.DATA_ACCESS]
    assert [e.attributes.get("version") for e in writes] == [1, 2, 1]
    assert writes[-1].action == "dataset.read"
    assert all(e.principal == ALICE for e in vault.sink.events)


def test_everything_is_denied_by_default_and_recorded(vault: Vault) -> None:
    grant_datasets(vault)
    reg = vault.registry
    reg.push(ALICE, Kind.DATASET, "fraud/tx", io.BytesIO(b"x"))
    before_rows, before_blobs = row_count(vault), blob_files(vault.blobs_dir)
    vault.sink.events.clear()
    calls = [
        lambda: reg.push(BOB, Kind.DATASET, "fraud/tx", io.BytesIO(b"y")),
        lambda: reg.get(BOB, Kind.DATASET, "fraud/tx"),
        lambda: reg.get(BOB, Kind.DATASET, "fraud/tx", 1),
        lambda: reg.open(BOB, Kind.DATASET, "fraud/tx", 1),
        lambda: reg.names(BOB, Kind.DATASET),
        lambda: reg.versions(BOB, Kind.DATASET, "fraud/tx"),
        lambda: reg.delete(BOB, Kind.DATASET, "fraud/tx", 1, "cleanup"),
        lambda: reg.quarantine(BOB, Kind.DATASET, "fraud/tx", 1, "suspicious"),
        lambda: reg.release(ALICE, Kind.DATASET, "fraud/tx", 1, "alice is no admin"),
        lambda: reg.push(ALICE, Kind.DATASET, "other/tx", io.BytesIO(b"y")),
        lambda: reg.names(ALICE, Kind.DATASET),  # alice may list fraud/, not everything
        lambda: reg.push(ALICE, Kind.MODEL, "fraud-clf", io.BytesIO(b"m")),
    ]
    for call in calls:
        with pytest.raises(AccessDenied):
            call()
    denials = [e for e in vault.sink.events if e.kind is EventKind.ACCESS]
    assert len(denials) == len(calls) == len(vault.sink.events)
    assert all(e.outcome is Outcome.FAILURE and e.decision is not None for e in denials)
    assert row_count(vault) == before_rows
    assert blob_files(vault.blobs_dir) == before_blobs


class BrokenAuthorizer:
    def authorize(
        self, principal: Principal, action: str, resource: str, context: object
    ) -> Decision:
        raise RuntimeError("policy store down")


class LyingAuthorizer:
    """Allows, but answers a question nobody asked."""

    def authorize(
        self, principal: Principal, action: str, resource: str, context: object
    ) -> Decision:
        return Decision(Effect.ALLOW, principal, "admin", "datasets")


@pytest.mark.parametrize("authorizer", [BrokenAuthorizer(), LyingAuthorizer()])
def test_a_failing_or_confused_authorizer_denies(vault: Vault, authorizer: object) -> None:
    vault.registry.authorizer = authorizer  # type: ignore[assignment]
    with pytest.raises(AccessDenied):
        vault.registry.push(ALICE, Kind.DATASET, "fraud/tx", io.BytesIO(b"x"))
    assert row_count(vault) == 0
    (event,) = vault.sink.events
    assert event.outcome is Outcome.FAILURE
    assert event.decision is not None
    assert not event.decision.allowed


@pytest.mark.parametrize(
    "name",
    ["../etc", "/abs", "fraud/../x", "a//b", "Fraud", "a b", "a\\b", "x/versions", ".hidden",
     "a/./b", "", "x" * 201, "trail.", "é"],
)  # fmt: skip
def test_path_tricks_in_names_are_refused_before_anything(vault: Vault, name: str) -> None:
    vault.authorizer.allow("alice", "dataset.write", "datasets")
    with pytest.raises(InputError):
        vault.registry.push(ALICE, Kind.DATASET, name, io.BytesIO(b"x"))
    assert row_count(vault) == 0
    assert blob_files(vault.blobs_dir) == []
    assert vault.sink.events == []


def test_wrong_digest_and_oversized_uploads_store_nothing(vault: Vault) -> None:
    grant_datasets(vault)
    reg = vault.registry
    with pytest.raises(DigestMismatch):
        reg.push(ALICE, Kind.DATASET, "fraud/tx", io.BytesIO(b"abc"), expected=sha(b"abd"))
    with pytest.raises(TooLarge):
        reg.push(ALICE, Kind.DATASET, "fraud/tx", io.BytesIO(b"z" * ((1 << 20) + 1)))
    with pytest.raises(InputError):
        reg.push(ALICE, Kind.DATASET, "fraud/tx", io.BytesIO(b"x"), metadata={"x": float("nan")})
    with pytest.raises(InputError):
        reg.push(ALICE, Kind.DATASET, "fraud/tx", io.BytesIO(b"x"), lineage=[VersionRef("a", 1)])
    assert row_count(vault) == 0
    assert blob_files(vault.blobs_dir) == []
    failures = [e for e in vault.sink.events if e.kind is EventKind.DATA_ACCESS]
    assert [e.outcome for e in failures] == [Outcome.FAILURE, Outcome.FAILURE]


def test_a_scanned_dirty_model_is_quarantined_and_cannot_be_served(vault: Vault) -> None:
    grant_models(vault)
    reg = vault.registry
    bad = reg.push(ALICE, Kind.MODEL, "fraud-clf", io.BytesIO(b"weights EVIL"))
    assert bad.status is Status.QUARANTINED
    assert bad.stage is Stage.DEV
    assert "EVIL" in (bad.status_reason or "")
    with pytest.raises(Quarantined):
        reg.open(ALICE, Kind.MODEL, "fraud-clf", 1)
    with pytest.raises(Quarantined):
        reg.promote(ALICE, "fraud-clf", 1, Stage.STAGING)
    (scan,) = reg.gate_results(ALICE, Kind.MODEL, "fraud-clf", 1)
    assert (scan.gate, scan.passed, scan.details["scanner"]) == ("scan", False, "marker-scanner")
    gate_events = [e for e in vault.sink.events if e.action == "registry.gate.scan"]
    assert gate_events
    assert gate_events[0].outcome is Outcome.FAILURE
    # an administrator may release it after review
    vault.authorizer.allow("alice", "admin", "models/fraud-clf")
    assert reg.release(ALICE, Kind.MODEL, "fraud-clf", 1, "false positive").status is Status.ACTIVE
    with pytest.raises(GateFailed):  # the scan still is not clean
        reg.promote(ALICE, "fraud-clf", 1, Stage.STAGING)


def test_promotion_runs_the_gates_and_a_failure_leaves_the_stage(vault: Vault) -> None:
    grant_models(vault)
    grant_datasets(vault)
    reg = vault.registry
    data = reg.push(ALICE, Kind.DATASET, "fraud/tx", io.BytesIO(b"rows"))
    orphan = reg.push(ALICE, Kind.MODEL, "fraud-clf", io.BytesIO(b"m1"))
    with pytest.raises(NotFound):
        reg.push(
            ALICE, Kind.MODEL, "fraud-clf", io.BytesIO(b"m"), lineage=[VersionRef("fraud/tx", 9)]
        )
    model = reg.push(ALICE, Kind.MODEL, "fraud-clf", io.BytesIO(b"m2"), lineage=[data.ref])
    assert model.lineage == (VersionRef("fraud/tx", 1),)
    assert reg.promote(ALICE, "fraud-clf", orphan.number, Stage.STAGING).stage is Stage.STAGING
    with pytest.raises(GateFailed) as failed:
        reg.promote(ALICE, "fraud-clf", orphan.number, Stage.PROD)
    assert [r.gate for r in failed.value.results if not r.passed] == ["admitted-lineage"]
    assert reg.get(ALICE, Kind.MODEL, "fraud-clf", orphan.number).stage is Stage.STAGING
    assert reg.promote(ALICE, "fraud-clf", model.number, Stage.PROD).stage is Stage.PROD
    # tombstoning the training data blocks the next promotion of a model built on it
    third = reg.push(ALICE, Kind.MODEL, "fraud-clf", io.BytesIO(b"m3"), lineage=[data.ref])
    reg.delete(ALICE, Kind.DATASET, "fraud/tx", 1, "consent withdrawn")
    with pytest.raises(GateFailed, match="tombstoned"):
        reg.promote(ALICE, "fraud-clf", third.number, Stage.PROD)
    results = reg.gate_results(ALICE, Kind.MODEL, "fraud-clf", third.number)
    assert [(r.gate, r.target, r.passed) for r in results] == [
        ("scan", "push", True),
        ("clean-scan", "prod", True),
        ("admitted-lineage", "prod", False),
    ]
    promotions = [
        e
        for e in vault.sink.events
        if e.kind is EventKind.DATA_ACCESS and e.action == "model.promote"
    ]
    assert [e.outcome for e in promotions] == [
        Outcome.SUCCESS,
        Outcome.FAILURE,
        Outcome.SUCCESS,
        Outcome.FAILURE,
    ]


def test_naming_lineage_needs_read_access_to_the_datasets(vault: Vault) -> None:
    grant_datasets(vault)
    vault.authorizer.allow("bob", "model.write", "models/fraud-clf")
    reg = vault.registry
    reg.push(ALICE, Kind.DATASET, "fraud/tx", io.BytesIO(b"rows"))
    for ref in (VersionRef("fraud/tx", 1), VersionRef("fraud/tx", 9)):  # same answer either way
        with pytest.raises(AccessDenied, match=r"dataset\.read datasets/fraud/tx@"):
            reg.push(BOB, Kind.MODEL, "fraud-clf", io.BytesIO(b"m"), lineage=[ref])
    assert row_count(vault) == 1


def test_promotion_context_carries_stage_and_facts(vault: Vault) -> None:
    vault.authorizer.allow("alice", "model.write", "models/fraud-clf")
    vault.authorizer.allow(
        "alice", "model.promote", "models/fraud-clf", stage="staging", scan_clean=True
    )
    reg = vault.registry
    reg.push(ALICE, Kind.MODEL, "fraud-clf", io.BytesIO(b"m"))
    assert reg.promote(ALICE, "fraud-clf", 1, Stage.STAGING).stage is Stage.STAGING
    with pytest.raises(AccessDenied):
        reg.promote(ALICE, "fraud-clf", 1, Stage.PROD)
    decision = [e for e in vault.sink.events if e.kind is EventKind.ACCESS][-1]
    assert decision.attributes["stage"] == "prod"
    assert decision.attributes["signed"] is False


def test_deletion_is_a_tombstone(vault: Vault) -> None:
    grant_datasets(vault)
    reg = vault.registry
    reg.push(ALICE, Kind.DATASET, "fraud/tx", io.BytesIO(b"secret rows"))
    gone = reg.delete(ALICE, Kind.DATASET, "fraud/tx", 1, "GDPR erasure request 42")
    assert gone.status is Status.TOMBSTONED
    assert gone.status_by == "user:alice"
    with pytest.raises(Gone):
        reg.open(ALICE, Kind.DATASET, "fraud/tx", 1)
    with pytest.raises(Gone):
        reg.delete(ALICE, Kind.DATASET, "fraud/tx", 1, "again")
    kept = reg.versions(ALICE, Kind.DATASET, "fraud/tx")
    assert [(v.number, v.status_reason) for v in kept] == [(1, "GDPR erasure request 42")]
    with pytest.raises(InputError):
        reg.quarantine(ALICE, Kind.DATASET, "fraud/tx", 1, "  ")


def test_concurrent_pushes_get_distinct_numbers_and_ordered_events(vault: Vault) -> None:
    grant_datasets(vault)
    reg = vault.registry
    errors: list[BaseException] = []

    def worker(i: int) -> None:
        try:
            for j in range(5):
                reg.push(ALICE, Kind.DATASET, "fraud/tx", io.BytesIO(f"{i}-{j}".encode()))
        except BaseException as e:  # noqa: BLE001 - reported below
            errors.append(e)

    threads = [threading.Thread(target=worker, args=(i,)) for i in range(6)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []
    versions = reg.versions(ALICE, Kind.DATASET, "fraud/tx")
    assert [v.number for v in versions] == list(range(1, 31))
    assert len({v.digest for v in versions}) == 30
    written = [
        e.attributes["version"] for e in vault.sink.events if e.kind is EventKind.DATA_ACCESS
    ]
    assert written == list(range(1, 31))


class _Acting:
    """A gate that acts (as the watch's enrolment does): it records whom it acted for."""

    name = "acting"
    after_others = True

    def __init__(self) -> None:
        self.runs: list[str] = []

    def check(self, version: object, target: Stage, blob: object, context: Any) -> GateResult:
        self.runs.append(str(context.principal))
        return GateResult(self.name, True, target.value)


class _Refusing:
    name = "refusing"

    def check(self, version: object, target: Stage, blob: object, context: Any) -> GateResult:
        return GateResult(self.name, False, target.value, ("no",))


def test_a_gate_that_acts_runs_only_after_every_other_gate_passed(vault: Vault) -> None:
    acting = _Acting()
    vault.registry.promotion_gates = {Stage.STAGING: [acting, _Refusing()], Stage.PROD: [acting]}
    for verb in ("write", "promote"):
        vault.authorizer.allow("alice", f"model.{verb}", "models/m")
    pushed = vault.registry.push(ALICE, Kind.MODEL, "m", io.BytesIO(b"weights"))
    with pytest.raises(GateFailed) as refused:
        vault.registry.promote(ALICE, "m", pushed.number, Stage.STAGING)
    assert "acting: not run: another gate failed" in str(refused.value)
    assert acting.runs == []
    vault.registry.promote(ALICE, "m", pushed.number, Stage.PROD)
    assert acting.runs == [str(ALICE)]  # it acts as the principal who promoted
