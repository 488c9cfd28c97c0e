"""Pydantic models of the HTTP API: what the OpenAPI document promises."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from donjon.registry.attachments import AttachmentKind


class Model(BaseModel):
    model_config = ConfigDict(extra="forbid")


class ErrorOut(Model):
    error: str = Field(description="a stable error code: not_found, forbidden, too_large...")
    detail: Any = Field(description="a human-readable explanation or the validation errors")


class VersionOut(Model):
    kind: Literal["dataset", "model"]
    name: str
    version: int
    digest: str
    size: int
    media_type: str
    metadata: dict[str, Any]
    stage: str | None
    status: Literal["active", "quarantined", "tombstoned"]
    status_reason: str | None
    status_by: str | None
    status_at: str | None
    lineage: list[str]
    created_by: str
    created_at: str


class VersionsOut(Model):
    versions: list[VersionOut]


class NamesOut(Model):
    names: list[str]


class GateOut(Model):
    gate: str
    passed: bool
    target: str
    reasons: list[str]
    details: dict[str, Any]
    time: str | None


class GatesOut(Model):
    gates: list[GateOut]


class ReasonIn(Model):
    reason: str = Field(min_length=1, max_length=1000)


class PromoteIn(Model):
    stage: Literal["dev", "staging", "prod"]


class WhoAmIOut(Model):
    id: str
    kind: str
    display_name: str | None
    groups: list[str]


class HealthOut(Model):
    status: Literal["ok"]


class ReadyOut(Model):
    status: Literal["ready", "unavailable"]
    checks: dict[str, Literal["ok", "unavailable"]]


class AttachmentOut(Model):
    kind: AttachmentKind  # the registry's enum: a new kind cannot be stored, then refused
    digest: str
    size: int
    media_type: str
    summary: dict[str, Any]
    created_by: str
    created_at: str


class AttachmentsOut(Model):
    attachments: list[AttachmentOut]
