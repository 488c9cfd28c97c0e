"""A recorded query stream that pins down what the detectors say, request by request.

Speed work on the gateway must not change a verdict. :func:`build_stream` makes a
seeded stream of about 1,600 queries from nine principals, interleaved: natural
held-out digits (single rows and batches, in the generic, KServe v2 and MLflow
shapes), jittered re-sends, a brighter camera, and attacks -- a bisection line
search and a walk along the decision boundary (HopSkipJump's shape), noise and
Jacobian-style extraction, sign-gradient (FGSM) inputs -- plus invalid bodies;
the noise attacker also talks to a model whose detectors block. :func:`replay`
runs it through an in-process pipeline (admit, the victim's answer, complete) on
a fake clock and returns, per request, the status and the signals raised (rule,
detector, action, query index, message). The expected record is
``data/replay_signals.json``; a test and ``benchmarks/gateway_bench.py --replay``
compare against it. After a *deliberate* change of the detectors, write it anew:

    python -m tests.gateway.replay --write tests/gateway/data/replay_signals.json
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from donjon.core import EventBus, MemorySink
from donjon.gateway import build_pipeline
from donjon.gateway.pipeline import GatewayRequest, Pipeline
from donjon.gateway.replies import Reply
from donjon.gateway.settings import DetectorSettings, GatewaySettings
from tests.gateway.harness import Victim, train_victim, victim_scores, write_setup

EXPECTED = Path(__file__).parent / "data" / "replay_signals.json"
ALERT = {"action": "alert"}
PRINCIPALS = ("natural", "batches", "jitter", "bright", "walker", "noise", "jacobian", "fgsm")


@dataclass(frozen=True)
class Query:
    principal: str
    path: str
    body: bytes


def build_stream(victim: Victim, seed: int = 14) -> list[Query]:
    """The stream: each principal's requests in its own order, principals interleaved."""
    rng = np.random.default_rng(seed)
    held = victim.x_test
    natural = held[rng.permutation(len(held))]
    queues: dict[str, list[Query]] = {p: [] for p in PRINCIPALS}

    def add(who: str, rows: np.ndarray, shape: str = "generic", path: str = "/predict") -> None:
        queues[who].append(Query(who, path, _body(np.atleast_2d(rows), shape)))

    shapes = ("generic", "generic", "kserve", "mlflow")
    for i, row in enumerate(natural[:250]):
        add("natural", row, shapes[i % len(shapes)])
    for start in range(250, 370, 10):  # batches of 10 rows: the vectorised paths
        add("batches", natural[start : start + 10])
    for row in natural[370:430]:  # a record re-sent a few times, a few pixels jittered
        for _ in range(int(rng.integers(2, 5))):
            jitter = np.zeros_like(row)
            jitter[rng.choice(row.size, 6, replace=False)] = rng.choice((-1.0, 1.0), 6)
            add("jitter", np.clip(row + jitter, 0, 16))
    for row in natural[430:550]:  # a brighter camera
        add("bright", np.clip(np.rint(row * 1.2), 0, 16))
    add("walker", natural[550])
    add("walker", natural[551])
    for step in _bisection(victim, natural[552], rng):
        add("walker", step)
    for row in rng.uniform(0, 16, size=(120, 64)):
        add("noise", row)
        add("noise", row, path="/blocking/predict")
    for query in _jacobian(natural[555:565], rng):
        add("jacobian", query)
    for row in natural[565:645]:
        sign = rng.choice((-2.0, 2.0), size=row.shape)
        add("fgsm", np.clip(row + sign, 0, 16))
    queues["natural"] += [
        Query("natural", "/predict", b'{"inputs": [[1, 2, 3]]}'),
        Query("natural", "/predict", b'{"inputs": [[' + b"99," * 63 + b"99]]}"),
        Query("natural", "/predict", b"not json"),
    ]
    return list(_interleave(queues, rng))


def _body(rows: np.ndarray, shape: str) -> bytes:
    values = rows.tolist()
    if shape == "kserve":
        flat = rows.ravel().tolist()
        tensor = {"name": "x", "shape": list(rows.shape), "datatype": "FP64", "data": flat}
        doc: Any = {"inputs": [tensor]}
    elif shape == "mlflow":
        doc = {"dataframe_split": {"data": values}}
    else:
        doc = {"inputs": values}
    return json.dumps(doc).encode()


def _bisection(
    victim: Victim, source: np.ndarray, rng: np.random.Generator
) -> Iterator[np.ndarray]:
    """A line search between a digit and one of another class, then a walk about the
    boundary point it found: HopSkipJump's first steps and its gradient estimates."""

    def label(row: np.ndarray) -> int:
        return int(victim.model.predict(row[None, :] / 16.0)[0])

    mine = label(source)
    low, high = source.copy(), next(r for r in victim.x_test if label(r) != mine)
    for _ in range(14):
        middle = (low + high) / 2
        yield middle
        low, high = (middle, high) if label(middle) == mine else (low, middle)
    for _ in range(60):
        yield np.clip(low + rng.normal(0, 0.05, size=low.shape), 0, 16)


