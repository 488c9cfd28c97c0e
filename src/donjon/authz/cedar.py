"""Donjon's Cedar schema, entity model and policy loading.

Principals are ``User`` and ``ServiceAccount`` entities, members of ``Group``
entities. Resources are paths: ``datasets/fraud/transactions`` is the entity
``Dataset::"datasets/fraud/transactions"``, ``models/fraud-clf@3`` is
``Model::"models/fraud-clf@3"``. Every resource is ``in`` the ``Collection``
of its own path and of each of its prefixes (and a version in its model's),
so ``resource in Collection::"datasets/fraud"`` is the whole ``fraud/`` tree,
including a dataset named ``datasets/fraud`` itself, and
``resource in Collection::"models/fraud-clf"`` is the model and its versions.
Anything else (``system``, ``identities/alice``) is a ``System`` resource that
only ``admin`` applies to.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any

import cedarpy

from donjon.core.identity import Principal, PrincipalKind
from donjon.errors import ConfigError, InputError

DATASET_ACTIONS = ("dataset.read", "dataset.write", "dataset.list", "dataset.delete")
MODEL_ACTIONS = (
    "model.read",
    "model.write",
    "model.list",
    "model.promote",
    "model.deploy",
    "model.delete",
    "model.predict",  # query a deployed model (through the gateway); not read its weights
)
# Viewing a page of the console (``donjon.server.ui``); resources are ``ui/<page>``.
UI_ACTIONS = ("ui.view",)
ACTIONS = (*DATASET_ACTIONS, *MODEL_ACTIONS, *UI_ACTIONS, "admin")

# The request context: facts the caller vouches for (the registry sets them).
CONTEXT_TYPES: dict[str, type] = {"stage": str, "signed": bool, "scan_clean": bool}


def _action_list(actions: tuple[str, ...]) -> str:
    return ", ".join(f'"{a}"' for a in actions)


SCHEMA = f"""
entity Group;
entity User in [Group];
entity ServiceAccount in [Group];
entity Collection in [Collection];
entity Dataset in [Collection];
entity Model in [Collection];
entity System;
type Facts = {{ stage?: String, signed?: Bool, scan_clean?: Bool }};
action {_action_list(DATASET_ACTIONS)}
  appliesTo {{ principal: [User, ServiceAccount], resource: [Dataset], context: Facts }};
action {_action_list(MODEL_ACTIONS)}
  appliesTo {{ principal: [User, ServiceAccount], resource: [Model], context: Facts }};
action {_action_list(UI_ACTIONS)}
  appliesTo {{ principal: [User, ServiceAccount], resource: [System], context: Facts }};
action "admin"
  appliesTo {{ principal: [User, ServiceAccount], resource: [Dataset, Model, System],
              context: Facts }};
