"""Synthetic but realistic gateway traffic: access decisions, latencies, scores, classes."""

from __future__ import annotations

import random
from collections.abc import Callable
from datetime import UTC, datetime, timedelta

from donjon.core import Decision, Effect, Principal, PrincipalKind, SecurityEvent

START = datetime(2026, 11, 27, 8, 0, tzinfo=UTC)
CLIENTS = [Principal(f"svc-{i}", PrincipalKind.SERVICE) for i in range(4)]


def traffic(
    minutes: int,
    *,
    seed: int = 7,
    deny_ratio: Callable[[int], float] = lambda m: 0.04,
    score: Callable[[int], float] = lambda m: 0.2,
    rate: int = 40,
) -> list[SecurityEvent]:
    """``rate`` requests a minute spread over four clients; knobs are functions of the minute."""
    rng = random.Random(seed)  # noqa: S311 - test data, not secrets
    events = []
    for minute in range(minutes):
        for _ in range(rng.randint(rate - 5, rate + 5)):
            when = START + timedelta(minutes=minute, seconds=rng.random() * 59.9)
            who = rng.choice(CLIENTS)
            effect = Effect.DENY if rng.random() < deny_ratio(minute) else Effect.ALLOW
            decision = Decision(effect, who, "model.infer", "models/fraud-clf@3")
            events.append(
                SecurityEvent.of_decision(
                    decision, "gateway", time=when,
                    latency_ms=round(rng.gauss(25, 4), 2),
                    detector="extraction", score=min(1.0, max(0.0, rng.gauss(score(minute), 0.03))),
                    predicted_class=rng.choices(["legit", "fraud"], [0.97, 0.03])[0],
                )
            )  # fmt: skip
    events.sort(key=lambda e: e.time)
    return events
