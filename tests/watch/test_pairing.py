"""Probes of two versions compared row by row; which earlier probe a new one pairs with."""

from __future__ import annotations

import json
import math

from donjon.watch.pairing import ALPHA, against_previous, paired, previous_probe

ROWS = "sha256:" + "ab" * 32


def _done(
    perturbations: list[float | None], digest: str | None = ROWS, method: str = "rays"
) -> dict[str, object]:
    probe: dict[str, object] = {"status": "done", "perturbations": perturbations}
    if digest is not None:
        probe["rows_digest"] = digest
        probe["method"] = method
    return probe


def test_a_new_version_pairs_with_the_last_probe_of_the_highest_earlier_one_on_its_rows() -> None:
    v1 = [_done([0.1] * 3), _done([0.2] * 3)]
    v2 = [_done([0.3] * 3), {"status": "failed", "reason": "down"}]
    v3 = [_done([0.4] * 3, digest="sha256:" + "cd" * 32)]  # other rows
    stored_before_digests = [_done([0.5] * 3, digest=None)]
    probes = {1: v1, 2: v2, 3: v3, 4: stored_before_digests, 6: [_done([0.6] * 3)]}
    assert previous_probe(probes, 5, ROWS, "rays") == (2, v2[0])
    assert previous_probe(probes, 2, ROWS, "rays") == (1, v1[1])
    assert previous_probe(probes, 1, ROWS, "rays") is None
    assert previous_probe({4: stored_before_digests}, 5, ROWS, "rays") is None
    assert previous_probe(probes, 5, "", "rays") is None  # a probe without rows pairs with nothing


def test_a_probe_pairs_only_with_one_measured_the_same_way() -> None:
    """HopSkipJump's upper bounds (stored without ``method``) and the rays' estimates are
    different scales: a ratio between them says nothing about the versions."""
    hop_skip_jump = {"status": "done", "perturbations": [0.2] * 3, "rows_digest": ROWS}
    assert previous_probe({1: [hop_skip_jump]}, 2, ROWS, "rays") is None
    other = _done([0.2] * 3, method="another")
    assert previous_probe({1: [_done([0.1] * 3), other]}, 2, ROWS, "rays") == (1, _done([0.1] * 3))


def test_a_brittler_version_is_less_robust_and_the_fields_are_json() -> None:
    before = [0.1 + 0.01 * i for i in range(20)]
    brittle = [p * 0.7 for p in before]
    found = against_previous(brittle, 1, _done(list(before)))
    assert (found["paired_version"], found["paired_rows"], found["paired_brittler"]) == (1, 20, 20)
    assert math.isclose(found["paired_ratio"], 0.7)
    assert found["paired_p_value"] < ALPHA
    assert found["less_robust"] is True
    json.dumps(found, allow_nan=False)
    sturdier = against_previous([p * 1.3 for p in before], 1, _done(list(before)))
    assert sturdier["less_robust"] is False
    assert sturdier["paired_brittler"] == 0


def test_a_significant_drop_smaller_than_the_minimum_is_no_alert() -> None:
    before = [0.1 + 0.01 * i for i in range(20)]
    slightly = against_previous([p * 0.95 for p in before], 1, _done(list(before)))
    assert slightly["paired_p_value"] < ALPHA  # every row moved the same way
    assert math.isclose(slightly["paired_ratio"], 0.95)
    assert slightly["less_robust"] is False  # a retrain can differ this much
    strict = against_previous([p * 0.95 for p in before], 1, _done(list(before)), min_drop=0.0)
    assert strict["less_robust"] is True


def test_rows_without_a_finite_value_on_both_sides_are_left_out() -> None:
    pair = paired([0.1, None, 0.3, math.inf, 0.2], [0.2, 0.4, None, 0.5, 0.2])
    assert (pair["rows"], pair["higher"]) == (2, 1)
    assert math.isnan(pair["p_value"])  # too few rows that differ to test
    found = against_previous([0.2, 0.2], 1, _done([0.1, None]))
    assert found["paired_p_value"] is None
    assert found["less_robust"] is False
