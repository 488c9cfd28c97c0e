"""One principal's requests in one process with Redis state: handed on in one round trip,
fair to the other replicas, and left consistent by cancelled requests."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import pytest

from donjon.gateway.detectors import Action
from donjon.gateway.detectors.redis_states import RedisStates
from donjon.gateway.detectors.stores import Charge, Refusal
from donjon.gateway.quotas import Bucket, MemoryQuotas, RedisQuotas
from donjon.gateway.redis_link import StateUnavailable
from tests.support.redis_server import redis_server

pytest.importorskip("redis")
pytestmark = [pytest.mark.redis, pytest.mark.integration]


async def _reads(states: RedisStates) -> int:
    """Reads Redis did on its clients' sockets so far (this INFO's own included)."""
    info = (await states.link.command("INFO", "stats")).decode()
    line = next(x for x in info.splitlines() if x.startswith("total_reads_processed:"))
    return int(line.split(":")[1])


async def _request(states: RedisStates, done: list[str], name: str, hold: float = 0.0) -> None:
    opened = await states.open("p", MemoryQuotas(), (), 0.0)
    assert opened.state is not None
    opened.state.queries += 1
    if hold:
        await asyncio.sleep(hold)  # the detectors' time, long enough for a queue to form
    await states.close(opened, [])
    done.append(name)


async def _queries(states: RedisStates) -> int:
    opened = await states.open("p", MemoryQuotas(), (), 0.0)
    assert opened.state is not None
    queries = opened.state.queries
    await states.abort(opened)
    return queries


def test_a_save_and_the_next_requests_open_share_one_round_trip(tmp_path: Path) -> None:
    """20 concurrent requests of one principal: the first opens the state alone, the 19
    that queued behind it share one open and one save, and the save of each batch
    leaves in one write with the next one's open, whose state is the one just saved
    (only its labels are read)."""

    async def run() -> tuple[int, dict[str, int], int]:
        states = RedisStates.from_url(server.url, window=32, features=2, prefix="t:")
        done: list[str] = []
        await _request(states, done, "warm")  # scripts loaded, connection open
        before = await _reads(states)
        await asyncio.gather(*(_request(states, done, str(i)) for i in range(20)))
        reads = await _reads(states) - before - 1
        queries = await _queries(states)
        await states.link.aclose()
        return reads, dict(states.reads), queries

    with redis_server(tmp_path) as server:
        reads, cache, queries = asyncio.run(run())
    assert queries == 21
    assert cache == {"open": 1, "same": 3}  # only the first read the whole state
    # 3 writes: the first open, its save + the batch's open, the batch's save (each
    # request had two before)
    assert reads <= 5, reads


def test_a_replica_waiting_for_a_busy_principal_gets_the_next_turn(tmp_path: Path) -> None:
    """While one process always has another request of the principal ready, the other
    process's request is served after the one holding it, not after the whole queue."""

    async def run() -> tuple[list[str], int]:
        one = RedisStates.from_url(server.url, window=64, features=2, prefix="t:")
        two = RedisStates.from_url(server.url, window=64, features=2, prefix="t:")
        done: list[str] = []
        await _queries(one)  # both connected
        await _queries(two)
        busy = [asyncio.ensure_future(_request(one, done, f"a{i}", 0.003)) for i in range(30)]
        await asyncio.sleep(0.001)  # the first holds the principal, 29 queue behind it
        await _request(two, done, "b")
        await asyncio.gather(*busy)
        queries = await _queries(two)
        for states in (one, two):
            await states.link.aclose()
        return done, queries

    with redis_server(tmp_path) as server:
        done, queries = asyncio.run(run())
    assert queries == 31
    assert done.index("b") <= 3, done


