"""Did a suspect model learn the watermarked answers? One test per principal.

For each principal's recorded inputs the suspect's answer is a *hit* when it is
the keyed label: the answer the gateway gave for a mark, the answer a mark would
have had for a look-alike (a control, answered truthfully). A model that never
saw the watermarked answers gives the keyed label on marks no more often than on
look-alikes: both are keyed, pseudo-random wrong classes of the same kind of
input. Two tests of that null hypothesis:

* the exact binomial tail (``scipy.stats.binomtest``, one-sided) of the marks
  reproduced, under the null rate: the hit rate on look-alikes (Laplace-smoothed,
  ``(hits + 1) / (controls + 2)``, so no look-alike hit does not mean a rate of 0),
  or the operator's ``null_rate`` (measured on independent models) if higher;
* the exact conditional test (Fisher's, one-sided: the hypergeometric tail of the
  marks' share of all hits), which needs no estimated rate.

When the suspect answers with scores, a third, the score test (:mod:`.ranks`):
the exact tail of the sum of the keyed class's ranks among the wrong classes on
the marks, which needs no rate either and sees marks a surrogate learnt without
making them its top answer.

Marks carried to near-copies (:mod:`.families`) share their root's keyed class
and the suspect's answers to them are correlated: a *family* is one piece of
evidence. The label tests count its root alone (a single input the key drew, like
a look-alike); the score test ranks the keyed class in the suspect's scores
summed over the family's members -- under the null the key is independent of
those scores whatever their correlation, so the rank stays uniform and exact.

A principal is identified when both label tests are below ``alpha``, or, with
scores, when the label tests or the score test are below ``alpha / 2`` (two
chances to identify: Bonferroni keeps the chance of a false identification
under ``alpha``).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from donjon.gateway.watermark.ranks import keyed_rank, rank_sum_tail
from donjon.gateway.watermark.records import Label, MarkRecord
from donjon.gateway.watermark.suspect import Answer


@dataclass(frozen=True)
class Evidence:
    record: MarkRecord
    answered: Label | None  # the suspect's answer (None: unreadable)
    hit: bool
    # the keyed class's rank among the wrong ones (scores only; a family's on its root)
    rank: int | None = None


@dataclass(frozen=True)
class PrincipalVerdict:
    principal: str
    marks: int
    reproduced: int
    controls: int
    control_hits: int
    null_rate: float
    p_binomial: float
    p_exact: float | None  # None without look-alikes
    identified: bool
    evidence: tuple[Evidence, ...]
    ranked: int = 0  # marks whose keyed class the suspect's scores rank
    rank_sum: int = 0
    p_rank: float | None = None  # the score test (None without scores)
    carried: int = 0  # marks carried to near-copies (in the ``marks`` families)

    @property
    def p_labels(self) -> float:
        """The larger (weaker) of the label tests' p-values."""
        return max(self.p_binomial, self.p_exact if self.p_exact is not None else 0.0)

    @property
    def p_value(self) -> float:
        """The evidence's p-value: the label tests', or with scores twice the smaller of the
        label tests' and the score test's (Bonferroni over the two)."""
        if self.p_rank is None:
            return self.p_labels
        return min(1.0, 2 * min(self.p_labels, self.p_rank))


def same_label(a: Label | None, b: Label, names: Sequence[str] | None) -> bool:
    if a is None:
        return False
    return _named(a, names) == _named(b, names)


def _named(label: Label, names: Sequence[str] | None) -> Label:
    if names is not None and isinstance(label, int) and 0 <= label < len(names):
        return names[label]
    return label


def _rank(record: MarkRecord, answers: Sequence[Answer], names: Sequence[str] | None) -> int | None:
    """The rank of the root ``record``'s keyed class in the scores summed over ``answers``
    (its family's); None without scores."""
    scores: dict[Label, float] = {}
    scored = False
    for answer in answers:
        if answer.scores is None:
            continue
        scored = True
        for label, score in answer.scores.items():
            named = _named(label, names)
            scores[named] = scores.get(named, 0.0) + score
    if not scored:
        return None
    truth, keyed = _named(record.truth, names), _named(record.keyed, names)
    return keyed_rank(scores, truth, keyed, record.classes)


