"""Detector state in Redis: replicas behind a round-robin split see one history."""

from __future__ import annotations

import asyncio
import threading
import uuid
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import ExitStack, contextmanager
from dataclasses import fields
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from art.attacks.evasion import HopSkipJump
from art.estimators.classification import BlackBoxClassifier

from donjon.gateway.detectors import Action
from donjon.gateway.detectors.redis_layout import decode, encode
from donjon.gateway.detectors.redis_states import TAG, RedisStates
from donjon.gateway.detectors.state import UNKNOWN, PrincipalState
from donjon.gateway.detectors.stores import Charge, Refusal
from donjon.gateway.quotas import Bucket, MemoryQuotas, RedisQuotas
from donjon.gateway.settings import GatewaySettings
from tests.gateway.harness import Blocked, Gateway, Victim, serve_gateway, write_setup
from tests.gateway.test_detectors import jacobian_augmentation
from tests.support.redis_server import redis_server

redis = pytest.importorskip("redis")

pytestmark = [pytest.mark.redis, pytest.mark.integration]
REDIS = "redis://127.0.0.1:6379/0"


@pytest.fixture
def prefix() -> Iterator[str]:
    client = redis.Redis.from_url(REDIS, socket_timeout=2)
    name = f"test:{uuid.uuid4().hex}:"
    yield name
    for key in client.scan_iter(match=name + "*"):
        client.delete(key)
    client.close()


def with_state(settings: GatewaySettings, **state: Any) -> GatewaySettings:
    return settings.model_copy(
        update={"state": settings.state.model_copy(update={"backend": "redis", **state})}
    )


def test_a_state_round_trips_through_redis_with_expiry(prefix: str) -> None:
    rows = np.random.default_rng(0).normal(size=(5, 3))

    async def run() -> None:
        one = RedisStates.from_url(REDIS, window=8, features=3, prefix=prefix, ttl=60)
        two = RedisStates.from_url(REDIS, window=8, features=3, prefix=prefix, ttl=60)
        opened = await one.open("p", MemoryQuotas(), (), 0.0)
        assert opened.state is not None
        state = opened.state
        for row in rows:
            near = state.neighbours(row, 0.1, 1e-4)
            state.push(row, near.bisects)
        state.queries, state.tested, state.synthetic, state.cusum = 5, 5, 3, 1.25
        await one.close(opened, [])
        await one.label("p", [0, 2], np.array([7, 9]))
        again = await two.open("p", MemoryQuotas(), (), 0.0)  # another replica
        seen = again.state
        assert seen is not None
        assert seen.size == 5
        assert seen.cursor == 5
        assert np.allclose(seen.rows[:5], rows.astype(np.float32))
        assert seen.labels[:4].tolist() == [7, UNKNOWN, 9, UNKNOWN]
        assert (seen.queries, seen.tested, seen.synthetic, seen.cusum) == (5, 5, 3, 1.25)
        assert seen.spans is not None
        assert len(seen.spans) == 4  # the line test's spans survive the trip
        await two.abort(again)
        await one.link.aclose()
        await two.link.aclose()

    asyncio.run(run())
    client = redis.Redis.from_url(REDIS)
    assert 0 < client.ttl(prefix + "p") <= 60
    assert 0 < client.ttl(prefix + "p:labels") <= 60
    assert 0 < client.ttl(prefix + "p:rows") <= 60
    assert client.get(prefix + "p:lock") is None  # released
    # bounded by the window, whatever the number of queries
    assert len(client.get(prefix + "p:rows")) <= 8 * 3 * 4
    assert len(client.get(prefix + "p")) < 8 * 2 * 4 + 400
    client.close()


