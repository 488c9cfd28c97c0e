"""Marks carried to near-copies (families), the suspect rate, and a family as one piece of
evidence: the parts, without a gateway (the end-to-end test is in test_watermark.py)."""

from __future__ import annotations

import asyncio
import json
import uuid

import numpy as np
import pytest

from donjon.core.identity import Principal
from donjon.gateway.detectors import Action, Signal
from donjon.gateway.detectors.state import PrincipalState
from donjon.gateway.guard import ModelGuard
from donjon.gateway.profile import build_profile
from donjon.gateway.rules import EXTRACTION
from donjon.gateway.settings import ModelSettings
from donjon.gateway.watermark.config import WatermarkSettings
from donjon.gateway.watermark.families import Carrier, MemoryFamilies, RedisFamilies
from donjon.gateway.watermark.marker import Watermarker
from donjon.gateway.watermark.records import MarkRecord, MemoryMarks
from donjon.gateway.watermark.suspect import Answer
from donjon.gateway.watermark.verdict import judge

REDIS = "redis://127.0.0.1:6379/0"


def test_a_suspected_principal_is_marked_at_the_suspect_rate_with_as_many_look_alikes() -> None:
    settings = WatermarkSettings(rate=0.005, suspect_rate=0.04, control_rate=0.025)
    marker = Watermarker("m", settings, b"k" * 32, MemoryMarks())
    scope = marker.scope("p")
    rows = [np.float64(i).tobytes() for i in range(20_000)]
    plain = [marker.draw(scope, row) for row in rows]
    flagged = [marker.draw(scope, row, suspected=True) for row in rows]
    share = {
        name: (sum(m for _, m, _ in drawn) / len(rows), sum(r and not m for r, m, _ in drawn))
        for name, drawn in (("plain", plain), ("flagged", flagged))
    }
    assert share["plain"][0] == pytest.approx(0.005, rel=0.3)
    assert share["flagged"][0] == pytest.approx(0.04, rel=0.1)
    # the look-alikes keep the marks' share of the records: the label tests compare them
    for name in share:
        marks = share[name][0] * len(rows)
        assert share[name][1] / marks == pytest.approx(0.025 / 0.005, rel=0.3)
    # nested: what is marked at the base rate is marked when suspected, with the same label
    assert all(f == p for p, f in zip(plain, flagged, strict=True) if p[1])
    with pytest.raises(ValueError, match="lower one of them"):
        WatermarkSettings(rate=0.01, suspect_rate=0.2, control_rate=0.5)


def test_the_detectors_flag_a_principal_by_its_out_of_distribution_share() -> None:
    rows = np.random.default_rng(0).normal(size=(600, 4))
    settings = ModelSettings.model_validate({"name": "m", "routes": ["/p"], "features": 4})
    guard = ModelGuard(settings, profile=build_profile(rows), window=16, max_principals=4)
    state = PrincipalState(16, 4)
    state.queries, state.ood = 400, 4  # about the detector's own calibrated share
    assert not guard.suspects(state, [])
    state.ood = 40  # ten times that
    assert guard.suspects(state, [])
    state.ood = 0  # any other detector's signal flags it at once
    signal = Signal("extraction", EXTRACTION, Action.LOG, 1.0, 1.0, "m", {})
    assert guard.suspects(state, [signal])
    assert not guard.suspects(state, [Signal("ood", EXTRACTION, Action.LOG, 1.0, 1.0, "m", {})])


def _carrier(i: int, family: str = "") -> Carrier:
    return Carrier(np.full(3, float(i), dtype=np.float32), i % 10, family or f"{i:064x}")


def test_the_memory_of_marks_is_bounded_and_finds_the_nearest() -> None:
    async def run() -> None:
        memory = MemoryFamilies(per_principal=3, max_principals=2)
        assert await memory.recall("a") is None  # no marks: nothing to compare
        await memory.remember("a", [_carrier(i) for i in range(5)])
        recalled = await memory.recall("a")
        assert recalled is not None
        assert recalled.families == tuple(f"{i:064x}" for i in (2, 3, 4))  # the last three
        index, distance = recalled.nearest(np.full(3, 3.1))
        assert recalled.families[index] == f"{3:064x}"
        assert distance == pytest.approx(0.1 * np.sqrt(3), rel=1e-5)
        await memory.remember("b", [_carrier(1)])
        await memory.remember("c", [_carrier(1)])
        assert await memory.recall("a") is None  # the least recently seen was forgotten

    asyncio.run(run())


