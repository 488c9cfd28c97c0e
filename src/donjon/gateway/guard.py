"""One guarded model at run time: its contract, profile, detectors and state."""

from __future__ import annotations

import math
from contextlib import AbstractContextManager, nullcontext
from dataclasses import dataclass, field

import numpy as np
import numpy.typing as npt

from donjon.core.identity import Principal
from donjon.gateway.detectors import Signal
from donjon.gateway.detectors.consistency import ConsistencyConfig, ConsistencyDetector
from donjon.gateway.detectors.evasion import EvasionConfig, EvasionDetector
from donjon.gateway.detectors.extraction import (
    ExtractionConfig,
    ExtractionDetector,
    binomial_tail,
)
from donjon.gateway.detectors.membership import MembershipConfig, MembershipDetector
from donjon.gateway.detectors.ood import OodConfig, OodDetector
from donjon.gateway.detectors.scatter import ScatterConfig, ScatterDetector
from donjon.gateway.detectors.state import PrincipalState, StateTable
from donjon.gateway.detectors.stores import MemoryStates, StateStore
from donjon.gateway.hardening import Hardening
from donjon.gateway.outputs import ModelOutput, OutputKind, ResponseReader
from donjon.gateway.profile import ReferenceProfile
from donjon.gateway.settings import ModelSettings, ScatterSettings
from donjon.gateway.validation import InputContract
from donjon.gateway.watermark.marker import Watermarker

DUPLICATE = 1e-4  # scaled distance under which two queries are the same record
SUSPECT_ALPHA = 1e-3  # the out-of-distribution share test behind ``suspects``


@dataclass
class Inspection:
    """What the detectors found on one request's rows."""

    signals: list[Signal] = field(default_factory=list)
    slots: list[int] = field(default_factory=list)  # window slot per row, -1 if not stored
    ood_scores: list[float] = field(default_factory=list)
    suspected: bool = False  # the detectors flag the principal (see ModelGuard.suspects)


