"""The vault's values: versions, stages, statuses, lineage and gate results."""

from __future__ import annotations

import enum
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from donjon.core.artifacts import Digest
from donjon.core.findings import freeze
from donjon.registry.names import Kind, resource


class Stage(enum.StrEnum):
    """Where a model version stands. Every version enters at ``dev``."""

    DEV = "dev"
    STAGING = "staging"
    PROD = "prod"


class Status(enum.StrEnum):
    """``active`` versions can be read; the others are kept but not served."""

    ACTIVE = "active"
    QUARANTINED = "quarantined"  # held back by a failed scan or an operator
    TOMBSTONED = "tombstoned"  # deleted: the record stays, the bytes are not served


@dataclass(frozen=True, slots=True, order=True)
class VersionRef:
    """``name@number`` of a dataset or model version."""

    name: str
    number: int

    @classmethod
    def parse(cls, text: str) -> VersionRef:
        from donjon.errors import InputError
        from donjon.registry.names import check_name, check_version

        name, sep, number = text.strip().rpartition("@")
        if not sep:
            raise InputError(f"version reference {text!r:.80} must look like 'name@3'")
        return cls(check_name(name), check_version(number))

    def __str__(self) -> str:
        return f"{self.name}@{self.number}"


@dataclass(frozen=True, slots=True)
class GateResult:
    """What one admission gate said about one version."""

    gate: str
    passed: bool
    target: str  # "push" or the stage the version was to enter
    reasons: tuple[str, ...] = ()
    details: Mapping[str, Any] = field(default_factory=dict, hash=False, compare=False)
    time: datetime | None = None

    def __post_init__(self) -> None:
        object.__setattr__(self, "details", freeze(self.details))

    @classmethod
    def from_row(cls, row: Mapping[str, Any]) -> GateResult:
        return cls(
            gate=row["gate"],
            passed=bool(row["passed"]),
            target=row["target"],
            reasons=tuple(row.get("reasons") or ()),
            details=dict(row.get("details") or {}),
            time=row.get("time"),
        )

    def to_row(self) -> dict[str, Any]:
        """The storage row; ``time`` stays a datetime."""
        return {**self.to_dict(), "time": self.time}

    def to_dict(self) -> dict[str, Any]:
        return {
            "gate": self.gate,
            "passed": self.passed,
            "target": self.target,
            "reasons": list(self.reasons),
            "details": _thaw(self.details),
            "time": self.time.isoformat() if self.time else None,
        }


@dataclass(frozen=True, slots=True)
class Version:
    """One immutable version of a dataset or a model."""

    kind: Kind
    name: str
    number: int
    digest: Digest
    size: int
    created_by: str
    created_at: datetime
    media_type: str = "application/octet-stream"
    metadata: Mapping[str, Any] = field(default_factory=dict, hash=False, compare=False)
    stage: Stage | None = None  # models only
    status: Status = Status.ACTIVE
    status_reason: str | None = None
    status_by: str | None = None
    status_at: datetime | None = None
    lineage: tuple[VersionRef, ...] = ()  # the dataset versions a model was built from

    def __post_init__(self) -> None:
        object.__setattr__(self, "metadata", freeze(self.metadata))

    @classmethod
    def from_row(cls, row: Mapping[str, Any]) -> Version:
        """A version from a :class:`~donjon.registry.ports.RegistryStore` row."""
        return cls(
            kind=Kind(row["kind"]),
            name=row["name"],
            number=int(row["number"]),
            digest=Digest.parse(row["digest"]),
            size=int(row["size"]),
            created_by=row["created_by"],
            created_at=row["created_at"],
            media_type=row["media_type"],
            metadata=dict(row.get("metadata") or {}),
            stage=Stage(row["stage"]) if row.get("stage") else None,
            status=Status(row["status"]),
            status_reason=row.get("status_reason"),
            status_by=row.get("status_by"),
            status_at=row.get("status_at"),
            lineage=tuple(VersionRef(str(n), int(v)) for n, v in row.get("lineage") or ()),
        )

    @property
    def ref(self) -> VersionRef:
        return VersionRef(self.name, self.number)

    @property
    def resource(self) -> str:
        return resource(self.kind, self.name, self.number)

    def to_dict(self) -> dict[str, Any]:
        return {
            "kind": self.kind.value,
            "name": self.name,
            "version": self.number,
            "digest": str(self.digest),
            "size": self.size,
            "media_type": self.media_type,
            "metadata": _thaw(self.metadata),
            "stage": self.stage.value if self.stage else None,
            "status": self.status.value,
            "status_reason": self.status_reason,
            "status_by": self.status_by,
            "status_at": self.status_at.isoformat() if self.status_at else None,
            "lineage": [str(ref) for ref in self.lineage],
            "created_by": self.created_by,
            "created_at": self.created_at.isoformat(),
        }


def _thaw(value: Any) -> Any:
    """Frozen mappings and tuples back to plain JSON types."""
    if isinstance(value, Mapping):
        return {str(k): _thaw(v) for k, v in value.items()}
    if isinstance(value, tuple | list):
        return [_thaw(v) for v in value]
    return value
