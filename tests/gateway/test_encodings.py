"""Detectors on data they were not written for: any value grid, continuous features,
benign gain / offset / noise changes, and extraction runs after natural seeds."""

from __future__ import annotations

import numpy as np
import pytest
from sklearn.datasets import load_breast_cancer, load_digits

from donjon.core.identity import Principal
from donjon.gateway import ReferenceProfile, build_profile
from donjon.gateway.detectors.extraction import ExtractionConfig, ExtractionDetector
from donjon.gateway.detectors.ood import OodDetector
from donjon.gateway.detectors.state import GRID_BASELINE, PrincipalState
from donjon.gateway.grids import learn_grids, off_grid
from donjon.gateway.guard import ModelGuard
from donjon.gateway.settings import ModelSettings


@pytest.fixture(scope="module")
def digits16() -> tuple[np.ndarray, np.ndarray]:
    """Digits on a grid of 1/16 steps in [0, 1], split in training and held-out rows."""
    x = load_digits().data / 16.0
    order = np.random.default_rng(0).permutation(len(x))
    return x[order[:1200]], x[order[1200:]]


@pytest.fixture(scope="module")
def cancer() -> tuple[np.ndarray, np.ndarray]:
    x = load_breast_cancer().data
    order = np.random.default_rng(0).permutation(len(x))
    return x[order[:400]], x[order[400:]]


@pytest.mark.parametrize(
    ("step", "origin"), [(1.0, 0.0), (1 / 255, 0.0), (1 / 16, 0.0), (0.25, -3.0), (0.01, 7.5)]
)
def test_any_uniform_step_is_learned(step: float, origin: float) -> None:
    rng = np.random.default_rng(1)
    data = origin + step * rng.integers(0, 40, size=(300, 5))
    steps, origins = learn_grids(data)
    assert np.allclose(steps, step, rtol=1e-9)
    assert not off_grid(data, steps, origins).any()
    assert off_grid(data + step / 3, steps, origins).all()


def test_grids_are_per_feature_and_continuous_features_have_none() -> None:
    rng = np.random.default_rng(2)
    data = np.column_stack(
        [
            rng.integers(0, 10, 300).astype(float),  # counts
            rng.integers(0, 256, 300) / 255.0,  # a 1/255 encoding
            rng.normal(size=300),  # a continuous reading
        ]
    )
    steps, _ = learn_grids(data)
    assert steps[0] == 1.0
    assert steps[1] == pytest.approx(1 / 255)
    assert np.isnan(steps[2])
    # off the grid of one gridded feature is off the grid; any value of the continuous one is not
    probe = data[:2].copy()
    probe[0, 2] += 0.123456
    probe[1, 0] += 0.5
    assert off_grid(probe, *learn_grids(data)).tolist() == [False, True]


def test_a_sparsely_used_feature_takes_the_shared_step() -> None:
    """A pixel seen only at 0, 4 and 8 is on the integer grid of the others, not on 4s."""
    rng = np.random.default_rng(3)
    data = rng.integers(0, 17, size=(300, 4)).astype(float)
    data[:, 3] = rng.choice([0.0, 4.0, 8.0], 300)
    data[:, 2] = 0.0  # constant: on the shared grid too
    steps, _ = learn_grids(data)
    assert steps.tolist() == [1.0, 1.0, 1.0, 1.0]


def test_profiles_keep_their_grids_and_old_ones_still_load(digits16: tuple) -> None:
    train, _ = digits16
    profile = build_profile(train)
    assert profile.quantum == 1 / 16
    again = ReferenceProfile.from_dict(profile.to_dict())
    assert np.array_equal(again.grid_step, profile.grid_step)
    assert again.alignment.gain == profile.alignment.gain
    old = profile.to_dict()
    del old["grid"], old["alignment"]
    old["quantum"] = 0.0625
    legacy = ReferenceProfile.from_dict(old)
    assert legacy.quantum == 1 / 16
    assert not legacy.alignment.active
    assert build_profile(load_breast_cancer().data).quantum is None


def flagged(detector: OodDetector, rows: np.ndarray) -> float:
    """Share of rows the per-input test flags (the grid judged by the guard, not here)."""
    profile = detector.profile
    scores, _, outside = detector.scores(rows, profile.scaled(rows))
    pairs = zip(scores, outside, strict=True)
    signals = [detector.signal(float(s), False, int(o)) for s, o in pairs]
    return sum(s is not None for s in signals) / len(rows)


