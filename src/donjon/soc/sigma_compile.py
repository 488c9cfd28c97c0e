"""A Sigma rule compiled to a tree of tests that one flattened event answers.

The tree is built from pySigma's *post-processed* condition, where the Sigma
specification's linking is already explicit: the keys of one map are ANDed, the
maps of a list are ORed, the values of one field are ORed (ANDed under
``|all``), ``1 of`` / ``all of`` a pattern or ``them`` are expanded, and
``|neq`` is a negation. Each leaf tests one field of the event, whose values
are a list (arrays flatten like a SIEM's field extraction): the leaf holds when
any value passes, and ``not`` negates that, so a missing field fails every
value test and passes its negation.

Values, as the specification and the modifier appendix define them:

* strings match the whole value, case-insensitively (``|cased``: exactly), with
  ``*`` and ``?`` wildcards (``|contains``, ``|startswith``, ``|endswith`` add
  them; ``|base64``, ``|base64offset``, ``|utf16*``, ``|wide`` and ``|windash``
  are string transformations pySigma applies first); numbers and booleans in
  the event are compared as their text;
* a number equals a number of the event, or a text that spells it;
  ``|gt`` ``|gte`` ``|lt`` ``|lte`` compare numbers of the event (not texts);
* ``|re`` (with ``|i`` ``|m`` ``|s``) searches the value's text, case-sensitively
  unless ``|i``; ``|cidr`` holds for an IP address (IPv4 or IPv6) in the network;
* ``null`` holds when the field is missing or null; ``|exists: true`` when the
  event has the field (even null), ``false`` when it has not;
* ``true`` / ``false`` equal a boolean of the event or its text;
* ``|fieldref`` (with ``|startswith`` / ``|endswith``) compares with the values
  of another field of the same event, case-insensitively.

Anything else -- keyword search (a value bound to no field), placeholders
(``|expand``), time parts (``|minute``...), a condition that does not parse or
names a detection that is not there -- raises :class:`Unsupported` when the rule
is compiled, naming the rule and the construct: such a rule is listed as not
evaluated, never run as a rule that silently matches nothing.
"""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from sigma.conditions import (
    ConditionAND,
    ConditionFieldEqualsValueExpression,
    ConditionNOT,
    ConditionOR,
    ConditionValueExpression,
)
from sigma.exceptions import SigmaError
from sigma.rule import SigmaRule
from sigma.types import (
    Placeholder,
    SigmaBool,
    SigmaCasedString,
    SigmaCIDRExpression,
    SigmaCompareExpression,
    SigmaExists,
    SigmaExpansion,
    SigmaFieldReference,
    SigmaNull,
    SigmaNumber,
    SigmaRegularExpression,
    SigmaRegularExpressionFlag,
    SigmaString,
    SigmaTimestampPart,
    SpecialChars,
)

from donjon.errors import ExportError

Fields = Mapping[str, Sequence[Any]]  # dotted field name -> its values
Key = tuple[str, Any]  # ("s", lowercased text) or ("n", number): how a value can match
ValueTest = Callable[[Any], bool]


class Unsupported(ExportError):
    """A Sigma rule uses a construct this evaluator does not implement (or is broken)."""


def keys_of(value: Any) -> list[Key]:
    """The keys an event's value matches under: as text, and as a number."""
    keys: list[Key] = [("s", _text(value).lower())]
    if _is_number(value) and value == value:  # NaN equals nothing
        keys.append(("n", value))
    return keys


def _is_number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


def _text(value: Any) -> str:
    """An event's value as text, as a SIEM indexes it (booleans in lower case)."""
    if isinstance(value, bool):
        return "true" if value else "false"
    return value if isinstance(value, str) else str(value)


# -- the compiled tree ---------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class AllOf:
    parts: tuple[Node, ...]

    def matches(self, fields: Fields) -> bool:
        return all(p.matches(fields) for p in self.parts)


@dataclass(frozen=True, slots=True)
class AnyOf:
    parts: tuple[Node, ...]

    def matches(self, fields: Fields) -> bool:
        return any(p.matches(fields) for p in self.parts)


@dataclass(frozen=True, slots=True)
class NotOf:
    part: Node

    def matches(self, fields: Fields) -> bool:
        return not self.part.matches(fields)