@pytest.mark.redis
@pytest.mark.integration
def test_replicas_share_the_marks_in_redis_bounded_and_expiring() -> None:
    redis = pytest.importorskip("redis")
    from donjon.gateway.redis_link import RedisLink

    prefix = f"test:{uuid.uuid4().hex}:"

    def families() -> RedisFamilies:
        link = RedisLink(REDIS)
        return RedisFamilies(link, "m", 3, prefix=prefix, per_principal=3, ttl_seconds=60)

    async def run() -> None:
        one, two = families(), families()
        assert await two.recall("p") is None
        await one.remember("p", [_carrier(i, f"{i:064x}") for i in range(2)])
        await one.remember("p", [_carrier(i) for i in range(2, 5)])
        recalled = await two.recall("p")  # the other replica
        assert recalled is not None
        assert recalled.families == tuple(f"{i:064x}" for i in (2, 3, 4))
        assert recalled.keyed.tolist() == [2, 3, 4]
        assert recalled.rows[0].tolist() == [2.0, 2.0, 2.0]
        assert await two.recall("q") is None
        await one.link.aclose()
        await two.link.aclose()

    try:
        asyncio.run(run())
        client = redis.Redis.from_url(REDIS)
        assert 0 < client.ttl(f"{prefix}m:families:p") <= 60  # not evidence: it expires
    finally:
        client = redis.Redis.from_url(REDIS)
        for key in client.scan_iter(match=prefix + "*"):
            client.delete(key)
        client.close()


def _record(i: int, kind: str = "mark", family: str = "", truth: int = 0) -> MarkRecord:
    return MarkRecord("m", "p", kind, f"{i:064x}", (float(i),), truth, 1, 10, "k", "t", family)


def test_a_family_is_one_piece_of_evidence() -> None:
    root = _record(0)
    members = [_record(i, family=root.address) for i in range(1, 6)]
    controls = [_record(i, kind="control") for i in range(10, 30)]
    # the suspect gives the keyed class on every carried copy, the true one on the root
    answers = {r.address: Answer(1) for r in members}
    answers[root.address] = Answer(0)
    answers.update({r.address: Answer(0) for r in controls})
    [verdict] = judge([root, *members, *controls], answers)
    assert (verdict.marks, verdict.reproduced, verdict.carried) == (1, 0, 5)
    assert verdict.p_binomial == 1.0  # the copies are not independent hits
    # scores: the keyed class's rank in the scores summed over the family, once
    scores = dict.fromkeys(range(10), 0.1)
    answers = {r.address: Answer(0, {**scores, 0: 0.9, 1: 0.5}) for r in members}
    answers[root.address] = Answer(0, {**scores, 0: 0.9, 3: 0.2})
    [verdict] = judge([root, *members], answers)
    assert (verdict.ranked, verdict.rank_sum) == (1, 1)
    # a family whose root was not recorded is no evidence
    [verdict] = judge(members, answers)
    assert (verdict.marks, verdict.ranked, verdict.carried) == (0, 0, 5)


def test_only_a_flagged_principals_near_copies_carry_its_marks() -> None:
    """Rows 0..199 then a near-copy of each: a flagged principal's near-copies of its marks
    get their keyed class; an ordinary user's are answered by their own draw."""
    from donjon.gateway.outputs import ResponseReader

    rows = np.arange(200, dtype=np.float64)[:, None] * np.ones((1, 3))
    copies = rows + 0.01
    settings = WatermarkSettings(rate=0.05, suspect_rate=0.05, control_rate=0.1)

    async def run(suspected: bool) -> tuple[int, int]:
        marks = MemoryMarks()
        marker = Watermarker(
            "m", settings, b"k" * 32, marks, families=MemoryFamilies(256, 4),
            scale=lambda r: r, radius=0.1,
        )  # fmt: skip
        principal = Principal(id="p")
        for batch in (rows, copies):
            scores = np.eye(4)[np.arange(len(batch)) % 4] * 0.7 + 0.1
            output = ResponseReader("m").read(json.dumps({"outputs": scores.tolist()}).encode())
            await marker.mark(
                principal, batch, output, suspected=suspected, slots=list(range(len(batch)))
            )
        found = marks.records("m")
        roots = [r for r in found if r.kind == "mark" and not r.family]
        return len(roots), sum(r.family != "" for r in found)

    roots, carried = asyncio.run(run(True))
    assert roots > 5
    assert carried >= roots // 2  # the near-copies of the first 200 rows' marks
    roots, carried = asyncio.run(run(False))
    assert roots > 5
    assert carried == 0
