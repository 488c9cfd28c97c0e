"""Which Sigma rules can match an event, decided before the event is flattened.

Most rules require fields to equal constants in every way their condition can
hold (``class_uid: 6003`` and ``actor.authorizations.decision: denied`` ANDed):
:func:`requirements` derives them from the compiled rule
(:mod:`donjon.soc.sigma_compile`), which :mod:`donjon.soc.sigma_match`
evaluates. :class:`Prefilter` indexes the rules by their ``class_uid`` and
checks their other constants, so an event meets only the rules that can match
it. :class:`DocFields` reads one dotted field of the OCSF document when a rule
asks for it, giving exactly the values, in the order, that
:func:`~donjon.soc.sigma_match.flatten` would: no event is flattened whole.

A requirement only ever leaves out rules that cannot match: a negation, a null
or existence test, a comparison, a wildcard or a regular expression requires
nothing, so matches stay identical with and without the filter.
"""

from __future__ import annotations

import functools
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from donjon.soc.sigma_compile import AllOf, AnyOf, FieldTest, Key, Node, keys_of

ANCHOR = "class_uid"  # every shipped rule names the OCSF class it is about
Required = dict[str, frozenset[Key]]  # field -> the keys one of its values must have


@functools.lru_cache(maxsize=1024)
def _splits(path: str) -> tuple[tuple[str, str | None], ...]:
    """Each way ``path`` may start with one key (keys may hold dots): (key, the rest)."""
    parts = path.split(".")
    return tuple(
        (".".join(parts[:end]), ".".join(parts[end:]) if end < len(parts) else None)
        for end in range(1, len(parts) + 1)
    )


def _walk(doc: Any, path: str, out: list[Any]) -> None:
    """Append the values ``flatten`` names ``path``, in its order."""
    if isinstance(doc, list):
        for item in doc:
            _walk(item, path, out)
        return
    if not isinstance(doc, dict):
        return
    found = [(key, rest) for key, rest in _splits(path) if key in doc]
    if len(found) > 1:  # "a.b" and "a" both there: flatten goes by the key order
        order = {key: i for i, key in enumerate(doc)}
        found.sort(key=lambda split: order[split[0]])
    for key, rest in found:
        if rest is None:
            _collect(doc[key], out)
        else:
            _walk(doc[key], rest, out)


def _collect(value: Any, out: list[Any]) -> None:
    if isinstance(value, list):
        for item in value:
            _collect(item, out)
    elif not isinstance(value, dict):
        out.append(value)


class DocFields(Mapping[str, list[Any]]):
    """The flattened fields of one document, each read (and kept) when first asked for."""

    def __init__(self, doc: Mapping[str, Any]) -> None:
        self._doc = dict(doc)
        self._read: dict[str, list[Any]] = {}

    def read(self, field: str) -> list[Any]:
        found = self._read.get(field)
        if found is None:
            found = self._read[field] = []
            _walk(self._doc, field, found)
        return found

    def get(self, field: str, default: Any = None) -> Any:
        return self.read(field) or default

    def __getitem__(self, field: str) -> list[Any]:
        found = self.read(field)
        if not found:
            raise KeyError(field)
        return found

    def __iter__(self) -> Iterator[str]:  # only what was read: the document is never listed
        return (k for k, v in self._read.items() if v)

    def __len__(self) -> int:
        return sum(1 for v in self._read.values() if v)


def _all_of(parts: Sequence[Required]) -> Required:
    """Each part is needed. Two parts on one field keep the first: a field with several
    values may meet each with a different one, so their intersection is not needed."""
    merged: Required = {}
    for part in parts:
        for name, keys in part.items():
            merged.setdefault(name, keys)
    return merged


def _any_of(parts: Sequence[Required]) -> Required:
    if not parts:
        return {}
    common = set(parts[0]).intersection(*parts[1:])
    return {name: frozenset().union(*(p[name] for p in parts)) for name in common}


def _required(node: Node) -> Required:
    if isinstance(node, AllOf):
        return _all_of([_required(p) for p in node.parts])
    if isinstance(node, AnyOf):
        return _any_of([_required(p) for p in node.parts])
    if isinstance(node, FieldTest) and node.keys is not None:
        return {node.field: node.keys}
    return {}  # a negation, a null, existence, comparison, pattern test: no constant needed


def requirements(compiled: Node) -> Required:
    """The constants a compiled rule needs whichever way its condition holds."""
    return _required(compiled)


def _meets(fields: DocFields, required: Required) -> bool:
    return all(
        any(k in keys for v in fields.read(name) for k in keys_of(v))
        for name, keys in required.items()
    )


@dataclass
class Prefilter:
    """Rule indexes (positions in the tally's list) by the ``class_uid`` they require."""

    required: list[Required]
    by_class: dict[Key, list[int]]
    anywhere: list[int]  # rules that name no class

    @classmethod
    def of(cls, required: list[Required]) -> Prefilter:
        by_class: dict[Key, list[int]] = {}
        anywhere = []
        for index, needs in enumerate(required):
            if ANCHOR not in needs:
                anywhere.append(index)
                continue
            for key in needs[ANCHOR]:
                by_class.setdefault(key, []).append(index)
        return cls(required, by_class, anywhere)

    def candidates(self, fields: DocFields) -> list[int]:
        """The rules that can match the event, in their order."""
        found = set(self.anywhere)
        for value in fields.read(ANCHOR):
            for key in keys_of(value):
                found.update(self.by_class.get(key, ()))
        return [i for i in sorted(found) if _meets(fields, self.required[i])]
