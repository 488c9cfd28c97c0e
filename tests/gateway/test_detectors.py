"""Small, fast versions of the benchmark's attacks and benign streams, over loopback HTTP.

The attack clients are ART's own black-box implementations talking to the gateway
through :class:`HttpModel`; the benchmark runs the full-size versions.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest
from art.attacks.evasion import HopSkipJump
from art.estimators.classification import BlackBoxClassifier
from sklearn.linear_model import LogisticRegression

from tests.gateway.harness import Blocked, Victim

pytestmark = pytest.mark.integration


def benign_stream(victim: Victim, n: int, seed: int) -> list[np.ndarray]:
    """Held-out digits, shuffled, with natural duplicates, retries and one-pixel jitter."""
    rng = np.random.default_rng(seed)
    stream: list[np.ndarray] = []
    for x in victim.x_test[rng.permutation(len(victim.x_test))[:n]]:
        stream.append(x)
        if rng.random() < 0.2:  # a retry of the same record
            stream.append(x.copy())
        if rng.random() < 0.2:  # the same record again, one pixel off
            jitter = x.copy()
            pixel = rng.integers(64)
            jitter[pixel] = np.clip(jitter[pixel] + rng.choice([-2, -1, 1, 2]), 0, 16)
            stream.append(jitter)
    return stream


def jacobian_augmentation(model: Any, data: np.ndarray, rounds: int) -> None:
    """Papernot et al.'s augmentation from natural seeds with a logistic-regression copy,
    each new point a grid-rounded sign step from an earlier one (lambda = 0.1 x range)."""
    labels = model(data).argmax(axis=1)
    for _ in range(rounds):
        copy = LogisticRegression(max_iter=300).fit(data / 16, labels)
        weights = copy.coef_[np.searchsorted(copy.classes_, labels)]
        step = np.sign(weights - copy.predict_proba(data / 16) @ copy.coef_)
        new = np.clip(np.rint(data + 1.6 * step), 0, 16)
        data = np.concatenate([data, new])
        labels = np.concatenate([labels, model(new).argmax(axis=1)])


def send_all(model: Any, batches: list[np.ndarray]) -> None:
    for batch in batches:
        model(batch)


@pytest.mark.parametrize("seed", [0, 1])
def test_hopskipjump_is_blocked_before_it_succeeds(
    make_gateway: Any, victim: Victim, seed: int
) -> None:
    np.random.seed(seed)  # HopSkipJump's gradient-estimation noise
    gw = make_gateway()
    model = gw.client("mallory")
    classifier = BlackBoxClassifier(model, input_shape=(64,), nb_classes=10, clip_values=(0, 16))
    attack = HopSkipJump(classifier, max_iter=2, max_eval=100, init_eval=10, verbose=False)
    x0 = victim.x_test[:1]
    # ART draws the walk's starting image from an unseeded np.random.RandomState(), so
    # without this every run walks a different line: draw it the same way, seeded.
    start = np.random.default_rng(seed).uniform(0, 16, size=x0.shape)
    assert victim.model.predict(start / 16)[0] != victim.model.predict(x0 / 16)[0]
    with pytest.raises(Blocked) as refused:
        attack.generate(x=x0, x_adv_init=start)
    assert refused.value.status == 403
    assert refused.value.body["error"]["code"] == "blocked"
    fired = [
        (e.finding.rule.id, e.finding.evidence.get("query_index"))
        for e in gw.findings("mallory")
        if e.finding.evidence.get("action") == "block"
    ]
    # queries 1-2 are x0 (ART asks for its label twice), 3 the starting image, 4 on are
    # the bisection between them: the second bisection step (query 5) is refused as a
    # line search by the evasion detector, before any adversarial example is answered.
    assert fired[0] == ("DJ-GW-001", 5), fired
    # no query answered before the block was an adversarial example near x0
    answered = np.asarray(model.log)
    y0 = victim.model.predict(x0 / 16)[0]
    wrong = victim.model.predict(answered / 16) != y0
    assert not (wrong & (np.linalg.norm(answered - x0, axis=1) < 10)).any()
    # sticky: the principal stays blocked, others are not
    with pytest.raises(Blocked):
        model(victim.x_test[5:6])
    assert gw.client("alice")(victim.x_test[5:6]).shape == (1, 10)


def test_synthetic_extraction_is_blocked_within_100_queries(
    make_gateway: Any, victim: Victim
) -> None:
    gw = make_gateway()
    model = gw.client("trudy")
    rng = np.random.default_rng(3)
    noise = rng.integers(0, 17, size=(20, 8, 64)).astype(float)  # surrogate data: noise images
    with pytest.raises(Blocked):
        send_all(model, list(noise))
    rules = {e.finding.rule.id: e.finding for e in gw.findings("trudy")}
    assert rules["DJ-GW-002"].evidence["query_index"] <= 100


def test_grid_rounded_jacobian_augmentation_is_blocked_within_100_queries(
    make_gateway: Any, victim: Victim
) -> None:
    """An adaptive client that keeps every query on the integer pixel grid."""
    gw = make_gateway()
    model = gw.client("trudy")
    with pytest.raises(Blocked):
        jacobian_augmentation(model, victim.x_test[20:30].astype(float), rounds=5)
    found = {e.finding.rule.id: e.finding for e in gw.findings("trudy")}
    assert found["DJ-GW-002"].evidence["query_index"] <= 100


def test_membership_probing_is_blocked(make_gateway: Any, victim: Victim) -> None:
    gw = make_gateway()
    model = gw.client("oscar")
    rng = np.random.default_rng(4)
    record = victim.x_train[7]
    # label-only membership: the record under small, sparse integer noise
    noise = rng.integers(-1, 2, size=(40, 64)) * (rng.random((40, 64)) < 0.1)
    with pytest.raises(Blocked):
        send_all(model, [row[None] for row in np.clip(record + noise, 0, 16)])
    assert any(e.finding.rule.id == "DJ-GW-005" for e in gw.findings("oscar"))


def test_benign_streams_are_not_flagged(make_gateway: Any, victim: Victim) -> None:
    gw = make_gateway()
    for seed, who in enumerate(["alice", "bob"]):
        model = gw.client(who)
        stream = benign_stream(victim, 150, seed)
        for start in range(0, len(stream), 1 + seed * 7):  # single queries, then bursts of 8
            model(np.asarray(stream[start : start + 1 + seed * 7]))
        assert model.queries == len(stream)
    # a covariate shift (every digit one pixel to the side), with jittered re-sends: out
    # of distribution for the profile, but neither a walk nor a majority of synthetic queries
    model = gw.client("eve")
    rng = np.random.default_rng(2)
    for x in benign_stream(victim, 150, 2):
        model(np.roll(x.reshape(8, 8), rng.choice([-1, 1]), axis=1).reshape(1, 64))
    stateful = [e for e in gw.findings() if e.finding.rule.id != "DJ-GW-004"]
    assert stateful == []