def test_a_process_reads_only_the_labels_while_its_saved_state_is_current(prefix: str) -> None:
    rows = np.random.default_rng(1).normal(size=(4, 3))

    async def step(states: RedisStates, row: np.ndarray) -> tuple[PrincipalState, int]:
        opened = await states.open("p", MemoryQuotas(), (), 0.0)
        assert opened.state is not None
        state = opened.state
        slot = state.push(row, state.neighbours(row, 0.1, 1e-4).bisects)
        state.queries += 1
        await states.close(opened, [])
        return state, slot

    async def run() -> None:
        one = RedisStates.from_url(REDIS, window=8, features=3, prefix=prefix)
        two = RedisStates.from_url(REDIS, window=8, features=3, prefix=prefix)
        await step(one, rows[0])
        await step(one, rows[1])
        assert one.reads == {"open": 1, "same": 1}  # its own save: nothing to read
        _, theirs = await step(two, rows[2])  # another replica saves
        seen, _ = await step(one, rows[3])
        assert one.reads == {"open": 2, "same": 1}  # so this one reads it all
        assert seen.queries == 4
        assert np.allclose(seen.rows[:4], rows.astype(np.float32))
        await two.label("p", [theirs], np.array([6]))  # answered after `one` read it
        opened = await one.open("p", MemoryQuotas(), (), 0.0)
        assert opened.state is not None
        assert one.reads == {"open": 2, "same": 2}
        assert opened.state.labels[theirs] == 6  # labels are read every time
        await one.abort(opened)  # an aborted request leaves no cache behind
        again = await one.open("p", MemoryQuotas(), (), 0.0)
        assert one.reads == {"open": 3, "same": 2}
        await one.abort(again)
        await one.link.aclose()
        await two.link.aclose()

    asyncio.run(run())


def test_a_request_cancelled_in_flight_leaves_no_lock_behind(prefix: str) -> None:
    async def run() -> tuple[int, int]:
        states = RedisStates.from_url(REDIS, window=4, features=1, prefix=prefix)
        quotas = RedisQuotas(states.link, prefix=prefix + "quota:")
        charge = Charge("p:p", Bucket(rate=1.0, burst=10.0), 1.0)
        await states.link.command("PING")  # connected
        task = asyncio.ensure_future(states.open("p", quotas, [charge], 0.0))
        for _ in range(3):  # the script is sent, its answer not read yet
            await asyncio.sleep(0)
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        await asyncio.sleep(0.2)
        ran = await states.link.command("EXISTS", prefix + "quota:p:p")
        locked = await states.link.command("EXISTS", prefix + "p:lock")
        await states.link.aclose()
        return int(ran), int(locked)

    assert asyncio.run(run()) == (1, 0)  # the script ran (it took the bucket), no lock left


def test_every_field_of_a_state_is_shared() -> None:
    """A field added to PrincipalState must be added to the Redis layout too."""
    kept_apart = {"window", "features", "rows", "labels", "blocked_until", "pushed"}
    state = PrincipalState(8, 3)
    for i, field in enumerate(fields(PrincipalState)):
        if field.name in kept_apart | {"bisecting"}:
            continue
        assert field.type in ("int", "float"), f"{field.name}: not in the Redis layout"
        setattr(state, field.name, i + 1 if field.type == "int" else i + 0.25)
    state.spans = np.arange(5, dtype=np.float32)
    state.bisecting[2] = True
    back = decode(b"0" * TAG + encode(state), b"", 8, 3)
    for field in fields(PrincipalState):
        if field.name not in kept_apart:
            assert np.array_equal(getattr(back, field.name), getattr(state, field.name)), field
    assert np.array_equal(back.spans, state.spans)


def test_refusals_are_shared_and_end_by_redis_clock(prefix: str) -> None:
    async def run() -> None:
        one = RedisStates.from_url(REDIS, window=4, features=1, prefix=prefix)
        two = RedisStates.from_url(REDIS, window=4, features=1, prefix=prefix)
        opened = await one.open("p", MemoryQuotas(), (), 0.0)
        await one.close(opened, [Refusal("DJ-GW-001", Action.BLOCK, 30.0)])
        ((rule, (until, action)),) = (await two.refusals("p", 1000.0)).items()
        assert (rule, action) == ("DJ-GW-001", Action.BLOCK)
        assert 1028 < until <= 1030.5  # on the caller's clock
        refused = await two.open("p", MemoryQuotas(), (), 0.0)
        assert refused.refused == ("DJ-GW-001", Action.BLOCK)
        assert refused.state is None
        assert await two.refusals("q", 0.0) == {}
        short = await two.open("q", MemoryQuotas(), (), 0.0)
        await two.close(short, [Refusal("DJ-GW-002", Action.THROTTLE, 0.2)])
        await asyncio.sleep(0.3)
        assert await one.refusals("q", 0.0) == {}  # ended by Redis's clock
        await one.link.aclose()
        await two.link.aclose()

    asyncio.run(run())


