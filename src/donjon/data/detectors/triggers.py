"""Trigger-pattern search (BadNets-style backdoors) in images and in tables.

A backdoor trigger is a small patch of fixed values stamped on records relabelled to one
target class: a square of pixels in an image, one or two cells of a table row. The search
needs no poison rate:

1. For every window (images: squares of sides 1 to 4 pixels at every position; tables:
   every feature with mostly distinct values, and every pair of them), records sharing
   exactly the same window content form groups. In continuous columns exact ties are
   rare, so a group of a few records stands out however small the poisoned share.
2. A group is a candidate when its labels are concentrated on one class far beyond that
   class's share of the data (one-sided binomial test). In images natural patterns tie
   records by the hundred, so the test is Bonferroni-corrected over every group; in
   continuous columns a tie is rare by nature, so the test only screens (seven records of
   a class holding 38 % of the data cannot pass a corrected test) and step 3 is the
   corrected one.
3. The decisive test: hide the window in every record (replace it by its median) and ask
   each group record's nearest neighbours which class it belongs to. Natural patterns
   (the empty centre of a zero) still look like their label; a trigger's records look
   like the classes they were taken from. A candidate is a trigger when most of its
   records (binomial test again) look like another class once the window is hidden; in
   tables, when far more of them do than of the target class's other records (binomial
   test against that base rate, Bonferroni over the candidates).
4. Every record that carries the patch and the target label is flagged; its score is the
   probability, with the patch hidden, that it does not belong to the target class.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
from scipy import stats
from sklearn.neighbors import NearestNeighbors
from sklearn.preprocessing import StandardScaler

from donjon.data import rules
from donjon.data.detectors.base import DetectorResult, LabelledData, RecordFlag

NAME = "trigger_search"
MAX_SIDE = 4
MIN_GROUP = 5
ALPHA = 0.01
MAX_CANDIDATES = 25
NEIGHBOURS = 10


@dataclass(frozen=True)
class Candidate:
    pixels: tuple[int, ...]  # flat feature indices of the window
    rows: np.ndarray  # records carrying the content and the target label
    target: int
    log_p: float
    box: tuple[int, int, int, int] | None  # top, left, height, width (images)
    values: tuple[float, ...]


def infer_image_shape(d: int) -> tuple[int, ...] | None:
    """(side, side) or (side, side, 3) when ``d`` allows it, else None."""
    side = math.isqrt(d)
    if side * side == d and side >= 4:
        return (side, side)
    if d % 3 == 0:
        side = math.isqrt(d // 3)
        if side * side * 3 == d and side >= 4:
            return (side, side, 3)
    return None


def _windows(shape: tuple[int, ...]) -> list[Window]:
    height, width = shape[0], shape[1]
    channels = shape[2] if len(shape) == 3 else 1
    grid = np.arange(height * width * channels).reshape(height, width, channels)
    out: list[Window] = []
    for side in range(1, MAX_SIDE + 1):
        for top in range(height - side + 1):
            for left in range(width - side + 1):
                cells = grid[top : top + side, left : left + side, :].ravel()
                out.append((tuple(int(c) for c in cells), (top, left, side, side)))
    return out


Window = tuple[tuple[int, ...], tuple[int, int, int, int] | None]
MAX_PAIR_FEATURES = 64  # pairs of up to 64 columns: 2,016 windows


def _table_windows(X: np.ndarray) -> list[Window]:
    """Single columns and pairs of columns whose values are mostly distinct (continuous).

    A column of few values (a category, a count, a flag) groups records by nature; a
    fixed value stamped into a continuous column is what a trigger looks like.
    """
    n = X.shape[0]
    spread = [j for j in range(X.shape[1]) if len(np.unique(X[:, j])) >= n / 2]
    out: list[Window] = [((j,), None) for j in spread]
    paired = spread[:MAX_PAIR_FEATURES]
    out += [((a, b), None) for i, a in enumerate(paired) for b in paired[i + 1 :]]
    return out


def _candidates(
    data: LabelledData, y: np.ndarray, windows: list[Window], table: bool
) -> list[Candidate]:
    k = data.k
    share = np.bincount(y, minlength=k) / len(y)
    found: list[Candidate] = []
    tests = 0
    for pixels, box in windows:
        block = np.ascontiguousarray(data.X[:, list(pixels)])
        _, inverse, counts = np.unique(block, axis=0, return_inverse=True, return_counts=True)
        inverse = inverse.ravel()
        for group in np.flatnonzero(counts >= MIN_GROUP):
            tests += 1
            members = np.flatnonzero(inverse == group)
            label_counts = np.bincount(y[members], minlength=k)
            target = int(label_counts.argmax())
            hits = int(label_counts[target])
            if hits < MIN_GROUP:
                continue
            log_p = float(stats.binom.logsf(hits - 1, len(members), share[target]))
            found.append(
                Candidate(
                    pixels,
                    members[y[members] == target],
                    target,
                    log_p,
                    box,
                    tuple(float(v) for v in block[members[0]]),
                )
            )
    # images: natural patterns tie records by the hundred, so the concentration test is
    # corrected over every group; a tie in continuous columns is rare by nature, so there
    # the test only screens, and the decisive test (step 3) is the corrected one
    threshold = math.log(ALPHA if table else ALPHA / max(tests, 1))
    found = [c for c in found if c.log_p < threshold]
    found.sort(key=lambda c: (c.log_p, -len(c.pixels)))
    return _distinct(found)[:MAX_CANDIDATES]


def _distinct(candidates: list[Candidate]) -> list[Candidate]:
    """Drop candidates whose records mostly repeat a stronger candidate's."""
    kept: list[Candidate] = []
    for cand in candidates:
        rows = set(cand.rows.tolist())
        if all(len(rows & set(k.rows.tolist())) < 0.5 * len(rows) for k in kept):
            kept.append(cand)
    return kept


