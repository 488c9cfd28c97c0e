"""The check's statistics: which points changed and the binomial p-value."""

from __future__ import annotations

import math

import numpy as np

from donjon.watch import Answers, Fingerprint, binomial_tail, compare


def _fingerprint(scores: np.ndarray | None, labels: tuple[str, ...]) -> Fingerprint:
    n = len(labels)
    return Fingerprint(
        model="m", version=1, endpoint="http://127.0.0.1:1/", request_format="inputs",
        points=np.zeros((n, 2)), kinds=("boundary",) * n, answers=Answers(labels, scores),
        tolerance=0.01, noise=0.0,
    )  # fmt: skip


def test_the_tail_matches_the_closed_forms() -> None:
    assert binomial_tail(0, 200, 0.01) == 1.0
    assert math.isclose(binomial_tail(1, 200, 0.01), 1 - 0.99**200)
    assert math.isclose(binomial_tail(200, 200, 0.01), 0.01**200, rel_tol=1e-9)
    # 13 of 200 at a 1 % change rate is the first count below alpha = 1e-6
    assert binomial_tail(12, 200, 0.01) > 1e-6 > binomial_tail(13, 200, 0.01)


def test_scores_within_the_tolerance_are_the_same_and_beyond_it_changed() -> None:
    enrolled = np.array([[0.5, 0.5], [0.9, 0.1], [0.2, 0.8]])
    fingerprint = _fingerprint(enrolled, ("0", "0", "1"))
    # the first point flips its label on 0.004 of noise: within tolerance, not a change
    now = Answers(("1", "0", "0"), np.array([[0.498, 0.502], [0.9, 0.1], [0.6, 0.4]]))
    changed, largest = compare(fingerprint, now)
    assert changed.tolist() == [False, False, True]
    assert math.isclose(largest, 0.4)
    wider = Answers(("0", "0", "1"), np.full((3, 3), 1 / 3))  # another number of classes
    assert compare(fingerprint, wider)[0].all()


def test_label_only_answers_compare_labels() -> None:
    fingerprint = _fingerprint(None, ("cat", "dog", "cat"))
    changed, _ = compare(fingerprint, Answers(("cat", "cat", "cat")))
    assert changed.tolist() == [False, True, False]


def test_a_fingerprint_survives_its_json_form() -> None:
    fingerprint = _fingerprint(np.array([[0.25, 0.75]]), ("1",))
    again = Fingerprint.from_json(fingerprint.to_json())
    assert again.to_json() == fingerprint.to_json()
    assert again.answers.scores is not None
    assert again.answers.scores.tolist() == [[0.25, 0.75]]
