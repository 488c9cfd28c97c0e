"""The SQL ledger store: concurrent appenders (threads and processes) on SQLite and PostgreSQL."""

from __future__ import annotations

import json
import multiprocessing
import threading
from collections import defaultdict
from pathlib import Path

import pytest

from donjon.audit import canonical_json, entry_hash
from donjon.core import EventBus, MemorySink
from donjon.storage.ledger import SqlLedgerStore
from donjon.storage.sql import open_database
from tests.audit.helpers import event, make_ledger

THREADS, PER_THREAD = 6, 40
PROCESSES, PER_PROCESS = 3, 30


def _check_chain(url: str, keys: Path, writers: dict[str, int]) -> None:
    """No entry lost, duplicated or reordered; every writer's own order kept; chain verifies."""
    db = open_database(url)
    try:
        ledger = make_ledger(db, keys)
        result = ledger.verify()
        assert result.ok, result.issues
        total = sum(writers.values())
        assert result.entries == total
        seen: dict[str, list[int]] = defaultdict(list)
        uids = set()
        seqs = []
        for seq, _prev, _hash, body in SqlLedgerStore(db).rows():
            entry = json.loads(body)
            seqs.append(seq)
            uids.add(entry["event"]["uid"])
            attributes = entry["event"]["attributes"]
            seen[attributes["writer"]].append(attributes["i"])
        assert seqs == list(range(1, total + 1))
        assert len(uids) == total
        for writer, count in writers.items():
            assert seen[writer] == list(range(count)), f"{writer} lost or reordered entries"
    finally:
        db.dispose()


def test_concurrent_threads(database_url: str, tmp_path: Path) -> None:
    db = open_database(database_url)
    ledger = make_ledger(db, tmp_path / "keys", every=25)
    barrier = threading.Barrier(THREADS)
    errors: list[BaseException] = []

    def write(name: str) -> None:
        try:
            barrier.wait()
            for i in range(PER_THREAD):
                ledger.append(event(name, i))
        except BaseException as e:  # noqa: BLE001 - reported below
            errors.append(e)

    threads = [threading.Thread(target=write, args=(f"t{n}",)) for n in range(THREADS)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    db.dispose()
    assert not errors
    _check_chain(database_url, tmp_path / "keys", {f"t{n}": PER_THREAD for n in range(THREADS)})


def _process_writer(url: str, keys: str, name: str, count: int) -> None:
    db = open_database(url)
    ledger = make_ledger(db, Path(keys), every=25)
    for i in range(count):
        ledger.append(event(name, i))
    db.dispose()


def test_concurrent_processes(database_url: str, tmp_path: Path) -> None:
    db = open_database(database_url)  # migrate and make the key once, before the race
    make_ledger(db, tmp_path / "keys").checkpoint()
    db.dispose()
    spawn = multiprocessing.get_context("spawn")
    workers = [
        spawn.Process(
            target=_process_writer,
            args=(database_url, str(tmp_path / "keys"), f"p{n}", PER_PROCESS),
        )
        for n in range(PROCESSES)
    ]
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join(timeout=120)
    assert [w.exitcode for w in workers] == [0] * PROCESSES
    _check_chain(database_url, tmp_path / "keys", {f"p{n}": PER_PROCESS for n in range(PROCESSES)})


def test_the_bus_journals_into_the_ledger_before_the_sinks(
    database_url: str, tmp_path: Path
) -> None:
    db = open_database(database_url)
    try:
        ledger = make_ledger(db, tmp_path / "keys")
        sink = MemorySink()
        bus = EventBus([sink], journal=ledger)
        bus.publish(event("bus", 0))
        bus.publish(event("bus", 1))
        assert ledger.head()[0] == 2
        assert len(sink.events) == 2
        seqs = ledger.append_many([event("batch", i) for i in range(5)])
        assert seqs == [3, 4, 5, 6, 7]
        assert ledger.append_many([]) == []
    finally:
        db.dispose()


def test_export_is_verifiable_on_its_own(database_url: str, tmp_path: Path) -> None:
    """The documented canonicalisation lets anyone recompute the chain from the export."""
    db = open_database(database_url)
    try:
        ledger = make_ledger(db, tmp_path / "keys")
        ledger.append_many([event("e", i) for i in range(12)])
        out = tmp_path / "ledger.jsonl"
        with out.open("w") as f:
            assert ledger.export(f) == 12
        prev = "0" * 64
        for line in out.read_text().splitlines():
            record = json.loads(line)
            assert record["prev"] == prev
            prev = entry_hash(prev, canonical_json(record["entry"]))
            assert prev == record["hash"]
        assert prev == ledger.head()[1]
    finally:
        db.dispose()


def test_checkpoints_are_idempotent_and_need_a_key(database_url: str, tmp_path: Path) -> None:
    from donjon.audit import Ledger, Problem
    from donjon.errors import VerificationError
    from donjon.storage.ledger_keys import FileKeyProvider

    db = open_database(database_url)
    try:
        ledger = make_ledger(db, tmp_path / "keys", every=0)
        ledger.append(event("c", 0))
        first, again = ledger.checkpoint(), ledger.checkpoint()
        assert (first.seq, again.seq) == (1, 1)
        assert ledger.verify().checkpoints == 1
        with pytest.raises(VerificationError, match="no signing key"):
            Ledger(SqlLedgerStore(db)).checkpoint()
        # a verifier needs no private key: the database registers the public one
        keyless = Ledger(SqlLedgerStore(db)).verify()
        assert (keyless.ok, keyless.checkpoints) == (True, 1)
        assert SqlLedgerStore(db).public_keys() == {
            "ledger": (tmp_path / "keys" / "ledger.pub.pem").read_bytes()
        }
        other = FileKeyProvider(tmp_path / "other").public_key_pem("ledger")
        pinned = Ledger(SqlLedgerStore(db)).verify(public_key_pem=other)
        assert pinned.issues[0].problem is Problem.BAD_CHECKPOINT
        assert (tmp_path / "keys" / "ledger.key.pem").stat().st_mode & 0o777 == 0o600
    finally:
        db.dispose()


def test_signing_keys_are_private_and_refused_when_exposed(tmp_path: Path) -> None:
    from donjon.errors import StorageError
    from donjon.storage.ledger_keys import FileKeyProvider

    keys = FileKeyProvider(tmp_path / "keys")
    signature = keys.sign("ledger", b"payload")
    assert signature
    assert keys.key_ids() == ["ledger"]
    assert (tmp_path / "keys").stat().st_mode & 0o777 == 0o700
    private = tmp_path / "keys" / "ledger.key.pem"
    assert private.stat().st_mode & 0o777 == 0o600
    assert "PRIVATE" not in repr(keys)
    private.chmod(0o644)
    with pytest.raises(StorageError, match="readable by others"):
        FileKeyProvider(tmp_path / "keys").sign("ledger", b"payload")
    with pytest.raises(StorageError, match="no signing key"):
        FileKeyProvider(tmp_path / "none", create=False).sign("ledger", b"x")