def _masked_probs(data: LabelledData, y: np.ndarray, cand: Candidate) -> tuple[np.ndarray, float]:
    """Class votes of each candidate row's nearest neighbours, the window hidden for all;
    and the base rate: how often a record of the target class outside the group looks
    like another class the same way.

    With the window set to its median in every record, a trigger can no longer be seen:
    a poisoned record's neighbours are the records of the class it was taken from.
    """
    X = data.X.copy()
    X[:, list(cand.pixels)] = np.median(data.X[:, list(cand.pixels)], axis=0)
    scaled = StandardScaler().fit_transform(X)
    neighbours = min(NEIGHBOURS + 1, data.n)
    index = NearestNeighbors(n_neighbors=neighbours).fit(scaled)
    others = np.setdiff1d(np.flatnonzero(y == cand.target), cand.rows)
    rows = np.concatenate([cand.rows, others])
    _, found = index.kneighbors(scaled[rows])
    probs = np.zeros((len(rows), data.k))
    for i, (row, near) in enumerate(zip(rows, found, strict=True)):
        near = near[near != row][: neighbours - 1]
        probs[i] = np.bincount(y[near], minlength=data.k) / max(len(near), 1)
    outside = probs[len(cand.rows) :]
    base = float((outside.argmax(axis=1) != cand.target).mean()) if len(others) else 0.5
    return probs[: len(cand.rows)], base


def detect_triggers(data: LabelledData) -> DetectorResult:
    if data.y is None or data.k < 2:
        return DetectorResult(NAME, rules.BACKDOOR_TRIGGER, error="needs labels")
    shape = data.image_shape or infer_image_shape(data.X.shape[1])
    table = shape is None or int(np.prod(shape)) != data.X.shape[1]
    if not table and shape is not None:
        windows = _windows(shape)
        summary: dict[str, object] = {"image_shape": list(shape)}
    else:
        windows = _table_windows(data.X)
        summary = {"table_windows": len(windows)}
    flags: list[RecordFlag] = []
    triggers: list[dict[str, object]] = []
    flagged: set[int] = set()
    candidates = _candidates(data, data.y, windows, table)
    for cand in candidates:
        rows = np.array([r for r in cand.rows if r not in flagged], dtype=int)
        if len(rows) < MIN_GROUP:
            continue
        cand = Candidate(cand.pixels, rows, cand.target, cand.log_p, cand.box, cand.values)
        probs, base = _masked_probs(data, data.y, cand)
        elsewhere = probs.argmax(axis=1) != cand.target
        # the group must look like other classes once the patch is hidden
        if table:  # far more often than the target class's other records
            null, alpha = min(max(base, 1 / (data.n + 1)), 0.5), ALPHA / len(candidates)
        else:  # most of the group
            null, alpha = 0.5, ALPHA
        if stats.binomtest(int(elsewhere.sum()), len(rows), null, "greater").pvalue > alpha:
            continue
        name = data.label_name(cand.target)
        where = _where(data, cand)
        trigger: dict[str, object] = {
            "target": name,
            "values": list(cand.values),
            "records": len(rows),
            "look_like_other_classes": round(float(elsewhere.mean()), 3),
        }
        if cand.box is not None:
            top, left, height, width = cand.box
            trigger["box"] = {"top": top, "left": left, "height": height, "width": width}
        else:
            trigger["features"] = [data.feature_names[j] for j in cand.pixels]
        triggers.append(trigger)
        for row, p in zip(rows.tolist(), probs, strict=True):
            flagged.add(row)
            score = float(1.0 - p[cand.target])
            flags.append(
                RecordFlag(
                    row,
                    NAME,
                    rules.BACKDOOR_TRIGGER,
                    score,
                    f"carries {where} shared by {len(rows)} records labelled {name!r}; "
                    f"without it the record looks like {data.label_name(int(p.argmax()))!r}",
                    {"trigger": len(triggers) - 1, "p_target_without_patch": round(1 - score, 4)},
                )
            )
    summary |= {"candidates": len(candidates), "triggers": triggers}
    return DetectorResult(NAME, rules.BACKDOOR_TRIGGER, tuple(flags), summary)


def _where(data: LabelledData, cand: Candidate) -> str:
    if cand.box is not None:
        top, left, height, width = cand.box
        return f"a fixed {height}x{width} patch at ({top}, {left})"
    cells = ", ".join(
        f"{data.feature_names[j] if j < len(data.feature_names) else j}={v:g}"
        for j, v in zip(cand.pixels, cand.values, strict=True)
    )
    return f"fixed values {cells}"
