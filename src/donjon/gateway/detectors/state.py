"""Per-principal detector state with bounded memory.

Each (model, principal) pair owns one :class:`PrincipalState`: a ring buffer of
its last ``window`` queries in the profile's scaled space (float32) with the
label the model gave each, and a few counters. The :class:`StateTable` keeps at
most ``max_principals`` states and evicts the least recently seen, so memory is
bounded by ``max_principals * window * features * 4`` bytes.
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from dataclasses import dataclass, field

import numpy as np
import numpy.typing as npt

from donjon.gateway.detectors import Action

UNKNOWN = -1


@dataclass
class Neighbours:
    """What the window says about one new query."""

    distinct_near: int  # distinct earlier queries within the "near" radius
    duplicates: int  # exact repeats (retries) in the window
    near_labels: frozenset[int]  # known labels of the near queries
    nearest: float  # distance to the nearest non-duplicate query (inf if none)
    bisects: bool = False  # this query lies between two earlier, differently answered ones
    walk: int = 0  # bisecting queries in the window, this one included


@dataclass(frozen=True)
class LineTest:
    """When a query counts as a step of a line search between two earlier queries ``a``, ``b``:
    ``|x-a| + |x-b| <= (1 + tolerance) |a-b|``, ``min(|x-a|, |x-b|) >= min_offset |a-b|``
    and ``|a-b| >= min_span``, among the last ``recent`` queries."""

    tolerance: float
    min_offset: float
    min_span: float
    recent: int = 16


@dataclass
class PrincipalState:
    window: int
    features: int
    rows: npt.NDArray[np.float32] = field(init=False)
    labels: npt.NDArray[np.int32] = field(init=False)
    bisecting: npt.NDArray[np.bool_] = field(init=False)
    size: int = 0
    cursor: int = 0
    queries: int = 0  # every row ever seen
    ood: int = 0  # rows flagged out-of-distribution
    blocked_until: dict[str, tuple[float, Action]] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self.rows = np.zeros((self.window, self.features), dtype=np.float32)
        self.labels = np.full(self.window, UNKNOWN, dtype=np.int32)
        self.bisecting = np.zeros(self.window, dtype=bool)

    def neighbours(
        self,
        row: npt.NDArray[np.float64],
        near: float,
        dup: float,
        line: LineTest | None = None,
    ) -> Neighbours:
        if self.size == 0:
            return Neighbours(0, 0, frozenset(), float("inf"))
        diff = self.rows[: self.size] - row.astype(np.float32)
        dist = np.sqrt((diff * diff).sum(axis=1))
        is_dup = dist <= dup
        is_near = (dist < near) & ~is_dup
        labels = self.labels[: self.size][is_near]
        others = dist[~is_dup]
        bisects = line is not None and not is_dup.any() and self._bisects(dist, line)
        return Neighbours(
            distinct_near=int(is_near.sum()),
            duplicates=int(is_dup.sum()),
            near_labels=frozenset(int(v) for v in labels if v != UNKNOWN),
            nearest=float(others.min()) if len(others) else float("inf"),
            bisects=bisects,
            walk=int(self.bisecting[: self.size].sum()) + bisects,
        )

    def _bisects(self, dist: npt.NDArray[np.float32], line: LineTest) -> bool:
        """Does the new query lie on the segment between two of the last ``line.recent``
        queries that the model answered differently (a line or bisection search)?

        ``dist`` holds the new query's distances to the window. The pairs are the recent
        queries only, so the cost is ``recent^2 * features`` per query, not the window's.
        """
        k = min(line.recent, self.size)
        if k < 2:
            return False
        idx = (self.cursor - 1 - np.arange(k)) % self.window
        labels = self.labels[idx]
        known = labels != UNKNOWN
        if known.sum() < 2:
            return False
        idx, labels = idx[known], labels[known]
        pts = self.rows[idx].astype(np.float64)
        sq = (pts * pts).sum(axis=1)
        span = np.sqrt(np.maximum(sq[:, None] + sq[None, :] - 2.0 * (pts @ pts.T), 0.0))
        d = dist[idx]
        legs = d[:, None] + d[None, :]
        ok = (labels[:, None] != labels[None, :]) & (span >= line.min_span)
        ok &= legs <= (1.0 + line.tolerance) * span  # on the segment, up to the tolerance
        ok &= np.minimum(d[:, None], d[None, :]) >= line.min_offset * span  # strictly inside
        return bool(ok.any())

    def push(self, row: npt.NDArray[np.float64], bisects: bool = False) -> int:
        """Add a query (label unknown yet); return its slot for :meth:`label`."""
        slot = self.cursor
        self.rows[slot] = row
        self.labels[slot] = UNKNOWN
        self.bisecting[slot] = bisects
        self.cursor = (self.cursor + 1) % self.window
        self.size = min(self.size + 1, self.window)
        return slot

    def label(self, slot: int, value: int) -> None:
        self.labels[slot] = value


class StateTable:
    """At most ``max_principals`` states, least recently used evicted first."""

    def __init__(self, *, window: int, features: int, max_principals: int) -> None:
        if window < 2 or max_principals < 1:
            raise ValueError("window must be >= 2 and max_principals >= 1")
        self.window = window
        self.features = features
        self.max_principals = max_principals
        self._states: OrderedDict[str, PrincipalState] = OrderedDict()
        self.lock = threading.Lock()
        self.evicted = 0

    def get(self, key: str) -> PrincipalState:
        state = self._states.get(key)
        if state is None:
            state = PrincipalState(self.window, self.features)
            self._states[key] = state
            while len(self._states) > self.max_principals:
                self._states.popitem(last=False)
                self.evicted += 1
        else:
            self._states.move_to_end(key)
        return state

    def __len__(self) -> int:
        return len(self._states)
