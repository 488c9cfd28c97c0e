"""Two versions' probes compared row by row, and the previous version's probe to compare with.

A probe attacks the fingerprint's held-out rows, the same rows for every version
enrolled from the same data (``rows_digest`` says which); each row's perturbation
is stored with the probe. The next version's probe is then compared with the
last probe of the version before it on the same rows: the one-sided Wilcoxon
signed-rank test of the per-row log ratios (scale-free, so a row near the
boundary weighs as much as a far one). Below ``ALPHA``, and with the new version
needing at least ``MIN_DROP`` less perturbation on the median row, it is less
robust (DJ-WT-003): a retrain with another seed can differ by a few per cent, a
real difference the test sees, but not a lost hardening worth an alert. A probe
stored before the rows were recorded, or measured by another method (``method``:
HopSkipJump's upper bounds before the rays), pairs with none.
"""

from __future__ import annotations

import math
import statistics
from collections.abc import Mapping, Sequence
from typing import Any

ALPHA = 0.01
MIN_DROP = 0.1  # the smallest drop worth an alert (watch.probe_min_drop)


def paired(before: Sequence[float | None], after: Sequence[float | None]) -> dict[str, Any]:
    """On how many rows ``after`` needed more perturbation than ``before``, the median ratio
    after / before, and the one-sided Wilcoxon signed-rank p-value that ``after`` needs more
    (NaN with fewer than 5 rows that differ). Rows without a finite value on both sides are
    left out."""
    from scipy.stats import wilcoxon

    pairs = [
        (float(x), float(y))
        for x, y in zip(before, after, strict=False)
        if x is not None and y is not None and 0 < x < math.inf and 0 < y < math.inf
    ]
    logs = [math.log(y / x) for x, y in pairs]
    moved = [v for v in logs if v != 0.0]
    p_value = float(wilcoxon(moved, alternative="greater").pvalue) if len(moved) >= 5 else math.nan
    return {
        "rows": len(pairs),
        "higher": sum(v > 0 for v in logs),
        "ratio": math.exp(statistics.median(logs)) if logs else math.nan,
        "p_value": p_value,
    }


def previous_probe(
    probes: Mapping[int, Sequence[dict[str, Any]]], version: int, digest: str, method: str
) -> tuple[int, dict[str, Any]] | None:
    """The last finished probe, on the rows ``digest`` names and measured by ``method``, of
    the highest version below ``version``; ``probes``: each version's stored probes, oldest
    first."""
    for earlier in sorted((v for v in probes if v < version), reverse=True):
        for done in reversed(probes[earlier]):
            if (
                done.get("status") == "done"
                and digest
                and done.get("rows_digest") == digest
                and done.get("method") == method
                and done.get("perturbations")
            ):
                return earlier, done
    return None


def against_previous(
    perturbations: Sequence[float],
    version: int,
    previous: Mapping[str, Any],
    min_drop: float = MIN_DROP,
) -> dict[str, Any]:
    """The stored comparison of a probe with ``previous`` (a probe of ``version``): less
    robust when significant and the median ratio new / previous is at most ``1 - min_drop``."""
    pair = paired(perturbations, previous["perturbations"])  # higher: the new one is brittler
    p_value = pair["p_value"]
    ratio = 1.0 / pair["ratio"] if pair["ratio"] else math.nan
    return {
        "paired_version": version,
        "paired_rows": pair["rows"],
        "paired_brittler": pair["higher"],
        "paired_ratio": ratio if math.isfinite(ratio) else None,
        "paired_p_value": p_value if math.isfinite(p_value) else None,
        "less_robust": (
            math.isfinite(p_value)
            and p_value < ALPHA
            and math.isfinite(ratio)
            and ratio <= 1.0 - min_drop
        ),
    }
