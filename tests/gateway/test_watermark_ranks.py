"""The score test's null distribution is exact, and ties never make it bolder."""

from __future__ import annotations

import itertools
import math

import numpy as np
import pytest

from donjon.gateway.watermark.ranks import keyed_rank, rank_sum_tail
from donjon.gateway.watermark.rewrite import keyed_class


def test_the_tail_is_the_enumerated_distribution() -> None:
    sizes = [3, 4, 2, 5]
    outcomes = list(itertools.product(*(range(1, k + 1) for k in sizes)))
    for observed in [(1, 1, 1, 1), (2, 1, 2, 3), (3, 4, 2, 5), (1, 4, 1, 2)]:
        expected = sum(sum(o) <= sum(observed) for o in outcomes) / len(outcomes)
        assert rank_sum_tail(list(observed), sizes) == pytest.approx(expected, rel=1e-12)
    # all first: the product of 1 / size
    assert rank_sum_tail([1] * 7, [9] * 7) == pytest.approx(9.0**-7, rel=1e-9)
    assert rank_sum_tail([], []) == 1.0
    with pytest.raises(ValueError, match="one size per rank"):
        rank_sum_tail([1], [])


def test_rank_among_the_wrong_classes_with_ties_counted_against_the_test() -> None:
    scores = {0: 0.5, 1: 0.2, 2: 0.2, 3: 0.1}
    # truth 0 is left out; keyed 1 ties with 2: ranked below it
    assert keyed_rank(scores, truth=0, keyed=1, classes=4) == 2
    assert keyed_rank(scores, truth=0, keyed=3, classes=4) == 3
    # a keyed class the suspect does not list (top-k) takes the last rank
    assert keyed_rank({0: 0.9, 1: 0.1}, truth=0, keyed=2, classes=4) == 3
    assert keyed_rank({0: 0.9, 1: math.nan, 2: 0.05}, truth=0, keyed=1, classes=4) == 3
    # two classes: nothing to rank
    assert keyed_rank({0: 0.9, 1: 0.1}, truth=0, keyed=1, classes=2) is None
    # names work as labels
    assert keyed_rank({"cat": 0.7, "dog": 0.2, "eel": 0.1}, "cat", "dog", 3) == 1


def test_a_model_blind_to_the_key_gets_uniform_p_values() -> None:
    """Correlated errors, ties and all: the p-value of a suspect that never saw the key."""
    rng = np.random.default_rng(3)
    classes, marks, trials = 10, 12, 1500
    # one fixed suspect: confident, with the same systematic confusion on every input
    base = np.full(classes, 0.01)
    base[0], base[7], base[8] = 0.8, 0.08, 0.08  # 7 and 8 tie
    scores = dict(enumerate(base.tolist()))
    p_values = []
    for _ in range(trials):
        picks = rng.integers(0, 2**63, size=marks)
        ranks = [keyed_rank(scores, 0, keyed_class(0, classes, int(p)), classes) for p in picks]
        p_values.append(rank_sum_tail([r or 0 for r in ranks], [classes - 1] * marks))
    p = np.asarray(p_values)
    # valid (never below its level more often than the level) at every level checked
    for level in (0.01, 0.05, 0.2, 0.5):
        assert (p <= level).mean() <= level + 3 * math.sqrt(level / trials)