@dataclass(frozen=True, slots=True)
class FieldTest:
    """Some value of ``field`` passes ``test``. ``keys``: for a plain equality, the
    keys (:func:`keys_of`) a passing value has one of; None for any other test."""

    field: str
    test: ValueTest
    keys: frozenset[Key] | None
    what: str  # for error messages and debugging: the Sigma value

    def matches(self, fields: Fields) -> bool:
        test = self.test
        return any(test(v) for v in fields.get(self.field, ()))


@dataclass(frozen=True, slots=True)
class NullTest:
    """``field: null``: the field is missing, or one of its values is null."""

    field: str

    def matches(self, fields: Fields) -> bool:
        values = fields.get(self.field, ())
        return not values or any(v is None for v in values)


@dataclass(frozen=True, slots=True)
class ExistsTest:
    field: str
    exists: bool

    def matches(self, fields: Fields) -> bool:
        return bool(fields.get(self.field, ())) is self.exists


@dataclass(frozen=True, slots=True)
class FieldRefTest:
    """Some value of ``field`` equals (starts, ends with) some value of ``other``."""

    field: str
    other: str
    mode: str  # "equals", "startswith" or "endswith"

    def matches(self, fields: Fields) -> bool:
        mine = [_text(v).lower() for v in fields.get(self.field, ()) if v is not None]
        theirs = [_text(v).lower() for v in fields.get(self.other, ()) if v is not None]
        if self.mode == "startswith":
            return any(a.startswith(b) for a in mine for b in theirs)
        if self.mode == "endswith":
            return any(a.endswith(b) for a in mine for b in theirs)
        return any(a == b for a in mine for b in theirs)


Node = AllOf | AnyOf | NotOf | FieldTest | NullTest | ExistsTest | FieldRefTest


# -- compiling -----------------------------------------------------------------------


def _refused(where: str, what: str) -> Unsupported:
    return Unsupported(f"{where} is not evaluated here: {what}")


def compile_rule(rule: SigmaRule) -> Node:
    """The rule's conditions (a list of them is ORed) as one tree; :class:`Unsupported`
    names the rule and the construct it cannot evaluate."""
    where = f"Sigma rule {rule.title!r}"
    if rule.errors:
        raise _refused(where, f"it did not load ({rule.errors[0]})")
    parts = []
    for condition in rule.detection.parsed_condition:
        try:
            tree = condition.parse(True)
        except SigmaError as e:
            raise _refused(where, f"its condition {condition.condition!r} ({e})") from e
        if tree is None:
            raise _refused(where, f"its condition {condition.condition!r} selects nothing")
        parts.append(_node(tree, where))
    if not parts:
        raise _refused(where, "it has no condition")
    return parts[0] if len(parts) == 1 else AnyOf(tuple(parts))


def _node(item: Any, where: str) -> Node:
    if isinstance(item, ConditionAND):
        return AllOf(tuple(_node(a, where) for a in item.args))
    if isinstance(item, ConditionOR):
        return AnyOf(tuple(_node(a, where) for a in item.args))
    if isinstance(item, ConditionNOT):
        return NotOf(_node(item.args[0], where))
    if isinstance(item, ConditionFieldEqualsValueExpression):
        return _leaf(item.field, item.value, where)
    if isinstance(item, ConditionValueExpression):
        raise _refused(where, f"keyword search (the value {item.value} bound to no field)")
    raise _refused(where, f"the condition element {type(item).__name__}")


def _leaf(field: str, value: Any, where: str) -> Node:
    if isinstance(value, SigmaExpansion):  # |windash, |base64offset: the variants are ORed
        return AnyOf(tuple(_leaf(field, v, where) for v in value.values))
    if isinstance(value, SigmaNull):
        return NullTest(field)
    if isinstance(value, SigmaExists):
        return ExistsTest(field, value.exists)
    if isinstance(value, SigmaFieldReference):
        mode = "startswith" if value.starts_with else "endswith" if value.ends_with else "equals"
        if value.starts_with and value.ends_with:
            raise _refused(where, f"{field}|fieldref|contains")
        return FieldRefTest(field, value.field, mode)
    test, keys = _value_test(field, value, where)
    return FieldTest(field, test, keys, str(value))


