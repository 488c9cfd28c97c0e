"""Detector state in Redis: replicas behind a round-robin split see one history."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from contextlib import ExitStack
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from art.attacks.evasion import HopSkipJump
from art.estimators.classification import BlackBoxClassifier

from donjon.gateway.detectors import Action
from donjon.gateway.detectors.state import UNKNOWN
from donjon.gateway.detectors.stores import RedisStates
from tests.gateway.harness import Blocked, Gateway, Victim, serve_gateway, write_setup
from tests.gateway.test_detectors import jacobian_augmentation

pytestmark = [pytest.mark.redis, pytest.mark.integration]
REDIS = "redis://127.0.0.1:6379/0"


@pytest.fixture
def prefix() -> Iterator[str]:
    redis = pytest.importorskip("redis")
    client = redis.Redis.from_url(REDIS, socket_timeout=2)
    name = f"test:{uuid.uuid4().hex}:"
    yield name
    for key in client.scan_iter(match=name + "*"):
        client.delete(key)
    client.close()


def test_a_state_round_trips_through_redis_with_expiry(prefix: str) -> None:
    one = RedisStates.from_url(REDIS, window=8, features=3, prefix=prefix, ttl=60)
    two = RedisStates.from_url(REDIS, window=8, features=3, prefix=prefix, ttl=60)
    rows = np.random.default_rng(0).normal(size=(5, 3))
    with one.session("p") as state:
        for row in rows:
            near = state.neighbours(row, 0.1, 1e-4)
            state.push(row, near.bisects)
        state.queries, state.tested, state.synthetic, state.cusum = 5, 5, 3, 1.25
    one.label("p", [0, 2], np.array([7, 9]))
    with two.session("p") as seen:  # another replica
        assert seen.size == 5
        assert seen.cursor == 5
        assert np.allclose(seen.rows[:5], rows.astype(np.float32))
        assert seen.labels[:4].tolist() == [7, UNKNOWN, 9, UNKNOWN]
        assert (seen.queries, seen.tested, seen.synthetic, seen.cusum) == (5, 5, 3, 1.25)
        assert seen.spans is not None
        assert len(seen.spans) == 4  # the line test's spans survive the trip
    client = one.client
    assert 0 < client.ttl(prefix + "p") <= 60
    assert 0 < client.ttl(prefix + "p:labels") <= 60
    # bounded: the window, whatever the number of queries
    assert len(client.get(prefix + "p")) < 8 * (3 + 2) * 4 + 400


def test_refusals_are_shared_and_end_by_wall_clock(prefix: str) -> None:
    import time

    one = RedisStates.from_url(REDIS, window=4, features=1, prefix=prefix)
    two = RedisStates.from_url(REDIS, window=4, features=1, prefix=prefix)
    one.refuse("p", "DJ-GW-001", time.monotonic() + 30, Action.BLOCK)
    ((rule, (until, action)),) = two.refusals("p").items()
    assert (rule, action) == ("DJ-GW-001", Action.BLOCK)
    assert 28 < until - time.monotonic() <= 30.5
    assert two.refusals("q") == {}


def test_redis_down_fails_closed(tmp_path: Path, victim: Victim, upstream: str) -> None:
    settings, keys = write_setup(tmp_path, victim, ["a"])
    settings = settings.model_copy(
        update={"state": settings.state.model_copy(update={"backend": "redis",
                                                           "redis_url": "redis://127.0.0.1:1/0"})}
    )  # fmt: skip
    with serve_gateway(settings, keys, upstream) as gw, pytest.raises(Blocked) as refused:
        gw.client("a")(victim.x_test[:1])
    assert refused.value.status == 500


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
    shared = settings.model_copy(
        update={"state": settings.state.model_copy(update={"backend": "redis",
                                                           "redis_prefix": prefix})}
    )  # fmt: skip
    with ExitStack() as stack:
        replicas = [stack.enter_context(serve_gateway(shared, keys, upstream)) for _ in range(2)]
        spread = run_attacks(replicas, victim)
    assert alone["hopskipjump"].get("DJ-GW-001") is not None
    assert alone["jacobian"].get("DJ-GW-002") is not None
    assert spread["answered"] == [True, True]
    assert spread == alone
