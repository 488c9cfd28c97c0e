"""Watermark records in Redis: marks given by any replica, seen by verify-suspect."""

from __future__ import annotations

import asyncio
import json
import uuid
from collections.abc import Iterator
from contextlib import ExitStack
from pathlib import Path

import numpy as np
import pytest

from donjon.cli.main import main
from donjon.errors import InputError
from donjon.gateway.redis_link import RedisLink
from donjon.gateway.watermark.redis_records import RedisMarks
from tests.gateway.harness import Victim, serve_gateway, serve_victim, write_setup
from tests.gateway.test_shared_state import with_state
from tests.gateway.test_watermark import _surrogate, query, watermark

pytestmark = [pytest.mark.redis, pytest.mark.integration]
redis = pytest.importorskip("redis")
REDIS = "redis://127.0.0.1:6379/0"


@pytest.fixture
def prefixes() -> Iterator[dict[str, str]]:
    name = f"test:{uuid.uuid4().hex}:"
    yield {"redis_prefix": name + "state:", "marks_prefix": name + "marks:"}
    client = redis.Redis.from_url(REDIS)
    for key in client.scan_iter(match=name + "*"):
        client.delete(key)
    client.close()


def test_marks_of_two_replicas_are_one_record_that_verify_suspect_reads(
    tmp_path: Path,
    victim: Victim,
    upstream: str,
    prefixes: dict[str, str],
    capsys: pytest.CaptureFixture[str],
) -> None:
    mark = watermark(tmp_path)
    settings, keys = write_setup(tmp_path, victim, ["mallory", "bob"], {"watermark": mark})
    shared = with_state(settings, **prefixes)
    rows = victim.x_train[:400]
    with ExitStack() as stack:
        replicas = [stack.enter_context(serve_gateway(shared, keys, upstream)) for _ in range(2)]
        # mallory's queries alternate between the replicas, bob's go to the second
        answers = np.concatenate(
            [query(replicas[i % 2], "mallory", rows[50 * i : 50 * i + 50]) for i in range(8)]
        )
        query(replicas[1], "bob", victim.x_test[:200])
        # sent again through the other replica: the same answers, nothing recorded again
        again = np.concatenate(
            [query(replicas[1 - i % 2], "mallory", rows[50 * i : 50 * i + 50]) for i in range(8)]
        )
        events = [[e for e in r.sink.events if e.action == "gateway.watermark"] for r in replicas]
    store = RedisMarks(RedisLink(REDIS), prefix=prefixes["marks_prefix"])
    records = store.records("digits")
    assert (again.argmax(axis=1) == answers.argmax(axis=1)).all()
    assert all(events)  # each replica recorded marks
    # one ledger event per record, none lost and none twice
    assert sorted(e.attributes["record"] for part in events for e in part) == sorted(
        r.address for r in records
    )
    assert {r.principal for r in records} == {"mallory", "bob"}
    assert not (tmp_path / "marks").exists()  # nothing in the folder store
    # the CLI, with the gateway's config, finds mallory's marks in Redis
    config = tmp_path / "gateway.toml"
    lines = ["[state]", 'backend = "redis"', f'redis_url = "{REDIS}"']
    lines += [f'marks_prefix = "{prefixes["marks_prefix"]}"', "[[models]]", 'name = "digits"']
    lines += ['routes = ["/predict"]', "[models.watermark]"]
    lines += [f"{k} = {json.dumps(v)}" for k, v in mark.items()]
    config.write_text("\n".join(lines) + "\n")
    thief = _surrogate(rows, answers.argmax(axis=1))
    with serve_victim(thief) as url:  # type: ignore[arg-type]
        code = main(
            [
                "-f", "json", "gateway", "verify-suspect", "-c", str(config),
                "--model", "digits", "--url", f"{url}/predict",
            ]
        )  # fmt: skip
    assert code == 1
    summary = json.loads(capsys.readouterr().out)
    assert summary["identified"] == ["mallory"]
    mallory = next(p for p in summary["principals"] if p["principal"] == "mallory")
    assert mallory["marks"] == len([r for r in records if r.principal == "mallory"
                                    and r.kind == "mark"])  # fmt: skip


def test_the_redis_record_is_bounded_and_content_addressed(prefixes: dict[str, str]) -> None:
    from donjon.gateway.watermark.records import MarkRecord

    def record(i: int) -> MarkRecord:
        return MarkRecord("m", "p", "mark", f"{i:064x}", (float(i),), 0, 1, 2, "k", "t")

    async def run() -> list[bool]:
        store = RedisMarks(RedisLink(REDIS), prefix=prefixes["marks_prefix"], max_records=3)
        added = [await store.add(record(i)) for i in (0, 1, 0, 2, 3)]
        await store.link.aclose()
        return added

    assert asyncio.run(run()) == [True, True, False, True, False]  # a repeat; then full
    store = RedisMarks(RedisLink(REDIS), prefix=prefixes["marks_prefix"])
    assert sorted(r.row for r in store.records("m")) == [(0.0,), (1.0,), (2.0,)]
    assert store.records("m", ["q"]) == []
    client = redis.Redis.from_url(REDIS)
    assert client.ttl(prefixes["marks_prefix"] + "m") == -1  # evidence: never expires
    client.hset(prefixes["marks_prefix"] + "m", "f" * 64, client.hget(
        prefixes["marks_prefix"] + "m", record(0).address))  # fmt: skip
    client.close()
    with pytest.raises(InputError, match="does not match its address"):
        store.records("m")
