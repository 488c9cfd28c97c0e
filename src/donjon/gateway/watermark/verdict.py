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

A principal is identified when every test available is below ``alpha``.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from donjon.gateway.watermark.records import Label, MarkRecord


@dataclass(frozen=True)
class Evidence:
    record: MarkRecord
    answered: Label | None  # the suspect's answer (None: unreadable)
    hit: bool


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

    @property
    def p_value(self) -> float:
        """The larger (weaker) of the tests' p-values."""
        return max(self.p_binomial, self.p_exact if self.p_exact is not None else 0.0)


def same_label(a: Label | None, b: Label, names: Sequence[str] | None) -> bool:
    if a is None:
        return False
    return _named(a, names) == _named(b, names)


def _named(label: Label, names: Sequence[str] | None) -> Label:
    if names is not None and isinstance(label, int) and 0 <= label < len(names):
        return names[label]
    return label


def judge(
    records: Sequence[MarkRecord],
    answers: Mapping[str, Label | None],
    *,
    alpha: float = 1e-6,
    null_rate: float | None = None,
    names: Sequence[str] | None = None,
) -> list[PrincipalVerdict]:
    """One verdict per principal; ``answers`` maps record addresses to the suspect's answers."""
    from scipy.stats import binomtest, hypergeom

    by_principal: dict[str, list[Evidence]] = {}
    for record in records:
        answered = answers.get(record.address)
        hit = same_label(answered, record.keyed, names)
        by_principal.setdefault(record.principal, []).append(Evidence(record, answered, hit))
    verdicts = []
    for principal in sorted(by_principal):
        evidence = by_principal[principal]
        marks = [e for e in evidence if e.record.kind == "mark"]
        controls = [e for e in evidence if e.record.kind == "control"]
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
        # without look-alikes only a null rate measured on independent models stands
        exact_agrees = p_exact < alpha if p_exact is not None else null_rate is not None
        identified = bool(marks) and p_binomial < alpha and exact_agrees
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
            )
        )
    return verdicts
