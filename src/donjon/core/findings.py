"""Findings: one detection by one rule, about one subject, at one place."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any

from donjon.core.artifacts import ArtifactRef
from donjon.core.rules import Rule
from donjon.core.severity import Severity

JSONValue = str | int | float | bool | None | list["JSONValue"] | dict[str, "JSONValue"]


def freeze(mapping: Mapping[str, Any] | None) -> Mapping[str, Any]:
    """A read-only copy of ``mapping``, for evidence and attributes on frozen values."""
    return MappingProxyType(dict(mapping or {}))


@dataclass(frozen=True, slots=True)
class Subject:
    """What a finding is about. Set the fields that apply, at least one."""

    artifact: ArtifactRef | None = None
    dataset: str | None = None
    model: str | None = None
    principal: str | None = None
    endpoint: str | None = None

    def __post_init__(self) -> None:
        if not any((self.artifact, self.dataset, self.model, self.principal, self.endpoint)):
            raise ValueError(
                "a finding's subject needs an artifact, dataset, model, principal or endpoint"
            )

    def key(self) -> str:
        """Stable text identifying the subject (content digest preferred over path)."""
        parts = []
        if self.artifact is not None:
            parts.append(str(self.artifact.digest) if self.artifact.digest else self.artifact.uri)
        parts += [
            f"{name}={value}"
            for name, value in (
                ("dataset", self.dataset),
                ("model", self.model),
                ("principal", self.principal),
                ("endpoint", self.endpoint),
            )
            if value
        ]
        return "|".join(parts)


@dataclass(frozen=True, slots=True)
class Location:
    """Where inside the subject: archive member, byte offset, opcode index, record id."""

    member: str | None = None
    offset: int | None = None
    opcode_index: int | None = None
    record: str | None = None
    line: int | None = None

    def key(self) -> str:
        return "|".join(
            f"{name}={value}"
            for name, value in (
                ("member", self.member),
                ("offset", self.offset),
                ("opcode", self.opcode_index),
                ("record", self.record),
                ("line", self.line),
            )
            if value is not None
        )

    def __str__(self) -> str:
        return self.key().replace("|", ", ")


@dataclass(frozen=True, slots=True)
class Finding:
    """One detection. ``severity`` defaults to the rule's own.

    ``fingerprint`` identifies the same problem across runs and machines: it
    covers the rule, the subject and the location, not the message or the
    evidence, so rewording a message never breaks de-duplication.
    """

    rule: Rule
    subject: Subject
    message: str
    location: Location = field(default_factory=Location)
    severity: Severity | None = None
    evidence: Mapping[str, Any] = field(default_factory=dict, hash=False, compare=False)

    def __post_init__(self) -> None:
        if self.severity is None:
            object.__setattr__(self, "severity", self.rule.severity)
        object.__setattr__(self, "evidence", freeze(self.evidence))

    @property
    def level(self) -> Severity:
        """The severity, typed as never ``None`` (it is set from the rule)."""
        return self.severity if self.severity is not None else self.rule.severity

    @property
    def fingerprint(self) -> str:
        import hashlib  # here, not at the top: a scan that publishes nothing needs no OpenSSL
        import json

        material = json.dumps(
            [self.rule.id, self.subject.key(), self.location.key()], separators=(",", ":")
        )
        return hashlib.sha256(material.encode()).hexdigest()[:32]
