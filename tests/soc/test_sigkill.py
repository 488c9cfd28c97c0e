"""Kill a publisher with SIGKILL under load, restart it: no acknowledged event is lost."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import donjon
from donjon.soc.jsonl import read_all_events
from donjon.storage.outbox import SqlOutboxStore
from donjon.storage.sql import open_database
from tests.conftest import REPO_ROOT


def _acked(path: Path) -> list[str]:
    if not path.exists():
        return []
    return [line for line in path.read_text().split("\n") if len(line) == 32]


def _spawn(acks: Path, env: dict[str, str], *limit: str) -> subprocess.Popen[bytes]:
    with (acks.parent / "child.log").open("ab") as log:
        return subprocess.Popen(
            [sys.executable, "-m", "tests.soc.publisher_child", str(acks), *limit],
            cwd=REPO_ROOT,
            env=env,
            stderr=log,
        )


def _log(acks: Path) -> str:
    return (acks.parent / "child.log").read_text()[-3000:]


def _wait_for_acks(acks: Path, count: int, child: subprocess.Popen[bytes]) -> None:
    deadline = time.monotonic() + 60
    while len(_acked(acks)) < count:
        assert child.poll() is None, _log(acks)
        assert time.monotonic() < deadline, "the publisher made no progress"
        time.sleep(0.02)


def test_sigkill_under_load_loses_no_acknowledged_event(
    database_url: str, donjon_home: Path, tmp_path: Path
) -> None:
    acks = tmp_path / "acks.txt"
    env = {**os.environ, "DONJON_HOME": str(donjon_home), "DONJON_SOC__OUTBOX_URL": database_url}
    source = Path(donjon.__file__).resolve().parents[1]  # this checkout's code
    env["PYTHONPATH"] = os.pathsep.join([str(source), str(REPO_ROOT)])
    env["DONJON_SOC__LEASE_SECONDS"] = "1"  # a killed relay's lease runs out quickly
    target = 0
    for _round in range(3):
        child = _spawn(acks, env)
        target += 150
        _wait_for_acks(acks, target, child)
        child.send_signal(signal.SIGKILL)  # mid-publish, mid-delivery
        assert child.wait(10) == -signal.SIGKILL
    final = _spawn(acks, env, "50")  # a clean run drains the backlog on exit
    assert final.wait(120) == 0, _log(acks)

    acknowledged = _acked(acks)
    assert len(acknowledged) >= target + 50
    db = open_database(database_url)
    try:
        stored = [uid for _, uid, _ in SqlOutboxStore(db).read_after(0, 1_000_000)]
    finally:
        db.dispose()
    assert set(acknowledged) <= set(stored)  # every acknowledged event was stored
    assert len(stored) == len(set(stored))  # once
    delivered = [e.uid for e in read_all_events(donjon_home / "events.jsonl")]
    assert set(acknowledged) <= set(delivered)  # and reached the sink despite three kills
    order = {uid: i for i, uid in enumerate(stored)}
    positions = [order[uid] for uid in delivered]
    assert positions == sorted(positions)  # in outbox order
