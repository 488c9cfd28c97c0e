"""Ledger appends per second (SQLite and PostgreSQL) and verification speed.

    python benchmarks/ledger_bench.py [--appends 20000] [--batch 500] [--verify-n 1000000]
                                      [--postgres-url URL | --no-postgres]

For each database: single appends (one transaction per event, the bus's
journal path), batched appends (``append_many``, one transaction per batch),
and, as the naive peer, plain INSERTs of the same JSON with no hash chain, no
head lock and no checkpoints (the ratio shows what tamper evidence costs).
Then ``--verify-n`` entries are written in batches and ``Ledger.verify`` is
timed over all of them. Targets: >= 5,000 appends/s on both databases;
verification of 1M entries in under 10 s. PostgreSQL runs in a fresh schema
that is dropped afterwards.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import threading
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from sqlalchemy import Column, Integer, MetaData, Table, Text

from donjon.audit import Ledger, canonical_json
from donjon.core import SecurityEvent
from donjon.core.events import EventKind
from donjon.storage.ledger import SqlLedgerStore
from donjon.storage.ledger_keys import FileKeyProvider
from donjon.storage.sql import Database, open_database

POSTGRES = "postgresql+psycopg://postgres@127.0.0.1:5432/test"


def events(n: int) -> Iterator[SecurityEvent]:
    for i in range(n):
        yield SecurityEvent(
            kind=EventKind.ACCESS,
            source="bench",
            action="dataset.read",
            message=f"user:alice allowed dataset.read on datasets/fraud/{i}",
            attributes={"i": i},
        )


@contextmanager
def database(kind: str, url: str, tmp: Path) -> Iterator[Database]:
    if kind == "sqlite":
        db = open_database(f"sqlite+pysqlite:///{tmp / f'{uuid.uuid4().hex}.db'}")
        try:
            yield db
        finally:
            db.dispose()
        return
    import psycopg

    schema = f"donjon_bench_{uuid.uuid4().hex[:10]}"
    admin_url = url.replace("postgresql+psycopg://", "postgresql://")
    with psycopg.connect(admin_url, autocommit=True) as admin:
        admin.execute(f'CREATE SCHEMA "{schema}"')
    db = open_database(f"{url}?options=-csearch_path%3D{schema}")
    try:
        yield db
    finally:
        db.dispose()
        with psycopg.connect(admin_url, autocommit=True) as admin:
            admin.execute(f'DROP SCHEMA "{schema}" CASCADE')


def timed(fn: object, *args: object) -> float:
    start = time.perf_counter()
    fn(*args)  # type: ignore[operator]
    return time.perf_counter() - start


def batches(n: int, size: int) -> Iterator[list[SecurityEvent]]:
    batch: list[SecurityEvent] = []
    for event in events(n):
        batch.append(event)
        if len(batch) == size:
            yield batch
            batch = []
    if batch:
        yield batch


def run(kind: str, url: str, args: argparse.Namespace, tmp: Path) -> list[tuple[str, str]]:
    rows = []
    single_n = max(1, args.appends // 10)
    with database(kind, url, tmp) as db:
        ledger = Ledger(
            SqlLedgerStore(db), keys=FileKeyProvider(tmp / "keys"), checkpoint_every=1000
        )
        seconds = timed(lambda: [ledger.append(e) for e in events(single_n)])
        rows.append((f"{kind}: single appends ({single_n})", f"{single_n / seconds:,.0f}/s"))
        threads = 8
        per_thread = max(1, single_n // threads)

        def concurrent() -> None:
            workers = [
                threading.Thread(target=lambda: [ledger.append(e) for e in events(per_thread)])
                for _ in range(threads)
            ]
            for worker in workers:
                worker.start()
            for worker in workers:
                worker.join()

        seconds = timed(concurrent)
        rows.append(
            (
                f"{kind}: single appends, {threads} threads (group commit)",
                f"{threads * per_thread / seconds:,.0f}/s",
            )
        )
        seconds = timed(lambda: [ledger.append_many(b) for b in batches(args.appends, args.batch)])
        batched = args.appends / seconds
        rows.append(
            (f"{kind}: batched appends ({args.appends}, batch {args.batch})", f"{batched:,.0f}/s")
        )
        plain = Table(
            "bench_plain", MetaData(), Column("id", Integer, primary_key=True), Column("body", Text)
        )
        plain.create(db.engine)

        def insert_plain() -> None:
            for batch in batches(args.appends, args.batch):
                with db.engine.begin() as connection:
                    connection.execute(
                        plain.insert(), [{"body": canonical_json(e.to_dict())} for e in batch]
                    )

        peer = args.appends / timed(insert_plain)
        rows.append((f"{kind}: peer, plain INSERT without chain", f"{peer:,.0f}/s"))
        rows.append((f"{kind}: chained / plain", f"{batched / peer:.2f}x"))
        assert ledger.verify().ok
    if args.verify_n:
        with database(kind, url, tmp) as db:
            ledger = Ledger(
                SqlLedgerStore(db), keys=FileKeyProvider(tmp / "keys"), checkpoint_every=10_000
            )
            fill = timed(lambda: [ledger.append_many(b) for b in batches(args.verify_n, 5000)])
            seconds = timed(lambda: verify_ok(ledger, args.verify_n))
            rows.append((f"{kind}: fill {args.verify_n:,} entries", f"{fill:.1f} s"))
            rows.append(
                (
                    f"{kind}: verify {args.verify_n:,} entries",
                    f"{seconds:.2f} s ({args.verify_n / seconds:,.0f}/s)",
                )
            )
    return rows


def verify_ok(ledger: Ledger, n: int) -> None:
    result = ledger.verify()
    if not result.ok or result.entries != n:
        raise SystemExit(f"verification failed: {result.issues[:3]}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--appends", type=int, default=20_000)
    parser.add_argument("--batch", type=int, default=500)
    parser.add_argument("--verify-n", type=int, default=1_000_000)
    parser.add_argument("--postgres-url", default=POSTGRES)
    parser.add_argument("--no-postgres", action="store_true")
    args = parser.parse_args()
    kinds = ["sqlite"] + ([] if args.no_postgres else ["postgres"])
    with tempfile.TemporaryDirectory() as tmp:
        for kind in kinds:
            for name, value in run(kind, args.postgres_url, args, Path(tmp)):
                print(f"{name:58} {value:>22}", flush=True)


if __name__ == "__main__":
    main()
