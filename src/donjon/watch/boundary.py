"""Points next to a model's decision boundary, found by black-box bisection (IPGuard-like).

Between two held-out rows the model labels differently there is a boundary;
bisecting the segment (all segments at once, one batch of queries per step)
brackets it to ``2**-steps`` of the segment's length. The points kept are the
bracket's ends, alternately on each side: the promoted model answers them as
enrolled, while a model with any other decision function (another architecture,
seed, fine-tune, quantisation, backdoor) moves the boundary past many of them.
"""

from __future__ import annotations

import numpy as np

from donjon.errors import WatchError
from donjon.watch.ports import Model, Rows


def boundary_points(
    model: Model, rows: Rows, labels: tuple[str, ...], count: int, *, steps: int = 14, seed: int = 0
) -> Rows:
    """``count`` points within ``2**-steps`` of a segment's length of the model's boundary."""
    if count <= 0:
        return np.empty((0, rows.shape[1]))
    label_array = np.asarray(labels, dtype=object)
    if len(set(labels)) < 2:
        raise WatchError("the held-out rows all get one label: there is no boundary to find")
    rng = np.random.default_rng(seed)
    starts = rng.integers(0, len(rows), size=count * 4)
    pairs: list[tuple[int, int]] = []
    for a in starts:
        others = np.flatnonzero(label_array != label_array[a])
        if len(others):
            pairs.append((int(a), int(rng.choice(others))))
        if len(pairs) == count:
            break
    if len(pairs) < count:
        raise WatchError("too few held-out rows of different labels to find boundary points")
    a = rows[[p[0] for p in pairs]]
    b = rows[[p[1] for p in pairs]]
    side = label_array[[p[0] for p in pairs]]
    low = np.zeros(count)  # label(a + low (b - a)) == label(a)
    high = np.ones(count)  # label(a + high (b - a)) != label(a)
    for _ in range(steps):
        middle = (low + high) / 2
        answers = model.answer(a + middle[:, None] * (b - a))
        same = np.asarray(answers.labels, dtype=object) == side
        low = np.where(same, middle, low)
        high = np.where(same, high, middle)
    ends = np.where(np.arange(count) % 2 == 0, low, high)
    points: Rows = a + ends[:, None] * (b - a)
    return points
