"""Label issues: confident learning (cleanlab) and a calibrated posterior per record.

1. Out-of-sample probabilities from cross-validated models (or the user's own).
2. cleanlab's confident joint estimates how often each class is labelled as each other
   class, and prunes the likely label issues.
3. Models refitted without the pruned rows give cleaner probabilities ``p(j | x)``. A
   class-conditional flip (a share of one class relabelled as another) forms a coherent
   cluster that cross-validated models partly learn: its records vouch for each other. So
   the cleaning is iterated: records found wrong (step 6) leave the training rows too, and
   the models are refitted until the set left out stops changing (at most
   ``CLEANING_ROUNDS`` refits).
4. The survivors of a large flip still vouch for each other. When the label issues pile
   up in one (given, true) class pair far beyond what noise spread over every class would
   put there, the pair is a flip candidate: every record of the given class that is not
   confidently of it and leans to the other leaves the training rows, and one more refit
   judges each by its genuine neighbours only.
5. Each record's posterior that its label is wrong follows Bayes' rule with the estimated
   noise matrix ``T[i][j] = P(label i | true class j)``, each off-diagonal cell shrunk toward
   the average off-diagonal count (so an unobserved confusion is not treated as impossible):
   ``P(true j | x, label i) ~ T[i][j] p(j | x)``.
6. A record is flagged when that posterior exceeds 1/2: more likely wrong than right. No
   noise rate is assumed; the threshold is the Bayes decision, the score the posterior.
"""

from __future__ import annotations

import warnings

import numpy as np
from scipy import stats

from donjon.data import rules
from donjon.data.detectors.base import DetectorResult, LabelledData, RecordFlag
from donjon.data.detectors.models import out_of_sample_probs

NAME = "label_issues"
CLEANING_ROUNDS = 3
MIN_PAIR_ISSUES = 5
PAIR_ALPHA = 0.01


def _normalise(probs: np.ndarray) -> np.ndarray:
    probs = np.clip(np.asarray(probs, dtype=float), 1e-6, None)
    return np.asarray(probs / probs.sum(axis=1, keepdims=True))


def noise_matrix(joint_counts: np.ndarray) -> np.ndarray:
    """``T[i][j] = P(label i | true j)`` from confident-joint counts, with shrinkage."""
    k = joint_counts.shape[0]
    off = float(joint_counts.sum() - np.trace(joint_counts))
    prior = off / max(k * (k - 1), 1)
    counts = joint_counts + prior * (1 - np.eye(k)) + 1e-3
    return np.asarray(counts / counts.sum(axis=0, keepdims=True))


def label_posterior(probs: np.ndarray, labels: np.ndarray, noise: np.ndarray) -> np.ndarray:
    """(n, k) posterior over the true class given features and the given label."""
    post = noise[labels] * probs
    return np.asarray(post / post.sum(axis=1, keepdims=True))


def _clean_probabilities(
    X: np.ndarray,
    y: np.ndarray,
    k: int,
    first: np.ndarray,
    pruned: np.ndarray,
    noise: np.ndarray,
    seed: int,
    rounds: int,
) -> tuple[np.ndarray, np.ndarray]:
    """Probabilities from models fitted without the suspect rows, refitted until the suspects
    are stable; and the posterior over each record's true class."""
    clean, left_out = first, pruned
    for _ in range(rounds):
        keep = np.flatnonzero(~left_out)
        if np.bincount(y[keep], minlength=k).min() < 2:
            break  # a class would be left with too few records to cross-validate
        clean = _normalise(out_of_sample_probs(X, y, k, keep, seed))
        posterior = label_posterior(clean, y, noise)
        suspects = pruned | (posterior[np.arange(len(y)), y] < 0.5)
        if (suspects == left_out).all():
            return clean, posterior
        left_out = suspects
    return clean, label_posterior(clean, y, noise)


def flip_pairs(y: np.ndarray, posterior: np.ndarray, counts: np.ndarray) -> list[tuple[int, int]]:
    """(given, true) class pairs whose label issues are too many to be spread noise.

    Under noise that spares no class, a record of true class j is relabelled as each other
    class alike, so a label issue falls in the cell (given i, true j) with probability
    ``n_j / (n (k - 1))``. A class-conditional flip piles its records in one cell: a cell
    holding far more (one-sided binomial test, Bonferroni over the k (k - 1) cells) is a
    flip candidate.
    """
    n, k = len(y), len(counts)
    wrong = posterior[np.arange(n), y] < 0.5
    likely = posterior.argmax(axis=1)
    total = int(wrong.sum())
    if total < MIN_PAIR_ISSUES:
        return []
    cells = np.zeros((k, k), dtype=int)
    np.add.at(cells, (y[wrong], likely[wrong]), 1)
    alpha = PAIR_ALPHA / (k * (k - 1))
    return [
        (int(i), int(j))
        for i, j in zip(*np.nonzero(cells >= MIN_PAIR_ISSUES), strict=True)
        if i != j and stats.binom.sf(cells[i, j] - 1, total, counts[j] / (n * (k - 1))) < alpha
    ]


