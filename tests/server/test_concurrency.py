"""N clients pushing and reading at once over HTTP: no lost, duplicated or reordered versions."""

from __future__ import annotations

import threading
from pathlib import Path

import pytest

from donjon.client import VaultClient
from donjon.core.events import EventKind
from tests.server.conftest import Served

pytestmark = pytest.mark.integration

CLIENTS = 6
PUSHES = 4


def test_concurrent_clients_lose_and_duplicate_nothing(served: Served, tmp_path: Path) -> None:
    for verb in ("read", "write", "list"):
        served.vault.authorizer.allow("alice", f"dataset.{verb}", "datasets/shared")
        served.vault.authorizer.allow("ci", f"dataset.{verb}", "datasets/shared")
    errors: list[BaseException] = []
    pushed: list[tuple[str, int, str]] = []
    lock = threading.Lock()

    def client(i: int) -> None:
        who = "alice" if i % 2 else "ci"
        try:
            with VaultClient(served.url, served.token(who)) as c:
                for j in range(PUSHES):
                    src = tmp_path / f"in-{i}-{j}.bin"
                    src.write_bytes(f"client {i} push {j} ".encode() * (100 + i))
                    record = c.push("dataset", "shared/data", src)
                    with lock:
                        pushed.append((src.name, record["version"], record["digest"]))
                    back = tmp_path / f"out-{i}-{j}.bin"
                    c.pull("dataset", "shared/data", back, record["version"])
                    assert back.read_bytes() == src.read_bytes()
                    c.versions("dataset", "shared/data")
        except BaseException as e:  # noqa: BLE001 - reported by the main thread
            errors.append(e)

    threads = [threading.Thread(target=client, args=(i,)) for i in range(CLIENTS)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=120)
    assert errors == []
    total = CLIENTS * PUSHES
    assert sorted(n for _, n, _ in pushed) == list(range(1, total + 1))
    with VaultClient(served.url, served.token("alice")) as c:
        stored = c.versions("dataset", "shared/data")
    assert [r["version"] for r in stored] == list(range(1, total + 1))
    by_number = {n: d for _, n, d in pushed}
    assert all(r["digest"] == by_number[r["version"]] for r in stored)
    writes = [
        e.attributes["version"]
        for e in served.vault.sink.events
        if e.kind is EventKind.DATA_ACCESS and e.action == "dataset.write"
    ]
    assert writes == list(range(1, total + 1))  # recorded once each, in version order
    reads = [e for e in served.vault.sink.events if e.action == "dataset.read"]
    assert len([e for e in reads if e.kind is EventKind.DATA_ACCESS]) == total