"""

SEGMENT = r"[A-Za-z0-9_][A-Za-z0-9._-]{0,127}"
RESOURCE = re.compile(rf"^(datasets|models)(/{SEGMENT})*(@[A-Za-z0-9._-]{{1,64}})?$")
SYSTEM = re.compile(rf"^{SEGMENT}(/{SEGMENT})*$")
PRINCIPAL_TYPES = {PrincipalKind.USER: "User", PrincipalKind.SERVICE: "ServiceAccount"}


class PolicyError(ConfigError):
    """A policy file does not parse or does not validate against the schema."""


def _uid(kind: str, value: str) -> dict[str, str]:
    return {"type": kind, "id": value}


@dataclass(frozen=True, slots=True)
class Resource:
    """A resource path as a Cedar entity and the Collections it sits in."""

    path: str
    type: str
    collections: tuple[str, ...]

    @classmethod
    def parse(cls, path: str) -> Resource:
        if RESOURCE.match(path):
            if path.startswith("datasets@") or path.startswith("models@"):
                raise InputError(f"resource {path!r}: only a named dataset or model has versions")
            base, _, _version = path.partition("@")
            parts = base.split("/")
            if any(p in (".", "..") or p.startswith(".") for p in parts):
                raise InputError(f"resource {path!r}: dot segments are not allowed")
            prefixes = tuple("/".join(parts[:i]) for i in range(1, len(parts) + 1))
            if "@" in path:
                prefixes += (path,)
            kind = "Dataset" if parts[0] == "datasets" else "Model"
            return cls(path, kind, prefixes)
        if SYSTEM.match(path) and not path.startswith(("datasets", "models")):
            return cls(path, "System", ())
        raise InputError(
            f"bad resource {path!r}: expected datasets/<path>[@version], models/<name>[@version] "
            "or a system resource name"
        )

    def entities(self) -> list[dict[str, Any]]:
        cols = self.collections
        out: list[dict[str, Any]] = [
            {
                "uid": _uid(self.type, self.path),
                "attrs": {},
                "parents": [_uid("Collection", c) for c in cols],
            }
        ]
        for i, col in enumerate(cols):
            out.append(
                {
                    "uid": _uid("Collection", col),
                    "attrs": {},
                    "parents": [_uid("Collection", c) for c in cols[:i]],
                }
            )
        return out


def principal_uid(principal: Principal) -> dict[str, str]:
    kind = PRINCIPAL_TYPES.get(principal.kind)
    if kind is None:
        raise InputError(f"principal {principal} cannot be authorised (anonymous or a group)")
    return _uid(kind, principal.id)


def principal_entities(principal: Principal) -> list[dict[str, Any]]:
    groups = [_uid("Group", g) for g in principal.groups]
    return [
        {"uid": principal_uid(principal), "attrs": {}, "parents": groups},
        *({"uid": g, "attrs": {}, "parents": []} for g in groups),
    ]


def check_context(context: dict[str, Any]) -> dict[str, Any]:
    for key, value in context.items():
        expected = CONTEXT_TYPES.get(key)
        if expected is None:
            raise InputError(f"unknown context key {key!r}; known: {', '.join(CONTEXT_TYPES)}")
        if type(value) is not expected:
            raise InputError(f"context key {key!r} must be a {expected.__name__}")
    return context


# -- policies -------------------------------------------------------------


@dataclass(frozen=True)
class Statement:
    text: str
    line: int


def split_statements(text: str) -> list[Statement]:
    """Split Cedar text at top-level ``;`` (outside strings and comments), with lines."""
    statements: list[Statement] = []
    start, i, n = 0, 0, len(text)
    in_string = False
    while i < n:
        ch = text[i]
        if in_string:
            if ch == "\\":
                i += 1
            elif ch == '"':
                in_string = False
        elif ch == '"':
            in_string = True
        elif text.startswith("//", i):
            end = text.find("\n", i)
            i = n if end < 0 else end
            continue
        elif ch == ";":
            chunk = text[start : i + 1]
            statements.append(Statement(chunk, _first_code_line(text, start)))
            start = i + 1
        i += 1
    if text[start:].strip() and _strip_comments(text[start:]).strip():
        statements.append(Statement(text[start:], _first_code_line(text, start)))
    return statements


def _strip_comments(chunk: str) -> str:
    return "\n".join(line.split("//", 1)[0] for line in chunk.splitlines())


def _first_code_line(text: str, start: int) -> int:
    line = text.count("\n", 0, start) + 1
    for offset, row in enumerate(text[start:].splitlines()):
        if row.split("//", 1)[0].strip():
            return line + offset
    return line


ANNOTATION_ID = re.compile(r'@id\s*\(\s*"([^"]*)"\s*\)')


@dataclass(frozen=True)
class Policies:
    """A parsed, schema-validated policy set with names and lines for each policy."""

    policy_set: cedarpy.PolicySet
    names: dict[str, str]  # cedar's policyN -> @id annotation (or policyN)
    lines: dict[str, int]
    source: str
    text: str = field(repr=False)

    def name(self, cedar_id: str) -> str:
        return self.names.get(cedar_id, cedar_id)

    def describe(self, cedar_id: str) -> str:
        line = self.lines.get(cedar_id)
        return f"{self.name(cedar_id)} ({self.source}:{line})" if line else self.name(cedar_id)

    def __len__(self) -> int:
        return len(self.names)


_SCHEMA: cedarpy.Schema | None = None


def schema() -> cedarpy.Schema:
    global _SCHEMA  # parsed once; immutable
    if _SCHEMA is None:
        _SCHEMA = cedarpy.Schema.from_str(SCHEMA)
    return _SCHEMA


def load_policies(text: str, source: str = "<policies>") -> Policies:
    """Parse and validate ``text``; PolicyError names the policy and its line."""
    statements = split_statements(text)
    names: dict[str, str] = {}
    lines: dict[str, int] = {}
    for index, statement in enumerate(statements):
        cedar_id = f"policy{index}"
        found = ANNOTATION_ID.search(statement.text)
        label = found.group(1) if found else cedar_id
        try:
            cedarpy.PolicySet.from_str(statement.text)
        except ValueError as e:
            raise PolicyError(
                f"{source}:{statement.line}: policy {label!r} does not parse: {e}"
            ) from None
        if label in names.values():
            raise PolicyError(f"{source}:{statement.line}: policy id {label!r} is used twice")
        names[cedar_id] = label
        lines[cedar_id] = statement.line
    try:
        policy_set = cedarpy.PolicySet.from_str(text)
    except ValueError as e:
        raise PolicyError(f"{source}: policies do not parse: {e}") from None
    result = cedarpy.validate_policies(text, schema())
    if not result.validation_passed:
        problems = []
        for error in result.errors:
            where = lines.get(error.policy_id)
            label = names.get(error.policy_id, error.policy_id or "?")
            at = f"{source}:{where}" if where else source
            problems.append(f"{at}: policy {label!r}: {error.error}")
        raise PolicyError(
            "policies do not validate against the schema:\n  " + "\n  ".join(problems)
        )
    return Policies(policy_set, names, lines, source, text)