def _value_test(field: str, value: Any, where: str) -> tuple[ValueTest, frozenset[Key] | None]:
    if isinstance(value, SigmaString):  # SigmaCasedString included
        return _string_test(field, value, isinstance(value, SigmaCasedString), where)
    if isinstance(value, SigmaTimestampPart):  # a SigmaNumber: checked first
        raise _refused(where, f"{field}|{value.timestamp_part.name.lower()} (a time part)")
    if isinstance(value, SigmaNumber):
        return _number_test(value.number)
    if isinstance(value, SigmaBool):
        return _bool_test(value.boolean)
    if isinstance(value, SigmaCompareExpression):
        return _compare_test(field, value, where), None
    if isinstance(value, SigmaRegularExpression):
        return _regex_test(field, value, where), None
    if isinstance(value, SigmaCIDRExpression):
        return _cidr_test(value.network), None
    raise _refused(where, f"{field} with a {type(value).__name__} value")


def _string_test(
    field: str, value: SigmaString, cased: bool, where: str
) -> tuple[ValueTest, frozenset[Key] | None]:
    pattern = []
    wild = False
    for part in value.s:
        if isinstance(part, str):
            pattern.append(re.escape(part if cased else part.lower()))
        elif part is SpecialChars.WILDCARD_MULTI:
            pattern.append(".*")
            wild = True
        elif part is SpecialChars.WILDCARD_SINGLE:
            pattern.append(".")
            wild = True
        elif isinstance(part, Placeholder):
            raise _refused(where, f"{field} holding the placeholder %{part.name}% (|expand)")
        else:  # pragma: no cover - pySigma has no other part
            raise _refused(where, f"{field} holding {part!r}")
    if not wild:
        plain = "".join(p for p in value.s if isinstance(p, str))
        lowered = plain.lower()
        keys = frozenset({("s", lowered)})  # an exact match is a case-insensitive one too
        if cased:
            return (lambda v: v is not None and _text(v) == plain), keys
        return (lambda v: v is not None and _text(v).lower() == lowered), keys
    compiled = re.compile("".join(pattern), re.DOTALL)
    if cased:
        return (lambda v: v is not None and compiled.fullmatch(_text(v)) is not None), None
    return (lambda v: v is not None and compiled.fullmatch(_text(v).lower()) is not None), None


def _number_test(number: float) -> tuple[ValueTest, frozenset[Key]]:
    spelled = str(number)

    def test(v: Any) -> bool:
        if _is_number(v):
            return bool(v == number)
        return isinstance(v, str) and v == spelled

    return test, frozenset({("n", number), ("s", spelled.lower())})


def _bool_test(flag: bool) -> tuple[ValueTest, frozenset[Key]]:
    spelled = "true" if flag else "false"

    def test(v: Any) -> bool:
        if isinstance(v, bool):
            return v is flag
        return isinstance(v, str) and v.lower() == spelled

    return test, frozenset({("s", spelled)})


_COMPARE: dict[str, Callable[[float, float], bool]] = {
    "GTE": lambda a, n: a >= n,
    "GT": lambda a, n: a > n,
    "LTE": lambda a, n: a <= n,
    "LT": lambda a, n: a < n,
}


def _compare_test(field: str, value: SigmaCompareExpression, where: str) -> ValueTest:
    compare = _COMPARE.get(value.op.name)
    if compare is None:
        raise _refused(where, f"{field} compared with {value.op.name}")
    number = value.number.number
    return lambda v: _is_number(v) and compare(v, number)


_FLAGS = {
    SigmaRegularExpressionFlag.IGNORECASE: re.IGNORECASE,
    SigmaRegularExpressionFlag.MULTILINE: re.MULTILINE,
    SigmaRegularExpressionFlag.DOTALL: re.DOTALL,
}


def _regex_test(field: str, value: SigmaRegularExpression, where: str) -> ValueTest:
    flags = 0
    for flag in value.flags:
        flags |= _FLAGS[flag]
    source = value.regexp.to_plain() if isinstance(value.regexp, SigmaString) else value.regexp
    try:
        compiled = re.compile(str(source), flags)
    except re.error as e:
        raise _refused(where, f"{field}|re {source!r}, which does not compile ({e})") from e
    return lambda v: v is not None and compiled.search(_text(v)) is not None


def _cidr_test(network: ipaddress.IPv4Network | ipaddress.IPv6Network) -> ValueTest:
    def test(v: Any) -> bool:
        if not isinstance(v, str):
            return False
        try:
            address = ipaddress.ip_address(v.strip())
        except ValueError:
            return False
        return address.version == network.version and address in network

    return test
