"""What one file's scan carries around: the policy, the budget and the findings."""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import PurePosixPath
from typing import Any, BinaryIO

from donjon.core.artifacts import ArtifactRef
from donjon.core.findings import Finding, Location, Subject
from donjon.core.rules import Rule
from donjon.core.severity import Severity
from donjon.scan.policy import ScanPolicy


@dataclass
class Source:
    """One byte stream to scan: a file, or a member inside a container."""

    name: str  # file name or member path, used for extension hints
    member: str | None  # location inside the artifact ("a.zip!data.pkl"), None for the file
    open: Callable[[], BinaryIO]
    size: int | None
    depth: int = 0
    folder: str | None = None  # the folder a model file sits in (for ONNX external data)

    @property
    def suffix(self) -> str:
        return PurePosixPath(self.name).suffix.lower()

    def child(self, name: str, opener: Callable[[], BinaryIO], size: int | None) -> Source:
        member = f"{self.member}!{name}" if self.member else name
        return Source(name, member, opener, size, self.depth + 1, None)


@dataclass
class Context:
    path: str
    policy: ScanPolicy
    deadline: float
    findings: list[Finding] = field(default_factory=list)
    formats: list[str] = field(default_factory=list)
    total_bytes: int = 0

    @classmethod
    def start(cls, path: str, policy: ScanPolicy) -> Context:
        return cls(path, policy, time.monotonic() + policy.max_seconds)

    def out_of_time(self) -> bool:
        return time.monotonic() > self.deadline

    def add(
        self,
        rule: Rule,
        message: str,
        source: Source | None = None,
        *,
        offset: int | None = None,
        opcode_index: int | None = None,
        severity: Severity | None = None,
        **evidence: Any,
    ) -> None:
        location = Location(
            member=source.member if source else None, offset=offset, opcode_index=opcode_index
        )
        self.findings.append(
            Finding(
                rule=rule,
                subject=Subject(artifact=ArtifactRef(self.path)),
                message=message,
                location=location,
                severity=severity,
                evidence=evidence,
            )
        )