def test_a_request_takes_two_scripts_and_one_label_write(
    tmp_path: Path, victim: Victim, upstream: str
) -> None:
    """Refusals, both quota buckets, the lock and the state in one script; then one
    script saves and unlocks, and one BITFIELD writes the labels: nothing else."""
    settings, keys = write_setup(tmp_path, victim, ["alice"])
    with redis_server(tmp_path) as server:
        settings = with_state(settings, redis_url=server.url)
        quotas = {"backend": "redis", "redis_url": server.url}
        quotas |= {"principal_rate": 0.001, "principal_burst": 7}
        settings = settings.model_copy(update={"quotas": settings.quotas.model_copy(update=quotas)})
        with serve_gateway(settings, keys, upstream) as gw:
            client = gw.client("alice")
            client(victim.x_test[:1])  # scripts loaded, connections open
            with monitored(server.url) as sent:
                for i in range(3):
                    client(victim.x_test[1 + 2 * i : 3 + 2 * i])  # 2 rows a request
            with pytest.raises(Blocked) as over:  # 7 tokens: 1 + 3 x 2 taken, 2 more refused
                client(victim.x_test[:2])
    assert sent == ["EVALSHA", "EVALSHA", "BITFIELD"] * 3
    assert over.value.status == 429


@contextmanager
def monitored(url: str) -> Iterator[list[str]]:
    """The commands clients send Redis meanwhile (MONITOR), not those run by scripts."""
    sent: list[str] = []
    ready = threading.Event()

    def watch() -> None:
        client = redis.Redis.from_url(url)
        with client.monitor() as monitor:
            ready.set()
            while True:
                command = monitor.next_command()
                words = command["command"].split()
                if words[:2] == ["ECHO", "monitored"]:
                    break
                if command["client_type"] != "lua" and words[0].upper() != "HELLO":
                    sent.append(words[0].upper())  # HELLO: a connection's handshake
        client.close()

    thread = threading.Thread(target=watch, daemon=True)
    thread.start()
    assert ready.wait(30), "MONITOR did not start"  # on from Redis's OK, set after it
    try:
        yield sent
    finally:
        ender = redis.Redis.from_url(url)
        ender.echo("monitored")
        ender.close()
        thread.join(10)


def test_a_redis_outage_refuses_with_one_event_then_recovers(
    tmp_path: Path, victim: Victim, upstream: str
) -> None:
    settings, keys = write_setup(tmp_path, victim, ["alice"])
    with redis_server(tmp_path) as server:
        settings = with_state(settings, redis_url=server.url)
        with serve_gateway(settings, keys, upstream) as gw:
            client = gw.client("alice")
            client(victim.x_test[:1])
            server.stop()
            statuses = []
            for row in victim.x_test[1:4]:
                with pytest.raises(Blocked) as refused:
                    client(row[None])
                statuses.append((refused.value.status, refused.value.body["error"]["code"]))
            assert statuses == [(503, "state_unavailable")] * 3
            outages = [e for e in gw.findings() if e.finding.rule.id == "DJ-GW-009"]
            assert len(outages) == 1
            assert "Redis" in outages[0].finding.message
            server.start()  # a restart: empty, scripts gone, pooled connections broken
            answer = client(victim.x_test[4:5])
            assert answer.shape == (1, 10)
            assert len([e for e in gw.findings() if e.finding.rule.id == "DJ-GW-009"]) == 1


