"""The cost of the vault's access hardening, over real HTTP on SQLite.

    python benchmarks/vault_authz_bench.py [--names 10000] [--flood 10000] [--repeat 7]

1. Listing ``--names`` dataset names with per-item filtering (each name decided
   by Cedar, batched: one evaluation per group of alike names) against the same
   listing by a caller whose policy has nothing to filter, and against the
   registry's store alone (the peer: no authorisation at all). Medians of
   ``--repeat`` runs, the two listings alternated, the first (cold) run shown
   apart. Target: the filtered listing of 10,000 names under 100 ms.
2. A flood of ``--flood`` requests with bad tokens from one address: the
   ledger entries it adds with the failed-authentication limiter (the default
   20 failures a minute, aggregated) and without it (every failure ledgered),
   per request. Target: at most a few dozen entries for the whole flood.
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path

import httpx
import uvicorn
from fastapi import FastAPI

from donjon.app import build, build_authenticator, build_authorizer, build_identity, build_vault
from donjon.config import load_settings
from donjon.core.identity import Principal
from donjon.server import ServerLimits, create_app
from donjon.storage.registry import versions
from donjon.storage.sql import open_database

POLICY = """
permit(principal == User::"admin", action, resource);
permit(principal == User::"analyst", action in [Action::"dataset.list", Action::"dataset.read"],
       resource in Collection::"datasets/fraud");
forbid(principal == User::"analyst", action, resource in Collection::"datasets/fraud/pii");
"""


@contextmanager
def serve(app: FastAPI) -> Iterator[str]:
    server = uvicorn.Server(
        uvicorn.Config(app, host="127.0.0.1", port=0, log_level="warning", lifespan="on")
    )
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    while not server.started:
        time.sleep(0.01)
    try:
        yield f"http://127.0.0.1:{server.servers[0].sockets[0].getsockname()[1]}"
    finally:
        server.should_exit = True
        thread.join(timeout=20)


@contextmanager
def vault(home: Path, limits: ServerLimits) -> Iterator[tuple[str, dict[str, str], object, int]]:
    settings = load_settings(home=home)
    settings.home.mkdir(parents=True, exist_ok=True)
    settings.policy_path.write_text(POLICY, encoding="utf-8")
    donjon = build(settings)
    database = open_database(settings.sql_url)
    identity = build_identity(settings, donjon.bus, database)
    tokens = {}
    for who in ("admin", "analyst"):
        identity.create_user(who)
        tokens[who] = identity.issue_token(who).secret
    services = build_vault(
        settings,
        build_authenticator(settings, donjon.bus, database),
        build_authorizer(settings, donjon.bus),
        donjon.bus,
    )
    try:
        with serve(
            create_app(services.registry, services.authenticator, donjon.bus, limits=limits)
        ) as url:
            yield url, tokens, services, 0
    finally:
        services.close()
        database.dispose()
        donjon.close()


def fill(services: object, count: int) -> None:
    """``count`` dataset names, a tenth of them under fraud/pii, in one transaction."""
    now = datetime.now(UTC)
    rows = [
        {
            "kind": "dataset",
            "name": f"fraud/{'pii' if i % 10 == 0 else 'tx'}/d{i // 100}/n{i}",
            "number": 1,
            "digest": "sha256:" + "0" * 64,
            "size": 1,
            "media_type": "application/octet-stream",
            "metadata": {},
            "stage": None,
            "status": "active",
            "created_by": "user:admin",
            "created_at": now,
        }
        for i in range(count)
    ]
    with services.database.engine.begin() as conn:  # type: ignore[attr-defined]
        conn.execute(versions.insert(), rows)


def ledger_size(home: Path) -> int:
    database = open_database(load_settings(home=home).sql_url)
    try:
        with database.engine.connect() as conn:
            return int(conn.exec_driver_sql("SELECT count(*) FROM audit_ledger").scalar_one())
    finally:
        database.dispose()


def listing(args: argparse.Namespace) -> None:
    with (
        tempfile.TemporaryDirectory() as tmp,
        vault(Path(tmp), ServerLimits()) as (url, tokens, services, _),
    ):
        fill(services, args.names)
        registry = services.registry  # type: ignore[attr-defined]
        runs: dict[str, list[float]] = {
            "filtered": [],
            "nothing hidden": [],
            "store alone": [],
            "the filter alone": [],
        }
        listed = [f"datasets/{n}" for n in registry.store.names("dataset", "fraud")]
        with httpx.Client(base_url=url) as http:

            def timed(who: str) -> tuple[float, int]:
                start = time.perf_counter()
                r = http.get(
                    "/v1/datasets",
                    params={"prefix": "fraud"},
                    headers={"Authorization": f"Bearer {tokens[who]}"},
                )
                took = time.perf_counter() - start
                r.raise_for_status()
                return took, len(r.json()["names"])

            cold, seen = timed("analyst")
            for i in range(args.repeat):
                order = ("analyst", "admin") if i % 2 == 0 else ("admin", "analyst")
                for who in order:
                    took, _ = timed(who)
                    runs["filtered" if who == "analyst" else "nothing hidden"].append(took)
                start = time.perf_counter()
                registry.store.names("dataset", "fraud")
                runs["store alone"].append(time.perf_counter() - start)
                start = time.perf_counter()  # in-process: the batched Cedar decisions only
                registry.authorizer.decide_many(Principal("analyst"), "dataset.list", listed)
                runs["the filter alone"].append(time.perf_counter() - start)
    print(f"listing {args.names} names over HTTP (analyst sees {seen}; cold {cold * 1000:.1f} ms)")
    base = statistics.median(runs["store alone"])
    for label, values in runs.items():
        median = statistics.median(values)
        print(f"  {label:15} median {median * 1000:7.1f} ms   x{median / base:5.1f} of the store")


def flood(args: argparse.Namespace) -> None:
    print("a flood of bad tokens from 127.0.0.1 (ledger entries counted after shutdown)")
    off = ServerLimits(auth_failure_limit=0, auth_failure_window=0)
    if args.flood <= 0:
        return
    for label, limits, count in (
        ("limiter on (20/min)", ServerLimits(), args.flood),
        ("limiter off", off, max(1, args.flood // 10)),
    ):
        with tempfile.TemporaryDirectory() as tmp:
            home = Path(tmp)
            codes: dict[int, int] = {}
            with vault(home, limits) as (url, _, _services, _):
                before = ledger_size(home)
                start = time.perf_counter()
                with httpx.Client(base_url=url) as http:
                    for i in range(count):
                        bad = {"Authorization": f"Bearer djt_{i:043d}"}
                        r = http.get("/v1/whoami", headers=bad)
                        codes[r.status_code] = codes.get(r.status_code, 0) + 1
                took = time.perf_counter() - start
            added = ledger_size(home) - before  # the windows were flushed at shutdown
        print(
            f"  {label:20} {count:6} requests in {took:5.1f} s {codes}: "
            f"{added} ledger entries ({added / count:.4f} per request)"
        )


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--names", type=int, default=10_000)
    parser.add_argument("--flood", type=int, default=10_000)
    parser.add_argument("--repeat", type=int, default=7)
    arguments = parser.parse_args()
    listing(arguments)
    flood(arguments)