def test_cancelled_requests_in_a_principals_queue_leave_it_consistent(tmp_path: Path) -> None:
    """One request cancelled while it waits, one cancelled as it is handed the principal
    (its open already sent): the others are served, and no lock is left behind."""

    async def run() -> tuple[list[str], int, list[int]]:
        states = RedisStates.from_url(server.url, window=32, features=2, prefix="t:")
        await _queries(states)
        done: list[str] = []
        first = await states.open("p", MemoryQuotas(), (), 0.0)
        assert first.state is not None
        first.state.queries += 1
        tasks = [asyncio.ensure_future(_request(states, done, str(i))) for i in range(1, 4)]
        await asyncio.sleep(0.01)  # all three wait in this process's queue
        tasks[1].cancel()  # while waiting
        closing = asyncio.ensure_future(states.close(first, []))
        await asyncio.sleep(0)  # the close handed the principal to the first waiter
        tasks[0].cancel()  # before it ran: its open is on its way to Redis
        await closing
        await asyncio.gather(*tasks, return_exceptions=True)
        queries = await _queries(states)
        left = [await states.link.command("EXISTS", f"t:p:{k}") for k in ("lock", "next")]
        await states.aclose()
        await states.link.aclose()
        return done, queries, left

    with redis_server(tmp_path) as server:
        done, queries, left = asyncio.run(run())
    assert done == ["3"]
    assert queries == 2
    assert left == [0, 0]


async def _batch(states: RedisStates, quotas: Any, charges: Any, refuse: list[bool]) -> list[str]:
    """One request holds the principal while ``len(refuse)`` more queue behind it; each
    of those refuses the principal for a minute if its ``refuse`` says so."""
    outcomes: list[str] = []

    async def one(refuse: bool) -> None:
        opened = await states.open("p", quotas, charges, 0.0)
        if opened.state is None:
            outcomes.append("denied" if opened.denied else f"refused {opened.refused[0]}")
            return
        opened.state.queries += 1
        refusals = [Refusal("DJ-GW-001", Action.BLOCK, 60.0)] if refuse else []
        await states.close(opened, refusals)
        outcomes.append("admitted")

    first = await states.open("p", quotas, charges, 0.0)
    assert first.state is not None
    tasks = [asyncio.ensure_future(one(r)) for r in refuse]
    await asyncio.sleep(0.01)  # all queued: one batch
    await states.close(first, [])
    await asyncio.gather(*tasks)
    return sorted(outcomes)


def test_a_batch_charges_each_request_its_own_quota(tmp_path: Path) -> None:
    """Requests queued together share one open script, yet each is charged its own
    quota: those past the burst are denied, the others admitted."""

    async def run() -> list[str]:
        states = RedisStates.from_url(server.url, window=32, features=2, prefix="t:")
        quotas = RedisQuotas(states.link, prefix="q:")  # taken by the state's own script
        charges = [Charge("p:p", Bucket(rate=0.001, burst=4.0), 1.0)]
        outcomes = await _batch(states, quotas, charges, [False] * 4)
        await states.link.aclose()
        return outcomes

    with redis_server(tmp_path) as server:
        assert asyncio.run(run()) == ["admitted"] * 3 + ["denied"]  # 1 + 3 tokens of 4


def test_a_refusal_earned_in_a_batch_refuses_the_requests_after_it(tmp_path: Path) -> None:
    async def run() -> tuple[list[str], dict[str, Any]]:
        states = RedisStates.from_url(server.url, window=32, features=2, prefix="t:")
        outcomes = await _batch(states, MemoryQuotas(), (), [True, False, False])
        stored = await states.refusals("p", 0.0)  # saved with the batch
        await states.link.aclose()
        return outcomes, stored

    with redis_server(tmp_path) as server:
        outcomes, stored = asyncio.run(run())
    assert outcomes == ["admitted", "refused DJ-GW-001", "refused DJ-GW-001"]
    assert list(stored) == ["DJ-GW-001"]


def test_redis_stopping_under_a_batch_refuses_every_request_of_it(tmp_path: Path) -> None:
    """The save of the request holding the principal and the open of the batch queued
    behind it both fail: each request is told the state is unavailable (503)."""

    async def run() -> list[str]:
        states = RedisStates.from_url(server.url, window=32, features=2, prefix="t:")
        first = await states.open("p", MemoryQuotas(), (), 0.0)
        assert first.state is not None
        queued = [asyncio.ensure_future(_request(states, [], str(i))) for i in range(2)]
        await asyncio.sleep(0.01)
        server.stop()
        outcomes = []
        for work in [states.close(first, []), *queued]:
            try:
                await work
                outcomes.append("saved")
            except StateUnavailable:
                outcomes.append("unavailable")
        await states.aclose()
        await states.link.aclose()
        return outcomes

    with redis_server(tmp_path) as server:
        assert asyncio.run(run()) == ["unavailable"] * 3
