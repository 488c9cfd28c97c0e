"""The detectors' statistics in process: line searches, synthetic queries, the range test."""

from __future__ import annotations

import numpy as np
import pytest

from donjon.gateway import build_profile
from donjon.gateway.detectors.evasion import EvasionConfig, EvasionDetector, natural_excess
from donjon.gateway.detectors.extraction import (
    ExtractionConfig,
    ExtractionDetector,
    binomial_tail,
)
from donjon.gateway.detectors.ood import OodConfig, OodDetector
from donjon.gateway.detectors.state import LineTest, PrincipalState
from donjon.gateway.profile import ReferenceProfile
from tests.gateway.harness import Victim


@pytest.mark.parametrize("n", [1, 7, 60, 500, 2000])
@pytest.mark.parametrize("p", [0.005, 0.015, 0.3, 0.5, 0.9])
def test_the_binomial_tail_is_exact_on_both_sides_of_the_mode(n: int, p: float) -> None:
    from scipy.stats import binom

    for k in sorted({0, 1, n // 3, int(n * p), int(n * p) + 1, n // 2, n - 1, n, n + 1}):
        want = float(binom.sf(k - 1, n, p)) if k > 0 else 1.0
        got = binomial_tail(k, n, p)
        assert got == pytest.approx(want, rel=1e-9, abs=1e-300), (k, n, p)


LINE = LineTest(tolerance=0.02, min_offset=0.1, min_span=0.5)


def feed(state: PrincipalState, rows: list[np.ndarray], labels: list[int]) -> list[bool]:
    """Query each row in turn (its label known before the next one): did it bisect?"""
    out = []
    for row, label in zip(rows, labels, strict=True):
        near = state.neighbours(row, 0.1, 1e-4, LINE)
        out.append(near.bisects)
        state.label(state.push(row, near.bisects), label)
    return out


def bisection(a: np.ndarray, b: np.ndarray, boundary: float, steps: int) -> tuple[list, list]:
    rows, labels = [a, b], [0, 1]
    lo, hi = 0.0, 1.0
    for _ in range(steps):
        mid = (lo + hi) / 2
        rows.append((1 - mid) * a + mid * b)
        labels.append(int(mid > boundary))
        lo, hi = (lo, mid) if mid > boundary else (mid, hi)
    return rows, labels


def test_a_bisection_between_two_answers_is_a_walk() -> None:
    rng = np.random.default_rng(0)
    a, b = rng.normal(size=8), rng.normal(size=8) + 3
    state = PrincipalState(window=32, features=8)
    rows, labels = bisection(a, b, 0.3, 8)
    found = feed(state, rows, labels)
    assert found[:6] == [False, False, True, True, True, True]
    # later steps too, mostly: once the bracket is small against the line, the new point
    # is too close to the previous one unless an earlier point brackets it closely enough
    assert state.walk >= 4
    # the evasion detector fires at the second bisecting query (min_walk = 2)
    fresh = PrincipalState(window=32, features=8)
    feed(fresh, rows[:3], labels[:3])
    signal = EvasionDetector().signal(fresh.neighbours(rows[3], 0.1, 1e-4, LINE))
    assert signal is not None
    assert signal.rule.id == "DJ-GW-001"
    assert signal.evidence["bisecting"] == 2


def test_a_bisection_rounded_to_a_grid_is_still_a_walk() -> None:
    rng = np.random.default_rng(1)
    a, b = rng.integers(0, 17, 64).astype(float), rng.integers(0, 17, 64).astype(float)
    rows, labels = bisection(a, b, 0.4, 4)
    state = PrincipalState(window=32, features=64)
    assert sum(feed(state, [np.rint(r) for r in rows], labels)) >= 3


@pytest.mark.parametrize("same_label", [True, False])
def test_jitter_of_one_record_is_not_a_walk(same_label: bool) -> None:
    """Re-sends of a record one pixel off, even collinear ones (on the same pixel): with one
    answer they straddle no boundary; with several, they span less than ``min_span``."""
    x = np.random.default_rng(2).normal(size=8)
    steps = (0.0, 1.0, -1.0, 0.5) if same_label else (0.0, 0.2, -0.2, 0.1)
    rows = [x + np.eye(8)[3] * v for v in steps]
    labels = [0, 0, 0, 0] if same_label else [0, 1, 0, 1]
    assert not any(feed(PrincipalState(window=32, features=8), rows, labels))


def test_independent_records_are_not_a_walk() -> None:
    rng = np.random.default_rng(3)
    rows = list(rng.normal(size=(200, 16)))
    labels = list(rng.integers(0, 10, 200))
    assert sum(feed(PrincipalState(window=64, features=16), rows, labels)) == 0


def test_walk_count_is_bounded_by_the_window() -> None:
    rng = np.random.default_rng(4)
    a, b = rng.normal(size=8), rng.normal(size=8) + 3
    state = PrincipalState(window=8, features=8)
    for boundary in (0.3, 0.6, 0.2):
        feed(state, *bisection(a, b, boundary, 6))
    assert state.walk <= 8
    assert state.walk == int(state.bisecting.sum())


def test_synthetic_queries_are_far_off_grid_or_derived() -> None:
    detector = ExtractionDetector(ExtractionConfig(far=1.5))
    assert detector.synthetic(1.6, False, 9.0, 2.5)  # far from the data
    assert detector.synthetic(0.5, True, 9.0, 2.5)  # off the value grid
    assert detector.synthetic(0.5, False, 1.0, 2.5)  # a step from an earlier query
    assert not detector.synthetic(1.2, False, 9.0, 2.5)  # shifted, but a new record


def test_the_majority_test_waits_for_a_majority() -> None:
    detector = ExtractionDetector(ExtractionConfig(budget=None))
    state = PrincipalState(window=8, features=1)
    state.tested, state.synthetic = 100, 45  # a covariate-shifted benign stream
    assert detector.signals(state) == []
    state.tested, state.synthetic = 20, 20  # noise from the start
    assert [s.rule.id for s in detector.signals(state)] == ["DJ-GW-002"]
    state.tested, state.synthetic = 19, 19
    assert detector.signals(state) == []  # 0.5^19 > 1e-6


def test_evasion_config_can_turn_the_line_test_off() -> None:
    assert EvasionDetector(EvasionConfig(min_walk=0)).line_test(0.5) is None


def test_the_range_test_flags_sign_perturbations_of_a_digit(victim: Victim) -> None:
    profile = build_profile(victim.x_train)
    rates = profile.range_rates
    assert len(rates) == 8
    assert list(rates) == sorted(rates, reverse=True)
    limit = profile.range_limit(0.005)
    assert limit is not None
    assert rates[limit - 1] <= 0.005
    detector = OodDetector(profile)
    x = victim.x_test[:50].astype(float)
    clean = [detector.signal(0.5, False, int(c)) for c in detector.outside(x)]
    # an L-infinity 4 sign step (FGSM's shape) lights up the always-blank background
    rng = np.random.default_rng(5)
    step = np.where(rng.random(x.shape) < 0.5, 4.0, -4.0)
    adv = np.clip(x + step, 0, 16)
    attacked = [detector.signal(0.5, False, int(c)) for c in detector.outside(adv)]
    # sensor noise well inside the margin (a quarter of a feature's scale) does not
    noisy = np.clip(x + rng.normal(0, 0.3, x.shape), 0, 16)
    assert not any(detector.signal(0.5, False, int(c)) for c in detector.outside(noisy))
    assert sum(s is not None for s in clean) <= 1
    assert sum(s is not None for s in attacked) >= 45
    assert all(s.evidence["outside"] >= limit for s in attacked if s is not None)


def test_profiles_without_range_rates_still_load(victim: Victim) -> None:
    data = build_profile(victim.x_train).to_dict()
    del data["range_rates"]
    old = ReferenceProfile.from_dict(data)
    assert old.range_rates == ()
    assert OodDetector(old).range_limit is None
    assert OodDetector(old).outside(victim.x_test[:3]).tolist() == [0, 0, 0]


def test_a_zero_range_rate_turns_the_range_test_off(victim: Victim) -> None:
    profile = build_profile(victim.x_train)
    assert OodDetector(profile, OodConfig(range_rate=0.0)).range_limit is None


def test_the_line_tolerance_is_capped_where_natural_records_are_collinear(
    victim: Victim,
) -> None:
    """In 64 dimensions natural digits are far from collinear: the default stands. In four
    (iris), chance collinearity is common: the tolerance shrinks below it."""
    from sklearn.datasets import load_iris

    digits = build_profile(victim.x_train)
    line = EvasionDetector().line_test(0.9, digits.sample)
    assert line is not None
    assert line.tolerance == 0.02
    iris = build_profile(load_iris().data)
    line = EvasionDetector().line_test(0.5 * iris.nn_quantile(0.01), iris.sample)
    assert line is not None
    assert line.tolerance < 0.5 * natural_excess(iris.sample, 0.1, 0.0) + 1e-12
    assert line.tolerance < 0.002
    # a natural iris stream then has no line-search step
    rng = np.random.default_rng(6)
    rows = list(iris.sample[rng.permutation(len(iris.sample))])
    state = PrincipalState(window=128, features=4)
    flagged = 0
    for i, row in enumerate(rows):
        near = state.neighbours(row, 0.0, 1e-9, line)
        flagged += near.bisects
        state.label(state.push(row, near.bisects), i % 3)
    assert flagged == 0
