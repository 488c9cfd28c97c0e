"""Many same-action decisions at once, for filtering a listing item by item.

With no context and no attributes, Cedar can tell two resources apart only by
the entity ids its policies name: ``resource == Dataset::"..."``, ``resource in
Collection::"..."``. Two resources of the same type that are equal to, and in,
the same named entities get the same answer from every policy. So the items are
grouped by the named entities among their own id and their collections, and
one decision is asked per group: a listing of 10,000 names under a few folders
costs a few Cedar evaluations, not 10,000.
"""

from __future__ import annotations

import functools
import json
from collections.abc import Callable, Iterator, Sequence
from typing import Any

import cedarpy

from donjon.authz.cedar import RESOURCE, Resource
from donjon.core.decision import Decision
from donjon.core.identity import Principal
from donjon.errors import InputError

Decide = Callable[[Principal, str, str], Decision]


def named_entities(policy_text: str) -> frozenset[str] | None:
    """``Type::id`` of every entity the policies name; None when they cannot be read."""
    if not policy_text.strip():
        return frozenset()
    try:
        tree = json.loads(cedarpy.policies_to_json_str(policy_text))
    except (ValueError, TypeError):
        return None
    return frozenset(_uids(tree))


def _uids(node: Any) -> Iterator[str]:
    if isinstance(node, dict):
        kind, ident = node.get("type"), node.get("id")
        if isinstance(kind, str) and isinstance(ident, str):
            yield f"{kind}::{ident}"
        for value in node.values():
            yield from _uids(value)
    elif isinstance(node, list):
        for value in node:
            yield from _uids(value)


def decide_many(
    decide: Decide,
    named: frozenset[str] | None,
    principal: Principal,
    action: str,
    resources: Sequence[str],
) -> list[Decision]:
    """One decision per resource, asking ``decide`` once per group of alike resources.

    ``named`` None (the policies could not be read) asks once per resource.
    """
    groups: dict[tuple[str, ...], list[int]] = {}
    out: list[Decision | None] = [None] * len(resources)
    for index, path in enumerate(resources):
        if named is None:
            groups[("#", str(index))] = [index]
            continue
        try:
            key = _key(path, named)
        except InputError as e:
            out[index] = Decision.deny(principal, action, path, f"bad request: {e}")
            continue
        groups.setdefault(key, []).append(index)
    for members in groups.values():
        first = members[0]
        d = decide(principal, action, resources[first])
        out[first] = d
        for index in members[1:]:
            out[index] = Decision(
                d.effect, d.principal, d.action, resources[index], d.reasons, d.policy_ids
            )
    return [d for d in out if d is not None]


_FEW = 64


@functools.lru_cache(maxsize=16)
def _folders(named: frozenset[str]) -> tuple[str, ...]:
    """The ids of the named Collections (folders), sorted."""
    return tuple(sorted(uid[12:] for uid in named if uid.startswith("Collection::")))


def _key(path: str, named: frozenset[str]) -> tuple[str, ...]:
    """The resource's type and the named entities it is, or is in (InputError if malformed)."""
    if "@" in path or "/." in path or not RESOURCE.match(path):
        target = Resource.parse(path)  # the general case; raises on a malformed path
        ids = [f"{target.type}::{target.path}", *(f"Collection::{c}" for c in target.collections)]
        return (target.type, *(uid for uid in ids if uid in named))
    kind = "Dataset" if path.startswith("datasets") and path[8:9] in ("", "/") else "Model"
    key = [kind]
    if f"{kind}::{path}" in named:
        key.append(f"{kind}::{path}")
    folders = _folders(named)
    if len(folders) <= _FEW:  # few named folders (the usual policy): test each
        key += [
            f"Collection::{f}"
            for f in folders
            if path.startswith(f) and path[len(f) : len(f) + 1] in ("", "/")
        ]
        return tuple(key)
    end = path.find("/")
    while end != -1:
        if f"Collection::{path[:end]}" in named:
            key.append(f"Collection::{path[:end]}")
        end = path.find("/", end + 1)
    if f"Collection::{path}" in named:
        key.append(f"Collection::{path}")
    return tuple(key)
