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
GRID_BASELINE = 5  # a principal's first queries that set its encoding (on the grid or not)


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
    """When a query ``x`` counts as a step of a line search: it lies between the
    principal's previous query ``p`` and an earlier query ``a`` answered differently,
    ``|x-p| + |x-a| <= (1 + tolerance) |p-a|``, ``min(|x-p|, |x-a|) >= min_offset |p-a|``
    and ``|p-a| >= min_span``."""

    tolerance: float
    min_offset: float
    min_span: float


@dataclass
class PrincipalState:
    window: int
    features: int
    rows: npt.NDArray[np.float32] = field(init=False)
    labels: npt.NDArray[np.int32] = field(init=False)
    bisecting: npt.NDArray[np.bool_] = field(init=False)
    walk: int = 0  # bisecting rows in the window
    size: int = 0
    cursor: int = 0
    queries: int = 0  # every row ever seen
    ood: int = 0  # rows flagged out-of-distribution
    tested: int = 0  # rows the extraction test has seen (all, when a profile exists)
    synthetic: int = 0  # rows far from the data or derived from earlier ones
    cusum: float = 0.0  # the extraction test's change statistic (see .extraction)
    scatter: float = 0.0  # the scatter test's CUSUM (see .scatter)
    grid_seen: int = 0  # of the first GRID_BASELINE rows: how many were checked
    grid_off: int = 0  # and how many of those were off the value grid
    blocked_until: dict[str, tuple[float, Action]] = field(default_factory=dict)
    pushed: list[int] = field(default_factory=list)  # slots written since the last save

    def __post_init__(self) -> None:
        self.rows = np.zeros((self.window, self.features), dtype=np.float32)
        self.labels = np.full(self.window, UNKNOWN, dtype=np.int32)
        self.bisecting = np.zeros(self.window, dtype=bool)
        # distances of the last stored row to the window as it was before it was stored
        # (computed by :meth:`neighbours` anyway): the spans |p-a| of the line test
        self.spans: npt.NDArray[np.float32] | None = None
        self._pending: npt.NDArray[np.float32] | None = None

    def off_grid_counts(self, off_grid: bool) -> bool:
        """Does an off-grid row count as evidence for this principal?

        Only once its first :data:`GRID_BASELINE` rows were all on the grid: a client
        whose own encoding is continuous (unrounded sensor values, another scale) sends
        off-grid rows from the start and is not flagged for it; an attacker who starts
        from natural rows and then synthesises (Jacobian steps, perturbations) is."""
        if self.grid_seen < GRID_BASELINE:
            self.grid_seen += 1
            self.grid_off += off_grid
            return False
        return off_grid and self.grid_off == 0

    def neighbours(
        self,
        row: npt.NDArray[np.float64],
        near: float,
        dup: float,
        line: LineTest | None = None,
    ) -> Neighbours:
        size = self.size
        if size == 0:
            return Neighbours(0, 0, frozenset(), float("inf"))
        diff = self.rows[:size] - row.astype(np.float32)
        dist = np.sqrt((diff * diff).sum(axis=1))
        self._pending = dist
        least = dist.min()
        if not least <= dup:  # no exact repeat (the usual case): fewer passes; float32 as below
            is_near = dist < near
            count = int(np.count_nonzero(is_near))
            labels = _known(self.labels[:size][is_near]) if count else frozenset()
            bisects = line is not None and self._bisects(dist, line)
            return Neighbours(count, 0, labels, float(least), bisects, self.walk + bisects)
        is_dup = dist <= dup
        is_near = (dist < near) & ~is_dup
        others = dist[~is_dup]
        return Neighbours(
            distinct_near=int(is_near.sum()),
            duplicates=int(is_dup.sum()),
            near_labels=_known(self.labels[:size][is_near]),
            nearest=float(others.min()) if len(others) else float("inf"),
            walk=self.walk,
        )

    def _bisects(self, dist: npt.NDArray[np.float32], line: LineTest) -> bool:
        """Does the new query lie on the segment between the previous stored query ``p``
        and an earlier one answered differently (a bisection or line search)?

        In a bisection every new point is the midpoint of the current bracket, one end
        of which is always the previous query; a step-size search halves towards the
        previous try. Checking pairs (previous, any) costs one vector pass over the
        window: the spans ``|p-a|`` are the distances computed when ``p`` arrived.
        """
        spans = self.spans
        if spans is None:
            return False
        p = (self.cursor - 1) % self.window
        label = self.labels[p]
        if label == UNKNOWN:
            return False
        n = len(spans)
        d = dist[:n]
        dp = dist[p]
        ok = d + dp <= (1.0 + line.tolerance) * spans  # on the segment, up to tolerance
        if not ok.any():  # the common case: no natural query is
            return False
        # slot p holds the previous query itself (spans[p] is stale once the ring wrapped):
        # its own label excludes it
        labels = self.labels[:n]
        ok &= (labels != label) & (labels != UNKNOWN) & (spans >= line.min_span)
        ok &= np.minimum(d, dp) >= line.min_offset * spans  # strictly inside it
        return bool(ok.any())

    def push(self, row: npt.NDArray[np.float64], bisects: bool = False) -> int:
        """Add a query (label unknown yet); return its slot for :meth:`label`."""
        slot = self.cursor
        self.rows[slot] = row
        self.labels[slot] = UNKNOWN
        self.walk += int(bisects) - int(self.bisecting[slot])
        self.bisecting[slot] = bisects
        self.spans, self._pending = self._pending, None
        self.pushed.append(slot)
        self.cursor = (self.cursor + 1) % self.window
        self.size = min(self.size + 1, self.window)
        return slot

    def label(self, slot: int, value: int) -> None:
        self.labels[slot] = value


def _known(labels: npt.NDArray[np.int32]) -> frozenset[int]:
    """The distinct labels, the unknown one left out."""
    return frozenset(labels.tolist()).difference((UNKNOWN,))


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