class ModelGuard:
    """Everything the pipeline needs to guard one model."""

    def __init__(
        self,
        settings: ModelSettings,
        *,
        profile: ReferenceProfile | None,
        window: int,
        max_principals: int,
        states: StateStore | None = None,
    ) -> None:
        s = settings
        self.name = s.name
        self.routes = tuple(s.routes)
        self._exact = frozenset(self.routes)
        self._prefixes = tuple(r.rstrip("/") + "/" for r in self.routes)
        self.api = s.api
        self.allow = frozenset(s.allow)
        features = s.features or (profile.features if profile else None)
        self.contract = InputContract(
            features=features,
            min_value=s.min_value,
            max_value=s.max_value,
            integer=s.integer,
            max_rows=s.max_rows,
            max_body_bytes=s.max_body_bytes,
        )
        self.hardening = Hardening(s.hardening.top_k, s.hardening.decimals, s.hardening.label_only)
        self.reader = ResponseReader(s.name, s.output, s.output_kind)
        self.profile = profile
        d = s.detectors
        self.ood = (
            OodDetector(
                profile,
                OodConfig(
                    d.ood.action,
                    d.ood.quantile,
                    d.ood.check_grid,
                    d.ood.range_rate,
                    d.ood.range_margin,
                    d.ood.split_rate,
                    d.ood.distance_action,
                ),
            )
            if profile and d.ood.enabled
            else None
        )
        self.evasion = (
            EvasionDetector(
                EvasionConfig(
                    d.evasion.action,
                    d.evasion.near_factor,
                    d.evasion.min_near,
                    d.evasion.min_labels,
                    d.evasion.min_walk,
                    d.evasion.walk_tolerance,
                    d.evasion.walk_offset,
                )
            )
            if profile and d.evasion.enabled
            else None
        )
        self.membership = (
            MembershipDetector(MembershipConfig(d.membership.action, d.membership.min_near))
            if profile and d.membership.enabled
            else None
        )
        e = d.extraction
        self.extraction = (
            ExtractionDetector(
                ExtractionConfig(
                    e.action,
                    e.null_rate,
                    e.alpha,
                    e.min_queries,
                    e.budget,
                    e.budget_action,
                    e.far_score,
                    e.derived_quantile,
                    e.shift_rate or None,  # 0: off (the settings refuse 0 < shift <= null)
                )
            )
            if e.enabled
            else None
        )
        c = d.consistency
        self.consistency = (
            ConsistencyDetector(
                profile.consistency, profile.alignment, ConsistencyConfig(c.action, c.quantile)
            )
            if profile is not None and profile.consistency is not None and c.enabled
            else None
        )
        # the share of natural queries the OOD detector flags, at most (each test's own rate)
        self.ood_null = d.ood.natural_rate
        self.scatter = _scatter(profile, d.scatter, d.ood.quantile) if d.scatter.enabled else None
        self.near = (
            d.evasion.near_factor * profile.nn_quantile(0.01) if profile is not None else 0.0
        )
        self.derived = profile.nn_quantile(e.derived_quantile) if profile is not None else 0.0
        self.line = (
            self.evasion.line_test(self.near, profile.sample)
            if self.evasion and profile is not None
            else None
        )
        self.features = profile.features if profile else 1
        self.states: StateStore = states or MemoryStates(
            window=window, features=self.features, max_principals=max_principals
        )
        self.watermark: Watermarker | None = None  # set by build_pipeline when configured

    @property
    def table(self) -> StateTable:
        """The in-process state table (only with the in-process store)."""
        if not isinstance(self.states, MemoryStates):
            raise TypeError("this guard keeps its detector state outside the process")
        return self.states.table

    def matches(self, path: str) -> bool:
        return path in self._exact or path.startswith(self._prefixes)

    def authorised(self, principal: Principal, *, delegated: bool = False) -> bool:
        """Deny by default: the model's ``allow`` list names ids, ``group:<g>`` or ``*``.

        ``delegated``: a policy (the vault's) decides after this check, so an empty
        list leaves the decision to it; a non-empty list still narrows it.
        """
        if delegated and not self.allow:
            return True
        if "*" in self.allow or principal.id in self.allow:
            return True
        return any(f"group:{g}" in self.allow for g in principal.groups)

    def inspect(
        self,
        principal: Principal,
        rows: npt.NDArray[np.float64],
        state: PrincipalState | None = None,
    ) -> Inspection:
        """Run the detectors on each row in order, updating the principal's state.

        ``state``: the state the pipeline opened; without it, the in-process one.
        """
        result = Inspection()
        profile = self.profile
        with self._hold(principal, state) as state:
            if profile is None:
                state.queries += len(rows)
                result.slots = [-1] * len(rows)
                if self.extraction is not None:
                    result.signals += self.extraction.signals(state)
                return result
            scaled = profile.scaled(rows)
            n = len(rows)
            if self.ood is not None:
                # plain lists: one conversion each, not one numpy scalar per row
                distance, off_grid, outside = self.ood.scores(rows, scaled)
                scores, split = distance.tolist(), self.ood.split(rows).tolist()
                off_grids, outsides = off_grid.tolist(), outside.tolist()
            else:
                scores, off_grids, outsides, split = [0.0] * n, [False] * n, [0] * n, [0] * n
            for i, row in enumerate(scaled):
                state.queries += 1
                earlier = state.size
                score = scores[i]
                near = state.neighbours(row, self.near, DUPLICATE, self.line)
                if self.scatter is not None and near.duplicates == 0:
                    step = self.scatter.evidence(near.nearest, earlier, score)
                    if scattered := self.scatter.observe(state, step):
                        result.signals.append(_at(scattered, state.queries))
                found = self.evasion.signal(near) if self.evasion else None
                if found is None and self.membership is not None:
                    found = self.membership.signal(near)
                if found is not None:
                    result.signals.append(_at(found, state.queries))
                result.slots.append(state.push(row, near.bisects) if near.duplicates == 0 else -1)
                result.ood_scores.append(score)
                off = state.off_grid_counts(off_grids[i])
                if self.ood is not None and (
                    ood := self.ood.signal(score, off, outsides[i], split[i])
                ):
                    state.ood += 1
                    result.signals.append(_at(ood, state.queries))
                if self.ood is not None and self.extraction is not None:
                    # off the grid *and* past the per-input threshold: neither the data's
                    # encoding nor near the data, whatever the principal's own encoding
                    strange = off or (off_grids[i] and score > 1.0)
                    self.extraction.observe(
                        state,
                        self.extraction.synthetic(score, strange, near.nearest, self.derived),
                    )
                if self.extraction is not None and (flagged := self.extraction.signals(state)):
                    result.signals += [_at(s, state.queries) for s in flagged]
            if self.watermark is not None:
                result.suspected = self.suspects(state, result.signals)
        return result

    def check_answer(self, rows: npt.NDArray[np.float64], output: ModelOutput) -> list[Signal]:
        """The answer-consistency signals of an answer (one label per row)."""
        if self.consistency is None:
            return []
        if any(p.kind is not OutputKind.LABELS for p in output.parts):
            names = self.consistency.model.classes  # score columns: the classes in order
            classes = [names[i] if 0 <= i < len(names) else f"#{i}" for i in output.labels]
        else:
            classes = [self.reader.label_name(int(v)) for v in output.labels]
        return self.consistency.signals(rows, classes)

    def suspects(self, state: PrincipalState, signals: list[Signal]) -> bool:
        """Do the detectors flag this principal (the watermark's ``suspect_rate``)?

        Yes when a detector other than the per-query OOD test signals on this request,
        or when the share of the principal's queries the OOD detector flagged rejects
        "at most the natural share" (:attr:`ood_null`, from the detector's own
        calibrated rates) with the exact binomial tail below ``SUSPECT_ALPHA``.
        """
        if any(s.detector != "ood" for s in signals):
            return True
        n, k = state.queries, state.ood
        if self.ood is None or k <= self.ood_null * n:
            return False
        return binomial_tail(k, n, self.ood_null) < SUSPECT_ALPHA

    def _hold(
        self, principal: Principal, state: PrincipalState | None
    ) -> AbstractContextManager[PrincipalState]:
        if state is not None:
            return nullcontext(state)
        if not isinstance(self.states, MemoryStates):
            raise TypeError("this guard's state is in Redis: the pipeline opens it")
        return self.states.session(principal.id)


def _scatter(
    profile: ReferenceProfile | None, s: ScatterSettings, ood_quantile: float
) -> ScatterDetector | None:
    """The scatter test, when the profile has a spacing null (profiles before it do not);
    its gate in OOD-score units (the OOD detector's scores are k-NN distances over the
    ``ood_quantile`` threshold)."""
    if profile is None or profile.spacing is None:
        return None
    config = ScatterConfig(s.action, s.alpha, s.min_queries, s.alternative, s.p_floor, s.gate)
    gate = profile.knn_threshold(s.gate) / profile.knn_threshold(ood_quantile)
    return ScatterDetector(profile.spacing, gate, config)


def _at(signal: Signal, query_index: int) -> Signal:
    evidence = {**signal.evidence, "query_index": query_index}
    score = signal.score if math.isfinite(signal.score) else 0.0
    return Signal(
        signal.detector,
        signal.rule,
        signal.action,
        score,
        signal.threshold,
        signal.message,
        evidence,
    )