def _jacobian(seeds: np.ndarray, rng: np.random.Generator) -> Iterator[np.ndarray]:
    """Jacobian-style augmentation: the seeds, then steps of +-1 from known points."""
    known = list(seeds)
    yield from seeds
    for _ in range(3):
        for point in list(known):
            step = np.clip(np.rint(point + rng.choice((-1.0, 1.0), size=point.shape)), 0, 16)
            known.append(step)
            yield step


def _interleave(queues: dict[str, list[Query]], rng: np.random.Generator) -> Iterator[Query]:
    order = [p for p in PRINCIPALS for _ in queues[p]]
    position = dict.fromkeys(PRINCIPALS, 0)
    for who in rng.permutation(order):
        yield queues[who][position[who]]
        position[who] += 1


def settings_for(folder: Path, victim: Victim) -> tuple[GatewaySettings, dict[str, str]]:
    """Two models on one profile: detectors in alert mode (every verdict is seen to the
    end of each attack), and with their default actions (refusals)."""
    alert = dict.fromkeys(("evasion", "membership", "extraction", "scatter"), ALERT)
    settings, keys = write_setup(folder, victim, list(PRINCIPALS), {"detectors": alert})
    digits = settings.models[0]
    blocking = digits.model_copy(
        update={"name": "blocking", "routes": ["/blocking"], "detectors": DetectorSettings()}
    )
    return settings.model_copy(update={"models": [blocking, digits]}), keys


def replay(folder: Path, victim: Victim, stream: list[Query]) -> list[dict[str, Any]]:
    """Run the stream through a fresh in-process pipeline; one record per request."""
    settings, keys = settings_for(folder, victim)
    sink = MemorySink()
    pipeline = build_pipeline(settings, bus=EventBus([sink]))
    ticks = iter(range(10**9))
    pipeline.clock = lambda: next(ticks) * 0.01  # 10 ms a reading: no wall clock
    return [_one(pipeline, sink, keys, victim, query) for query in stream]


def _one(
    pipeline: Pipeline, sink: MemorySink, keys: dict[str, str], victim: Victim, query: Query
) -> dict[str, Any]:
    seen = len(sink.events)
    headers = {"x-api-key": keys[query.principal], "content-type": "application/json"}
    request = GatewayRequest("POST", query.path, headers, query.body, "127.0.0.1")
    admitted = pipeline.admit(request)
    if isinstance(admitted, Reply):
        status = admitted.status
    else:
        rows = np.asarray(admitted.inputs)
        answer = json.dumps({"outputs": victim_scores(victim.model, rows).tolist()}).encode()
        status, _ = pipeline.complete(admitted, 200, answer)
    signals = []
    for event in sink.events[seen:]:
        finding = event.finding
        if finding is None:
            continue
        evidence = finding.evidence
        signals.append(
            [
                finding.rule.id,
                evidence.get("detector"),
                evidence.get("action"),
                evidence.get("query_index"),
                finding.message,
            ]
        )
    return {"principal": query.principal, "status": status, "signals": signals}


def record(folder: Path, victim: Victim | None = None) -> list[dict[str, Any]]:
    victim = victim or train_victim()
    return replay(folder, victim, build_stream(victim))


def differences(expected: list[dict[str, Any]], found: list[dict[str, Any]]) -> list[str]:
    """What differs, request by request (empty: the same verdicts at the same places)."""
    if len(expected) != len(found):
        return [f"{len(found)} requests replayed, {len(expected)} recorded"]
    out = []
    for i, (want, got) in enumerate(zip(expected, found, strict=True)):
        if want != got:
            out.append(f"request {i} ({want['principal']}): recorded {want}, replayed {got}")
    return out


def summary(records: list[dict[str, Any]]) -> dict[str, int]:
    counts: dict[str, int] = {"requests": len(records)}
    for r in records:
        counts[f"status {r['status']}"] = counts.get(f"status {r['status']}", 0) + 1
        for rule, *_ in r["signals"]:
            counts[rule] = counts.get(rule, 0) + 1
    return counts


def main() -> None:
    import tempfile

    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--write", type=Path, help="write the record here")
    args = parser.parse_args()
    logging.disable(logging.WARNING)
    with tempfile.TemporaryDirectory() as folder:
        records = record(Path(folder))
    if args.write:
        args.write.parent.mkdir(parents=True, exist_ok=True)
        lines = ",\n".join(json.dumps(r) for r in records)  # a request a line: diffable
        args.write.write_text(f"[\n{lines}\n]\n")
    print(json.dumps(summary(records), indent=1))
    if not args.write:
        diff = differences(json.loads(EXPECTED.read_text()), records)
        print("\n".join(diff[:20]) or "same signals at the same requests as recorded")
        sys.exit(1 if diff else 0)


if __name__ == "__main__":
    main()
