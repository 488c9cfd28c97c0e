"""Donjon's shipped Sigma rules evaluated against its own OCSF events, in process.

A SIEM runs the rules (converted with :mod:`donjon.soc.sigma`) over the events
Donjon sends it; this module answers the same question where the events are,
for the console and the tests: which rules match which events. It reads the
rules with pySigma and evaluates the parsed conditions over the OCSF document
(``donjon.soc.ocsf``) flattened to dotted field names, arrays expanded as a
SIEM's field extraction does. Supported: and / or / not of detections, plain
values (case-insensitive strings, numbers), ``|gte`` ``|gt`` ``|lte`` ``|lt``;
and ``event_count`` correlations (group-by fields, timespan, a count
condition), which fire when a group reaches the count within the timespan and
then start counting again. A rule using anything else is listed as not
evaluated, never silently passed.

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
from sigma.conditions import (
    ConditionAND,
    ConditionFieldEqualsValueExpression,
    ConditionIdentifier,
    ConditionNOT,
    ConditionOR,
)
from sigma.correlations import (
    SigmaCorrelationCondition,
    SigmaCorrelationRule,
    SigmaCorrelationType,
)
from sigma.modifiers import SigmaCompareModifier
from sigma.rule import SigmaDetection, SigmaDetectionItem, SigmaRule
from sigma.types import SigmaCompareExpression, SigmaNumber, SigmaString

RULES_DIR = Path(__file__).with_name("sigma_rules")  # the rules Donjon ships
Fields = Mapping[str, list[Any]]  # dotted field name -> its values


class Unsupported(Exception):
    """A rule uses a Sigma feature this evaluator does not implement."""


def shipped_rules() -> SigmaCollection:
    return SigmaCollection.load_ruleset([RULES_DIR])


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


_COMPARE = {
    "GTE": lambda a, n: a >= n,
    "GT": lambda a, n: a > n,
    "LTE": lambda a, n: a <= n,
    "LT": lambda a, n: a < n,
}


def _item_matches(item: SigmaDetectionItem, fields: Fields) -> bool:
    if not all(issubclass(m, SigmaCompareModifier) for m in item.modifiers):
        raise Unsupported(f"modifiers {[m.__name__ for m in item.modifiers]}")
    found = fields.get(item.field or "", [])
    for expected in item.value:
        for actual in found:
            if isinstance(expected, SigmaCompareExpression):
                number = isinstance(actual, int | float) and not isinstance(actual, bool)
                if number and _COMPARE[expected.op.name](actual, expected.number.number):
                    return True
            elif isinstance(expected, SigmaNumber):
                if actual == expected.number:
                    return True
            elif isinstance(expected, SigmaString):
                if expected.contains_special():
                    raise Unsupported("wildcards")
                if expected.to_plain().lower() == str(actual).lower():
                    return True
            else:
                raise Unsupported(type(expected).__name__)
    return False


def _detection_matches(detection: SigmaDetection, fields: Fields) -> bool:
    return all(
        _detection_matches(i, fields) if isinstance(i, SigmaDetection) else _item_matches(i, fields)
        for i in detection.detection_items
    )


def _eval(node: Any, rule: SigmaRule, fields: Fields) -> bool:
    if isinstance(node, ConditionAND):
        return all(_eval(a, rule, fields) for a in node.args)
    if isinstance(node, ConditionOR):
        return any(_eval(a, rule, fields) for a in node.args)
    if isinstance(node, ConditionNOT):
        return not _eval(node.args[0], rule, fields)
    if isinstance(node, ConditionIdentifier):
        return _detection_matches(rule.detection.detections[node.identifier], fields)
    if isinstance(node, SigmaDetection):
        return _detection_matches(node, fields)
    if isinstance(node, SigmaDetectionItem | ConditionFieldEqualsValueExpression):
        return _item_matches(node, fields)  # type: ignore[arg-type]
    raise Unsupported(f"condition node {type(node).__name__}")


def conditions(rule: SigmaRule) -> list[Any]:
    """The rule's parsed conditions (parse once, evaluate many times)."""
    return [c.parse(False) for c in rule.detection.parsed_condition]


def rule_matches(rule: SigmaRule, fields: Fields, parsed: list[Any] | None = None) -> bool:
    """Whether ``rule``'s condition holds for one flattened event."""
    return any(_eval(node, rule, fields) for node in parsed or conditions(rule))


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
        self._rules: list[tuple[RuleState, SigmaRule, list[Any]]] = []
        self._correlations: list[_Correlation] = []
        names: dict[str, str] = {}
        for rule in collection.rules:
            if isinstance(rule, SigmaRule):
                state = self._state(rule, "rule")
                self._rules.append((state, rule, conditions(rule)))
                if rule.name:
                    names[rule.name] = rule.title
        for rule in collection.rules:
            if isinstance(rule, SigmaCorrelationRule):
                self._add_correlation(rule, names)
        needs = [requirements(rule, parsed) for _, rule, parsed in self._rules]
        self._prefilter = Prefilter.of(needs) if prefilter else None

    def _state(self, rule: SigmaRule | SigmaCorrelationRule, kind: str) -> RuleState:
        level = rule.level.name.lower() if rule.level else ""
        state = RuleState(rule.title, str(rule.id or ""), level, kind, rule.description or "")
        self.states.append(state)
        return state

    def _add_correlation(self, rule: SigmaCorrelationRule, names: Mapping[str, str]) -> None:
        state = self._state(rule, "correlation")
        condition = rule.condition
        if (
            rule.type is not SigmaCorrelationType.EVENT_COUNT
            or not isinstance(condition, SigmaCorrelationCondition)
            or condition.op.name not in ("GTE", "GT")
        ):
            state.error = "only event_count correlations with gte / gt are evaluated here"
            return
        bases = tuple(names.get(str(r.reference), "") for r in rule.rules or ())
        if not all(bases) or rule.timespan is None:
            state.error = "refers to a rule that is not in the collection"
            return
        threshold = condition.count + (1 if condition.op.name == "GT" else 0)
        span = timedelta(seconds=rule.timespan.seconds)
        self._correlations.append(
            _Correlation(state, bases, tuple(rule.group_by or ()), span, threshold)
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
            state, rule, parsed = self._rules[index]
            if state.error:
                continue
            try:
                hit = rule_matches(rule, fields, parsed)
            except Unsupported as e:
                state.error = f"not evaluated here: {e}"
                continue
            if hit:
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