def _refit_pairs(
    X: np.ndarray,
    y: np.ndarray,
    k: int,
    clean: np.ndarray,
    posterior: np.ndarray,
    pruned: np.ndarray,
    noise: np.ndarray,
    pairs: list[tuple[int, int]],
    seed: int,
) -> tuple[np.ndarray, np.ndarray]:
    """Refit without every record a flip of ``pairs`` may have reached.

    The flipped records that survive the cleaning still vouch for each other. Within a flip
    candidate (given i, true j), every record labelled i that is not confidently i (its
    probability below the class's average, cleanlab's confident threshold) and leans to j
    leaves the training rows; each is then judged by its genuine neighbours only.
    """
    n = len(y)
    given = clean[np.arange(n), y]
    threshold = np.array([clean[y == c, c].mean() for c in range(k)])
    rival = np.where(np.eye(k, dtype=bool)[y], -1.0, clean).argmax(axis=1)
    doubtful = posterior[np.arange(n), y] < 0.5
    for i, j in pairs:
        doubtful |= (y == i) & (rival == j) & (given < threshold[i])
    keep = np.flatnonzero(~(doubtful | pruned))
    if np.bincount(y[keep], minlength=k).min() < 2:
        return clean, posterior
    refit = _normalise(out_of_sample_probs(X, y, k, keep, seed))
    return refit, label_posterior(refit, y, noise)


def detect_label_issues(
    data: LabelledData, seed: int = 0, rounds: int = CLEANING_ROUNDS
) -> DetectorResult:
    from cleanlab.count import estimate_joint
    from cleanlab.filter import find_label_issues

    if data.y is None or data.k < 2:
        return DetectorResult(NAME, rules.LABEL_ISSUE, error="needs labels of at least 2 classes")
    y, k, n = data.y, data.k, data.n
    counts = np.bincount(y, minlength=k)
    if counts.min() < 2:
        return DetectorResult(NAME, rules.LABEL_ISSUE, error="every class needs 2 records or more")
    supplied = data.pred_probs is not None
    first = (
        _normalise(data.pred_probs)
        if data.pred_probs is not None
        else _normalise(out_of_sample_probs(data.X, y, k, seed=seed))
    )
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # cleanlab warns on tiny classes; results stand
        pruned = find_label_issues(y, first, filter_by="prune_by_noise_rate")
        joint = estimate_joint(y, first) * n
    noise = noise_matrix(joint)
    candidates: list[tuple[int, int]] = []
    if supplied:
        clean, posterior = first, label_posterior(first, y, noise)
    else:
        clean, posterior = _clean_probabilities(data.X, y, k, first, pruned, noise, seed, rounds)
        candidates = flip_pairs(y, posterior, counts)
        if candidates:
            clean, posterior = _refit_pairs(
                data.X, y, k, clean, posterior, pruned, noise, candidates, seed
            )
    wrong = 1.0 - posterior[np.arange(n), y]
    likely = posterior.argmax(axis=1)
    flags = tuple(
        RecordFlag(
            int(i),
            NAME,
            rules.LABEL_ISSUE,
            float(wrong[i]),
            f"labelled {data.label_name(int(y[i]))!r} but looks like "
            f"{data.label_name(int(likely[i]))!r} (p={clean[i, likely[i]]:.2f})",
            {
                "given": data.label_name(int(y[i])),
                "likely": data.label_name(int(likely[i])),
                "p_given": round(float(clean[i, y[i]]), 4),
                "p_likely": round(float(clean[i, likely[i]]), 4),
            },
        )
        for i in np.flatnonzero(wrong > 0.5)
    )
    est = noise * (1 - np.eye(k))
    pairs = [
        {"from": data.label_name(j), "to": data.label_name(i), "rate": round(float(est[i, j]), 4)}
        for i, j in zip(
            *np.unravel_index(np.argsort(est, axis=None)[::-1][:5], est.shape), strict=True
        )
    ]
    summary = {
        "cleanlab_issues": int(pruned.sum()),
        "flagged": len(flags),
        "estimated_noise_rate": round(float(1 - np.trace(joint) / n), 4),
        "top_confusions": pairs,
        "flip_candidates": [
            {"given": data.label_name(i), "true": data.label_name(j)} for i, j in candidates
        ],
        "probabilities": "user-supplied" if supplied else "cross-validated scikit-learn models",
    }
    return DetectorResult(NAME, rules.LABEL_ISSUE, flags, summary)
