"""The scatter test (random draws far from each other) and the split test (a background
broken in two by a sign-like perturbation), on streams and rows built here."""

from __future__ import annotations

import itertools

import numpy as np
import pytest
from sklearn.datasets import load_breast_cancer, load_digits

from donjon.core.identity import Principal
from donjon.errors import InputError
from donjon.gateway import ReferenceProfile, build_profile
from donjon.gateway.detectors import Action
from donjon.gateway.detectors.ood import OodConfig, OodDetector
from donjon.gateway.guard import ModelGuard
from donjon.gateway.settings import ModelSettings
from donjon.gateway.spacing import Spacing


@pytest.fixture(scope="module")
def cancer() -> tuple[np.ndarray, np.ndarray, ReferenceProfile]:
    x = load_breast_cancer().data
    order = np.random.default_rng(0).permutation(len(x))
    train, held = x[order[:400]], x[order[400:]]
    return train, held, build_profile(train)


@pytest.fixture(scope="module")
def digits() -> tuple[np.ndarray, np.ndarray, ReferenceProfile]:
    x = load_digits().data / 16.0
    order = np.random.default_rng(0).permutation(len(x))
    train, held = x[order[:1200]], x[order[1200:]]
    return train, held, build_profile(train)


def guard_for(profile: ReferenceProfile, ood_action: str = "log") -> ModelGuard:
    settings = ModelSettings.model_validate(
        {
            "name": "m",
            "routes": ["/p"],
            "allow": ["*"],
            "detectors": {"ood": {"action": ood_action}},
        }
    )
    return ModelGuard(settings, profile=profile, window=128, max_principals=10)


def first(guard: ModelGuard, who: str, rows: np.ndarray, detector: str) -> int | None:
    """The query index of ``detector``'s first signal on ``rows``, one row per request."""
    for row in rows:
        for signal in guard.inspect(Principal(who), row[None]).signals:
            if signal.detector == detector:
                return int(signal.evidence["query_index"])
    return None


def test_spacing_p_values_fall_with_distance_and_are_capped(cancer: tuple) -> None:
    spacing = cancer[2].spacing
    assert spacing is not None
    median = spacing.quantiles[0][0]
    assert spacing.pvalue(0.5 * median, 1) == 1.0
    ps = [spacing.pvalue(d, 8) for d in np.linspace(0, 3 * spacing.quantiles[-1][-1], 50)]
    assert all(a >= b for a, b in itertools.pairwise(ps))
    assert ps[-1] == pytest.approx(1 - spacing.levels[-1])
    # more earlier queries: the nearest is closer, so the same distance is rarer
    d = spacing.quantiles[3][3]
    assert spacing.pvalue(d, 64) < spacing.pvalue(d, 1)


def test_random_draws_over_the_box_are_flagged_within_20_queries(cancer: tuple) -> None:
    """BoundaryAttack's start: the original, then uniform draws over the feature box."""
    train, held, profile = cancer
    rng = np.random.default_rng(1)
    draws = rng.uniform(train.min(axis=0), train.max(axis=0), size=(40, train.shape[1]))
    at = first(guard_for(profile), "mallory", np.vstack([held[:1], draws]), "scatter")
    assert at is not None
    assert at <= 20


@pytest.mark.parametrize("change", ["none", "gain", "offset", "noise"])
def test_natural_streams_are_never_scattered(cancer: tuple, change: str) -> None:
    train, held, profile = cancer
    rng = np.random.default_rng(2)
    rows = np.vstack([held, train[:200]])[rng.permutation(len(held) + 200)]
    spread = train.std(axis=0)
    changed = {
        "none": rows,
        "gain": rows * rng.choice([0.85, 1.15], size=(len(rows), 1)),
        "offset": rows + 0.25 * spread,
        "noise": rows + rng.normal(0, 0.05, rows.shape) * spread,
    }[change]
    guard = guard_for(profile)
    assert first(guard, "alice", changed, "scatter") is None
    assert guard.table.get("alice").scatter < 0.5 * 9.2


def test_a_sign_perturbation_splits_the_background_at_any_budget(digits: tuple) -> None:
    _train, held, profile = digits
    detector = OodDetector(profile, OodConfig())
    assert detector.split_limit is not None
    rng = np.random.default_rng(3)
    benign = {
        "held-out": held,
        "gain": np.clip(held * 1.15, 0, 1),
        "offset": np.clip(held + 0.1, 0, 1),
        "noise": np.clip(held + rng.normal(0, 0.02, held.shape), 0, 1),
    }
    for name, rows in benign.items():
        flagged = detector.split(rows) >= detector.split_limit
        assert flagged.mean() <= 0.01, name
    for eps in (1 / 16, 1 / 8, 1 / 4):
        signs = rng.choice([-1.0, 1.0], size=held.shape)
        adversarial = np.clip(held + eps * signs, 0, 1)
        assert (detector.split(adversarial) >= detector.split_limit).mean() >= 0.9, eps


def test_structure_blocks_and_distance_alone_only_logs(digits: tuple) -> None:
    """In block mode a split input is refused; an input that is merely far (a covariate
    shift looks the same) is logged."""
    _train, held, profile = digits
    guard = guard_for(profile, "block")
    rng = np.random.default_rng(4)
    split = np.clip(held[0] + 0.125 * rng.choice([-1.0, 1.0], size=64), 0, 1)
    found = list(guard.inspect(Principal("eve"), split[None]).signals)
    assert [s.action for s in found if s.detector == "ood"] == [Action.BLOCK]
    blurred = (held[1] + np.roll(held[1], 1) + np.roll(held[1], 8)) / 3  # far, no structure
    found = guard.inspect(Principal("bob"), blurred[None]).signals
    assert [s.action for s in found if s.detector == "ood"] in ([], [Action.LOG])


def test_a_table_without_background_has_no_split_test(cancer: tuple) -> None:
    profile = cancer[2]
    assert len(profile.background) == 0
    assert OodDetector(profile).split_limit is None


def test_profiles_keep_the_new_statistics_and_old_ones_load_without(digits: tuple) -> None:
    profile = digits[2]
    again = ReferenceProfile.from_dict(profile.to_dict())
    assert again.spacing == profile.spacing
    assert again.split_rates == profile.split_rates
    assert np.array_equal(again.background, profile.background)
    old = {
        k: v
        for k, v in profile.to_dict().items()
        if k not in ("spacing", "background", "split_rates")
    }
    legacy = ReferenceProfile.from_dict(old)
    assert legacy.spacing is None
    assert OodDetector(legacy).split_limit is None
    assert guard_for(legacy).scatter is None
    broken = profile.to_dict()
    broken["spacing"]["quantiles"][0] = broken["spacing"]["quantiles"][0][::-1]
    with pytest.raises(InputError):
        ReferenceProfile.from_dict(broken)
    with pytest.raises(InputError):
        Spacing.from_dict({"counts": [], "levels": [0.5], "quantiles": []})


def test_the_split_statistic_is_the_same_row_by_row_and_in_bulk(digits: tuple) -> None:
    held, profile = digits[1], digits[2]
    rng = np.random.default_rng(5)
    rows = np.vstack([held[:40], np.clip(held[:40] + 0.125 * rng.choice([-1, 1], (40, 64)), 0, 1)])
    bulk = profile.splits(rows)
    assert len(rows) > 8  # the bulk path
    assert bulk.tolist() == [int(profile.splits(row[None])[0]) for row in rows]
    assert bulk[40:].min() > bulk[:40].max() - 3  # and it separates the two kinds
