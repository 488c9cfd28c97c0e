"""Donjon's shipped Sigma rules evaluated against its own OCSF events, in process.

A SIEM runs the rules (converted with :mod:`donjon.soc.sigma`) over the events
Donjon sends it; this module answers the same question where the events are,
for the console and the tests: which rules match which events. It reads the
rules with pySigma, compiles each one (:mod:`donjon.soc.sigma_compile`: the
Sigma specification's and / or / not, lists of maps, ``1 of`` / ``all of``,
and the modifiers it lists there) and evaluates it over the OCSF document
(``donjon.soc.ocsf``) flattened to dotted field names, arrays expanded as a
SIEM's field extraction does; and ``event_count`` correlations (group-by
fields, timespan, a count condition), which fire when a group reaches the
count within the timespan and then start counting again. A rule using
anything else is listed as not evaluated, with the construct named, from the
start: never silently passed, never a crash.

Needs ``pip install 'donjon[sigma]'``.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

from sigma.collection import SigmaCollection
from sigma.correlations import (
    SigmaCorrelationCondition,
    SigmaCorrelationRule,
    SigmaCorrelationType,
)
from sigma.rule import SigmaRule

from donjon.soc.sigma_compile import Node, Unsupported, compile_rule

__all__ = ["RULES_DIR", "RuleState", "SigmaTally", "Unsupported", "flatten", "rule_matches"]

RULES_DIR = Path(__file__).with_name("sigma_rules")  # the rules Donjon ships
Fields = Mapping[str, list[Any]]  # dotted field name -> its values


def shipped_rules() -> SigmaCollection:
    """The rules Donjon ships; a file that does not load is kept as a rule with errors
    (listed as not evaluated by :class:`SigmaTally`), not raised."""
    return SigmaCollection.load_ruleset([RULES_DIR], collect_errors=True)


def flatten(doc: Any, prefix: str = "") -> dict[str, list[Any]]:
    """``a.b.c`` -> every value found there (arrays flatten like a SIEM's extraction)."""
    out: dict[str, list[Any]] = {}
    if isinstance(doc, dict):
        for key, value in doc.items():
            for k, v in flatten(value, f"{prefix}{key}.").items():
                out.setdefault(k, []).extend(v)
    elif isinstance(doc, list):
        for item in doc:
            for k, v in flatten(item, prefix).items():
                out.setdefault(k, []).extend(v)
    else:
        out[prefix[:-1]] = [doc]
    return out


def rule_matches(rule: SigmaRule, fields: Fields, compiled: Node | None = None) -> bool:
    """Whether ``rule``'s condition holds for one flattened event (:class:`Unsupported`
    when the rule uses a construct the evaluator does not implement)."""
    return (compiled or compile_rule(rule)).matches(fields)


@dataclass
class RuleState:
    """One rule and what it matched so far."""

    title: str
    rule_id: str
    level: str
    kind: str  # "rule" or "correlation"
    description: str
    hits: int = 0
    last_seq: int | None = None
    last_time: datetime | None = None
    error: str = ""  # why it is not evaluated


@dataclass
class _Correlation:
    state: RuleState
    bases: tuple[str, ...]  # titles of the rules it counts
    group_by: tuple[str, ...]
    span: timedelta
    threshold: int
    windows: dict[tuple[str, ...], deque[datetime]] = field(default_factory=dict)

    def feed(self, fields: Fields, seq: int, when: datetime) -> None:
        group = tuple(str((fields.get(g) or [""])[0]) for g in self.group_by)
        times = self.windows.setdefault(group, deque())
        times.append(when)
        while times and when - times[0] > self.span:
            times.popleft()
        if len(times) >= self.threshold:
            times.clear()  # one firing per count reached; the next one counts afresh
            self.state.hits += 1
            self.state.last_seq, self.state.last_time = seq, when


class SigmaTally:
    """Which rules of a collection fired over a stream of OCSF events, fed in order.

    With ``prefilter`` (the default) each event meets only the rules that can
    match it (:mod:`donjon.soc.sigma_prefilter`: the ``class_uid`` and other
    constants a rule requires) and is read field by field, never flattened
    whole; without it every rule is evaluated on the flattened event. Both
    give the same matches.
    """

    def __init__(self, collection: SigmaCollection, *, prefilter: bool = True) -> None:
        from donjon.soc.sigma_prefilter import Prefilter, requirements

        self.states: list[RuleState] = []
        self._rules: list[tuple[RuleState, Node]] = []  # the rules that compiled
        self._correlations: list[_Correlation] = []
        names: dict[str, RuleState] = {}
        for rule in collection.rules:
            if isinstance(rule, SigmaRule):
                state = self._state(rule, "rule")
                try:
                    self._rules.append((state, compile_rule(rule)))
                except Unsupported as e:  # named with its construct, from the start
                    state.error = str(e)
                for name in (rule.name, rule.id):
                    if name:
                        names[str(name)] = state
        for rule in collection.rules:
            if isinstance(rule, SigmaCorrelationRule):
                self._add_correlation(rule, names)
        needs = [requirements(compiled) for _, compiled in self._rules]
        self._prefilter = Prefilter.of(needs) if prefilter else None

    def _state(self, rule: SigmaRule | SigmaCorrelationRule, kind: str) -> RuleState:
        level = rule.level.name.lower() if rule.level else ""
        state = RuleState(rule.title, str(rule.id or ""), level, kind, rule.description or "")
        self.states.append(state)
        return state

    def _add_correlation(self, rule: SigmaCorrelationRule, names: Mapping[str, RuleState]) -> None:
        state = self._state(rule, "correlation")
        condition = rule.condition
        if rule.errors:
            state.error = f"not evaluated here: {rule.title!r} did not load: {rule.errors[0]}"
            return
        if (
            rule.type is not SigmaCorrelationType.EVENT_COUNT
            or not isinstance(condition, SigmaCorrelationCondition)
            or condition.op.name not in ("GTE", "GT")
        ):
            state.error = "not evaluated here: only event_count correlations with gte / gt are"
            return
        bases = [names.get(str(r.reference)) for r in rule.rules or ()]
        if not bases or None in bases or rule.timespan is None:
            state.error = "not evaluated here: it counts a rule that is not in the collection"
            return
        broken = [b.title for b in bases if b is not None and b.error]
        if broken:
            state.error = f"not evaluated here: it counts {broken[0]!r}, which is not evaluated"
            return
        threshold = condition.count + (1 if condition.op.name == "GT" else 0)
        span = timedelta(seconds=rule.timespan.seconds)
        titles = tuple(b.title for b in bases if b is not None)
        self._correlations.append(
            _Correlation(state, titles, tuple(rule.group_by or ()), span, threshold)
        )

    def feed(self, seq: int, when: datetime, ocsf: Mapping[str, Any]) -> list[str]:
        """Evaluate every rule on one event; the titles of the rules it matched."""
        from donjon.soc.sigma_prefilter import DocFields

        fields: Fields
        if self._prefilter is None:
            fields, indices = flatten(dict(ocsf)), range(len(self._rules))
        else:
            fields = DocFields(ocsf)
            indices = self._prefilter.candidates(fields)  # type: ignore[assignment]
        matched: list[str] = []
        for index in indices:
            state, compiled = self._rules[index]
            if compiled.matches(fields):
                state.hits += 1
                state.last_seq, state.last_time = seq, when
                matched.append(state.title)
        for correlation in self._correlations:
            if any(base in matched for base in correlation.bases):
                correlation.feed(fields, seq, when)
        return matched

    def feed_all(self, events: Iterable[tuple[int, datetime, Mapping[str, Any]]]) -> None:
        for seq, when, ocsf in events:
            self.feed(seq, when, ocsf)