def _families(marks: Sequence[MarkRecord]) -> dict[str, list[MarkRecord]]:
    """Marks by family, the root first."""
    found: dict[str, list[MarkRecord]] = {}
    for record in marks:
        found.setdefault(record.root, []).append(record)
    for root, members in found.items():
        members.sort(key=lambda r: (r.address != root, r.address))
    return found


def judge(
    records: Sequence[MarkRecord],
    answers: Mapping[str, Answer],
    *,
    alpha: float = 1e-6,
    null_rate: float | None = None,
    names: Sequence[str] | None = None,
) -> list[PrincipalVerdict]:
    """One verdict per principal; ``answers`` maps record addresses to the suspect's answers."""
    from scipy.stats import binomtest, hypergeom

    by_principal: dict[str, list[MarkRecord]] = {}
    for record in records:
        by_principal.setdefault(record.principal, []).append(record)
    verdicts = []
    for principal in sorted(by_principal):
        evidence = []
        marks: list[Evidence] = []  # one per family: its root's
        for members in _families([r for r in by_principal[principal] if r.kind == "mark"]).values():
            given = [answers.get(r.address, Answer(None)) for r in members]
            # a family whose root was not recorded (the record was full) is no evidence:
            # its keyed class was drawn against the root's answer
            rooted = members[0].family == ""
            for index, (record, answer) in enumerate(zip(members, given, strict=True)):
                hit = same_label(answer.label, record.keyed, names)
                root = rooted and index == 0
                rank = _rank(record, given, names) if root else None
                evidence.append(Evidence(record, answer.label, hit, rank))
                if root:
                    marks.append(evidence[-1])
        controls = []
        for record in by_principal[principal]:
            if record.kind == "control":
                answer = answers.get(record.address, Answer(None))
                controls.append(
                    Evidence(record, answer.label, same_label(answer.label, record.keyed, names))
                )
        evidence += controls
        reproduced = sum(e.hit for e in marks)
        control_hits = sum(e.hit for e in controls)
        rate = (control_hits + 1) / (len(controls) + 2)
        if null_rate is not None:
            rate = max(rate, null_rate)
        p_binomial = 1.0
        if marks:
            p_binomial = float(
                binomtest(reproduced, len(marks), rate, alternative="greater").pvalue
            )
        p_exact = None
        if controls and marks:
            total, hits = len(marks) + len(controls), reproduced + control_hits
            p_exact = float(hypergeom.sf(reproduced - 1, total, hits, len(marks)))
        ranked = [e for e in marks if e.rank is not None]
        ranks = [e.rank for e in ranked if e.rank is not None]
        p_rank = None
        if ranked:
            p_rank = rank_sum_tail(ranks, [e.record.classes - 1 for e in ranked])
        # with scores there are two chances to identify: each gets half of alpha
        level = alpha / 2 if p_rank is not None else alpha
        # without look-alikes only a null rate measured on independent models stands
        exact_agrees = p_exact < level if p_exact is not None else null_rate is not None
        by_labels = bool(marks) and p_binomial < level and exact_agrees
        identified = by_labels or (p_rank is not None and p_rank < level)
        verdicts.append(
            PrincipalVerdict(
                principal=principal,
                marks=len(marks),
                reproduced=reproduced,
                controls=len(controls),
                control_hits=control_hits,
                null_rate=rate,
                p_binomial=p_binomial,
                p_exact=p_exact,
                identified=identified,
                evidence=tuple(evidence),
                ranked=len(ranks),
                rank_sum=sum(ranks),
                p_rank=p_rank,
                carried=sum(e.record.family != "" for e in evidence),
            )
        )
    return verdicts
