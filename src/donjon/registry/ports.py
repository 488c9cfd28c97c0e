"""What the registry needs from outside: a catalogue store and admission gates.

``donjon.storage.registry`` implements :class:`RegistryStore` on SQL;
``donjon.app`` wires :class:`ScanGate` to the model scanner and the
:class:`PromotionGate` s to the scanner's stored results, the signature
verifier and the provenance checks. A test may pass any object of the right
shape.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any, BinaryIO, Protocol

from donjon.core.artifacts import Digest
from donjon.core.events import SecurityEvent
from donjon.core.findings import Finding
from donjon.core.identity import Principal
from donjon.registry.attachments import Attachment
from donjon.registry.model import GateResult, Stage, Version

EventsOf = Callable[[dict[str, Any]], Sequence[SecurityEvent]]


class RegistryStore(Protocol):
    """The catalogue of versions, in plain rows (storage adapters never import the registry).

    A version row is a mapping with ``kind name number digest size media_type
    metadata stage status status_reason status_by status_at created_by
    created_at lineage`` (``lineage``: a list of ``[dataset name, number]``);
    a gate row has ``gate passed target reasons details time``. Versions are
    never updated except their stage and status, and every such change is
    recorded as a transition.
    """

    def add_version(
        self,
        row: Mapping[str, Any],
        gates: Sequence[Mapping[str, Any]] = (),
        events: EventsOf | None = None,
    ) -> dict[str, Any]:
        """Record ``row`` as the next version of its name (1, 2, 3...), atomically.

        ``events`` maps the stored row to the events that record it. A store that
        journals events in its own transaction (the outbox pattern) calls it and
        commits what it returns with the row; a store that cannot never calls it,
        and the registry publishes them after the write.
        """
        ...

    def get_version(self, kind: str, name: str, number: int) -> dict[str, Any] | None: ...

    def latest_version(self, kind: str, name: str) -> dict[str, Any] | None: ...

    def versions(self, kind: str, name: str) -> list[dict[str, Any]]: ...

    def names(self, kind: str, prefix: str = "") -> list[str]: ...

    def set_stage(
        self,
        kind: str,
        name: str,
        number: int,
        stage: str,
        by: str,
        at: datetime,
        events: EventsOf | None = None,
    ) -> dict[str, Any]:
        """Move a model version to ``stage`` and record the transition (``events``: as
        in :meth:`add_version`)."""
        ...

    def set_status(
        self,
        kind: str,
        name: str,
        number: int,
        status: str,
        reason: str,
        by: str,
        at: datetime,
        events: EventsOf | None = None,
    ) -> dict[str, Any]: ...

    def add_gate_results(
        self,
        kind: str,
        name: str,
        number: int,
        results: Sequence[Mapping[str, Any]],
        events: EventsOf | None = None,
    ) -> None:
        """Record gate results of a version (``events``: as in :meth:`add_version`)."""
        ...

    def gate_results(self, kind: str, name: str, number: int) -> list[dict[str, Any]]: ...

    def add_attachment(
        self, kind: str, name: str, number: int, row: Mapping[str, Any]
    ) -> dict[str, Any]:
        """Attach a document row (``kind digest size media_type summary created_by
        created_at``) to a version; Conflict if the same document is already attached."""
        ...

    def attachments(self, kind: str, name: str, number: int) -> list[dict[str, Any]]:
        """The version's attachment rows, oldest first."""
        ...


class BlobReader(Protocol):
    """Opens a version's bytes for a gate (scanner, signature verifier)."""

    def __call__(self) -> BinaryIO: ...


@dataclass(frozen=True, slots=True)
class ScanVerdict:
    """What the scanner said about a pushed model: clean or not, and why."""

    clean: bool
    findings: tuple[Finding, ...] = ()
    summary: str = ""
    details: Mapping[str, Any] | None = None


class ScanGate(Protocol):
    """Runs the model scanner on a pushed model; never loads the model."""

    name: str

    def scan(
        self, name: str, digest: Digest, open_blob: BlobReader, filename: str | None = None
    ) -> ScanVerdict:
        """``filename`` is the pushed file's base name, when the client gave it."""
        ...


@dataclass(frozen=True, slots=True)
class GateContext:
    """What a promotion gate may look at besides the version's bytes."""

    history: tuple[GateResult, ...]  # earlier gate results of this version, oldest first
    lineage: tuple[Version | None, ...]  # the lineage's dataset versions (None if unknown)
    attachments: tuple[Attachment, ...] = ()  # signed documents attached, oldest first
    read_attachment: Callable[[Attachment], bytes] | None = None  # its bytes, checked
    datasets: Callable[[str], tuple[Version, ...]] | None = None  # every version of a name
    principal: Principal | None = None  # who asked for the promotion (a gate acts as them)

    def read(self, attachment: Attachment) -> bytes:
        if self.read_attachment is None:
            raise LookupError("this gate context cannot read attachments")
        return self.read_attachment(attachment)

    def dataset_versions(self, name: str) -> tuple[Version, ...]:
        """Every version of dataset ``name`` (empty when unknown or not a valid name)."""
        return () if self.datasets is None else self.datasets(name)


class PromotionGate(Protocol):
    """One admission check run before a model version enters ``target``.

    A gate with a true ``after_others`` attribute acts rather than only checks
    (the watch's enrolment): it runs only when every other gate of the stage
    passed, and is reported as not run otherwise.
    """

    name: str

    def check(
        self, version: Version, target: Stage, open_blob: BlobReader, context: GateContext
    ) -> GateResult: ...
