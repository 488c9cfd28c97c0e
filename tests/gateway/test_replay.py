"""The detectors' verdicts on a recorded query stream do not change (see replay.py)."""

from __future__ import annotations

import json
from pathlib import Path

from tests.gateway.harness import Victim
from tests.gateway.replay import EXPECTED, differences, record


def test_a_recorded_stream_gets_the_same_signals_at_the_same_requests(
    tmp_path: Path, victim: Victim
) -> None:
    found = record(tmp_path, victim)
    expected = json.loads(EXPECTED.read_text())
    assert sum(len(r["signals"]) for r in expected) > 500  # attacks, refusals, bad bodies
    assert differences(expected, found) == [], (
        "the gateway's verdicts changed; if that is deliberate, rewrite the record with "
        "python -m tests.gateway.replay --write tests/gateway/data/replay_signals.json"
    )