def test_concurrent_requests_of_one_principal_on_two_replicas_lose_no_update(
    tmp_path: Path, victim: Victim, upstream: str, prefix: str
) -> None:
    settings, keys = write_setup(tmp_path, victim, ["alice"])
    shared = with_state(settings, redis_prefix=prefix)
    with ExitStack() as stack:
        replicas = [stack.enter_context(serve_gateway(shared, keys, upstream)) for _ in range(2)]

        def send(worker: int) -> None:
            client = replicas[worker % 2].client("alice")
            for i in range(5):
                client(victim.x_test[(worker * 10 + 2 * i) % 100 :][:2])

        with ThreadPoolExecutor(4) as pool:
            list(pool.map(send, range(4)))

    async def queries() -> int:
        states = RedisStates.from_url(REDIS, window=8, features=64, prefix=f"{prefix}digits:")
        opened = await states.open("alice", MemoryQuotas(), (), 0.0)
        assert opened.state is not None
        seen = opened.state.queries
        await states.abort(opened)
        await states.link.aclose()
        return seen

    assert asyncio.run(queries()) == 4 * 5 * 2


class RoundRobin:
    """One attacker's client whose requests alternate between gateway replicas."""

    def __init__(self, gateways: list[Gateway], principal: str) -> None:
        self.clients = [g.client(principal) for g in gateways]
        self.turn = 0
        self.log: list[np.ndarray] = []

    def __call__(self, rows: np.ndarray) -> np.ndarray:
        client = self.clients[self.turn % len(self.clients)]
        self.turn += 1
        out = client(rows)
        self.log.extend(np.atleast_2d(rows))
        return out


def first_flags(gateways: list[Gateway], principal: str) -> dict[str, int]:
    first: dict[str, int] = {}
    for gateway in gateways:
        for event in gateway.findings(principal):
            rule, at = event.finding.rule.id, event.finding.evidence.get("query_index")
            if at is not None and rule in {"DJ-GW-001", "DJ-GW-002", "DJ-GW-005"}:
                first[rule] = min(first.get(rule, at), at)
    return first


def run_attacks(gateways: list[Gateway], victim: Victim) -> dict[str, Any]:
    out: dict[str, Any] = {}
    model = RoundRobin(gateways, "mallory")
    np.random.seed(0)
    classifier = BlackBoxClassifier(model, input_shape=(64,), nb_classes=10, clip_values=(0, 16))
    attack = HopSkipJump(classifier, max_iter=1, max_eval=20, init_eval=5, verbose=False)
    start = np.random.default_rng(0).uniform(0, 16, size=(1, 64))
    attack.generate(x=victim.x_test[:1], x_adv_init=start)
    out["hopskipjump"] = first_flags(gateways, "mallory")
    thief = RoundRobin(gateways, "trudy")
    jacobian_augmentation(thief, victim.x_test[:10], rounds=3)
    out["jacobian"] = first_flags(gateways, "trudy")
    # every replica answered part of each attack: the split is real
    out["answered"] = [min(c.queries for c in m.clients) > 0 for m in (model, thief)]
    return out


def test_two_replicas_sharing_redis_flag_at_the_same_query_as_one_process(
    tmp_path: Path, victim: Victim, upstream: str, prefix: str
) -> None:
    alert = {"action": "alert"}
    extra: dict[str, Any] = {
        "detectors": {"evasion": alert, "membership": alert, "extraction": alert}
    }
    settings, keys = write_setup(tmp_path, victim, ["mallory", "trudy"], extra)
    with serve_gateway(settings, keys, upstream) as one:
        alone = run_attacks([one], victim)
    shared = with_state(settings, redis_prefix=prefix)
    with ExitStack() as stack:
        replicas = [stack.enter_context(serve_gateway(shared, keys, upstream)) for _ in range(2)]
        spread = run_attacks(replicas, victim)
    assert alone["hopskipjump"].get("DJ-GW-001") is not None
    assert alone["jacobian"].get("DJ-GW-002") is not None
    assert spread["answered"] == [True, True]
    assert spread == alone
