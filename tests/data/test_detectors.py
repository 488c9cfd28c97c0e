"""Each detector on small corpora: it finds the poison, and stays quiet on clean data."""

from __future__ import annotations

import numpy as np

from donjon.data.checks import check
from donjon.data.dataset import from_arrays
from donjon.data.detectors.labels import detect_label_issues, noise_matrix
from donjon.data.detectors.neighbours import detect_near_duplicates
from donjon.data.detectors.shift import class_balance, feature_shift
from donjon.data.detectors.triggers import detect_triggers, infer_image_shape
from tests.data.conftest import badnets, flips


def f1(flagged: set[int], truth: set[int]) -> float:
    hits = len(flagged & truth)
    return 2 * hits / (len(flagged) + len(truth)) if flagged or truth else 1.0


def test_trigger_search_finds_a_badnets_patch_without_the_poison_rate(
    digits: tuple[np.ndarray, np.ndarray],
) -> None:
    X, y = digits
    poisoned, labels, rows = badnets(X, y, 25)
    result = detect_triggers(from_arrays(poisoned, labels).data)
    assert {f.row for f in result.flags} == set(rows.tolist())
    (trigger,) = result.summary["triggers"]
    assert trigger["box"] == {"top": 6, "left": 6, "height": 2, "width": 2}
    assert trigger["target"] == "0"
    assert all(0.5 < f.score <= 1.0 for f in result.flags)


def test_trigger_search_is_quiet_on_clean_images(digits: tuple[np.ndarray, np.ndarray]) -> None:
    X, y = digits
    result = detect_triggers(from_arrays(X, y).data)
    assert result.flags == ()
    assert result.summary["candidates"] > 0  # natural patterns were tested and rejected


def test_image_shapes_are_inferred() -> None:
    assert infer_image_shape(64) == (8, 8)
    assert infer_image_shape(3072) == (32, 32, 3)
    assert infer_image_shape(30) is None


def test_label_issues_find_flips_and_spare_clean_records(
    cancer: tuple[np.ndarray, np.ndarray],
) -> None:
    X, y = cancer
    labels, rows = flips(y, 0.10)
    result = detect_label_issues(from_arrays(X, labels).data)
    flagged = {f.row for f in result.flags}
    assert f1(flagged, set(rows.tolist())) >= 0.85
    clean = detect_label_issues(from_arrays(X, y).data)
    assert len(clean.flags) <= 3 * len(y) / 1000 + 1


def test_user_supplied_probabilities_are_used() -> None:
    y = np.array([0] * 20 + [1] * 20)
    probs = np.tile([0.95, 0.05], (40, 1))
    probs[20:] = [0.05, 0.95]
    labels = y.copy()
    labels[[3, 25]] = 1 - labels[[3, 25]]
    data = from_arrays(np.zeros((40, 2)), labels, pred_probs=probs).data
    result = detect_label_issues(data)
    assert {f.row for f in result.flags} == {3, 25}
    assert result.summary["probabilities"] == "user-supplied"


def test_noise_matrix_columns_are_distributions() -> None:
    noise = noise_matrix(np.array([[90.0, 10.0], [0.0, 100.0]]))
    assert np.allclose(noise.sum(axis=0), 1.0)
    assert noise[1, 0] > 0  # an unseen confusion is shrunk toward the average, not zero


def test_near_duplicates_flag_copies_and_keep_the_original(
    cancer: tuple[np.ndarray, np.ndarray],
) -> None:
    X, y = cancer
    rng = np.random.default_rng(3)
    copies = X[7] + rng.normal(0, 0.01, (4, X.shape[1])) * X.std(axis=0)
    data = from_arrays(np.vstack([X, copies]), np.concatenate([y, [y[7]] * 4])).data
    result = detect_near_duplicates(data)
    assert {f.row for f in result.flags} == set(range(len(y), len(y) + 4))
    assert all(f.evidence["original"] == 7 for f in result.flags)


def test_shift_tests() -> None:
    rng = np.random.default_rng(0)
    old = rng.normal(size=(500, 3))
    new = old.copy()
    new[:, 1] += 1.0
    shifted = feature_shift(old, new, ("a", "b", "c"))
    assert [s["feature"] for s in shifted] == ["b"]
    assert class_balance(["a"] * 50 + ["b"] * 50, ["a"] * 90 + ["b"] * 10)["shifted"]
    assert not class_balance(["a"] * 50 + ["b"] * 50, ["a"] * 52 + ["b"] * 48)["shifted"]


def test_check_combines_detectors_and_reports_shift(digits: tuple[np.ndarray, np.ndarray]) -> None:
    X, y = digits
    poisoned, labels, rows = badnets(X, y, 25)
    report = check(
        poisoned, labels, detectors=["trigger_search", "near_duplicates", "spectral_signature"]
    )
    assert set(report.flagged_rows) >= set(rows.tolist())
    risk = report.risk()
    assert risk["level"] == "high"
    assert risk["backdoor_triggers"] == 1
    assert "DJ-DAT-004" in {f.rule.id for f in report.findings}
    record = next(v for v in report.flagged if v.row == int(rows[0]))
    assert "trigger_search" in record.detectors
    assert record.reasons


def test_check_against_a_baseline_reports_feature_and_class_shift(
    cancer: tuple[np.ndarray, np.ndarray],
) -> None:
    X, y = cancer
    keep = np.flatnonzero((y == 1) | (np.arange(len(y)) % 4 == 0))
    new = X[keep].copy()
    new[:, 2] *= 1.5
    report = check(new, y[keep], baseline=X, baseline_y=y, detectors=["near_duplicates"])
    assert report.shift is not None
    assert report.shift.class_shift
    assert any(s["feature"] == "x2" for s in report.shift.features)
    assert {"DJ-DAT-008", "DJ-DAT-009"} <= {f.rule.id for f in report.findings}


def test_rules_load_without_the_data_extra() -> None:
    import subprocess
    import sys

    code = (
        "import sys, donjon.catalog as c; c.rule_registry(); "
        "assert not {'pandas', 'pyarrow', 'numpy', 'sklearn'} & set(sys.modules)"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=False)
    assert done.returncode == 0, done.stderr


def test_duplicates_are_not_flagged_where_they_are_the_norm() -> None:
    rng = np.random.default_rng(0)
    X = rng.integers(0, 2, size=(300, 3)).astype(float)  # 8 distinct rows only
    result = detect_near_duplicates(from_arrays(X, rng.integers(0, 2, 300)).data)
    assert result.flags == ()
    assert "skipped" in result.summary