def test_benign_gain_offset_and_noise_are_not_out_of_distribution(digits16: tuple) -> None:
    train, held = digits16
    detector = OodDetector(build_profile(train))
    rng = np.random.default_rng(4)
    spread = np.maximum(train.std(axis=0), np.median(train.std(axis=0)))
    benign = {
        "unmodified": held,
        "brighter": np.clip(held + 0.1, 0, 1),
        "gain": np.clip(held * 1.15, 0, 1),
        "drift": np.clip(held + np.linspace(0, 0.1, len(held))[:, None], 0, 1),
        "sensor noise": np.clip(held + rng.normal(0, 0.05, held.shape) * spread, 0, 1),
    }
    for name, rows in benign.items():
        assert flagged(detector, rows) <= 0.03, name
    # a sign step of a quarter of the range on every pixel (FGSM's shape) is not benign
    step = np.where(rng.random(held.shape) < 0.5, 0.25, -0.25)
    assert flagged(detector, np.clip(held + step, 0, 1)) >= 0.8


def test_without_alignment_a_brighter_camera_is_out_of_distribution(digits16: tuple) -> None:
    """What the alignment buys: the same check on a profile built without it."""
    train, held = digits16
    plain = OodDetector(build_profile(train, align=False))
    assert flagged(plain, np.clip(held + 0.1, 0, 1)) >= 0.5


def guard_for(profile: ReferenceProfile) -> ModelGuard:
    settings = ModelSettings.model_validate(
        {"name": "m", "routes": ["/predict"], "allow": ["*"], "detectors": {}}
    )
    return ModelGuard(settings, profile=profile, window=128, max_principals=10)


def rules(guard: ModelGuard, who: str, rows: np.ndarray) -> list[tuple[int, str]]:
    found = []
    for row in rows:
        for signal in guard.inspect(Principal(who), row[None]).signals:
            found.append((signal.evidence["query_index"], signal.rule.id))
    return found


def test_off_grid_is_evidence_only_against_a_principal_s_own_encoding(digits16: tuple) -> None:
    train, held = digits16
    guard = guard_for(build_profile(train))
    rng = np.random.default_rng(5)
    # a client whose sensor values are continuous from the start: never flagged for it
    noisy = np.clip(held[:60] + rng.normal(0, 0.01, (60, 64)), 0, 1)
    assert [r for r in rules(guard, "sensor", noisy) if r[1] == "DJ-GW-004"] == []
    # a client on the grid that then sends an off-grid input: flagged at that input
    rows = np.vstack([held[:10], np.clip(held[10:11] + 0.01, 0, 1)])
    assert (11, "DJ-GW-004") in rules(guard, "switcher", rows)
    state = PrincipalState(window=4, features=1)
    assert [state.off_grid_counts(False) for _ in range(GRID_BASELINE)] == [False] * 5
    assert state.off_grid_counts(True)


def test_a_run_of_synthetic_queries_after_natural_seeds_is_flagged_early() -> None:
    """Fifty natural seeds, then steps from them: the change test fires about 22 queries
    into the run, where the majority test would wait for about 2 x 50 + 20."""
    detector = ExtractionDetector(ExtractionConfig(budget=None))
    state = PrincipalState(window=8, features=1)
    at = None
    for i, synthetic in enumerate([False] * 50 + [True] * 60, 1):
        detector.observe(state, synthetic)
        if at is None and detector.signals(state):
            at = i
    assert at is not None
    assert 50 + 20 <= at <= 50 + 25
    signal = detector.signals(state)[0]
    assert signal.rule.id == "DJ-GW-002"
    assert "cusum" in signal.evidence


def test_jittered_re_sends_never_climb_the_change_test() -> None:
    detector = ExtractionDetector(ExtractionConfig(budget=None))
    state = PrincipalState(window=8, features=1)
    rng = np.random.default_rng(6)
    for _ in range(20_000):
        detector.observe(state, bool(rng.random() < 1 / 6))
        assert detector.signals(state) == []


def test_extraction_is_flagged_on_continuous_features(cancer: tuple) -> None:
    """No grid at all: Jacobian-style steps from natural seeds are derived, and noise far
    outside the table's range is far."""
    train, held = cancer
    profile = build_profile(train)
    assert np.isnan(profile.grid_step).sum() >= 1
    guard = guard_for(profile)
    rng = np.random.default_rng(7)
    low, high = train.min(axis=0), train.max(axis=0)
    noise = rng.uniform(low, high + (high - low), size=(60, train.shape[1]))
    assert any(r == "DJ-GW-002" for _, r in rules(guard, "knockoff", noise))
    seeds = held[:20]
    spread = train.std(axis=0)
    steps = [seeds + 0.1 * spread * np.sign(rng.normal(size=seeds.shape)) for _ in range(3)]
    run = rules(guard, "jacobian", np.vstack([seeds, *steps]))
    hits = [q for q, r in run if r == "DJ-GW-002"]
    assert hits
    assert min(hits) <= 20 + 30
    # held-out rows of the same table, in any order, are not (a few are unusual inputs)
    benign = rules(guard, "benign", held[rng.permutation(len(held))])
    assert [r for _, r in benign if r != "DJ-GW-004"] == []
    assert len(benign) <= 0.02 * len(held)
