"""Witnesses: copies of signed checkpoints kept outside the ledger's database.

A database administrator can cut the ledger's tail and rewrite its head row;
only a copy of a later checkpoint held elsewhere proves it. Every checkpoint
the ledger signs goes to each configured :class:`Witness`: the SOC stream
(:class:`EventWitness`, an ``audit.checkpoint`` event on the bus), a JSON-lines
file (:class:`FileWitness`) and an HTTP endpoint (:class:`UrlWitness`).
:func:`read_witness` reads checkpoints back from such a file or from a
Donjon event file, for ``donjon audit verify --witness``.
"""

from __future__ import annotations

import json
import logging
import os
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

from donjon.audit.chain import Checkpoint
from donjon.core.events import EventKind, Outcome, SecurityEvent
from donjon.errors import AuditError, VerificationError

log = logging.getLogger(__name__)

CHECKPOINT_ACTION = "audit.checkpoint"
SOURCE = "audit"


class Witness(Protocol):
    """Receives each signed checkpoint; raising only logs (the next one supersedes it)."""

    name: str

    def witness(self, checkpoint: Checkpoint) -> None: ...


def checkpoint_event(checkpoint: Checkpoint) -> SecurityEvent:
    return SecurityEvent(
        kind=EventKind.AUDIT,
        source=SOURCE,
        action=CHECKPOINT_ACTION,
        message=f"ledger {checkpoint.ledger} checkpoint at entry {checkpoint.seq}",
        outcome=Outcome.SUCCESS,
        attributes={"checkpoint": checkpoint.to_dict()},
    )


def is_checkpoint_event(event: SecurityEvent) -> bool:
    return event.source == SOURCE and event.action == CHECKPOINT_ACTION


def is_announcement(body: str) -> bool:
    """Whether a ledger entry's body records an ``audit.checkpoint`` event."""
    if f'"action":"{CHECKPOINT_ACTION}"' not in body:  # canonical JSON: the fast path
        return False
    try:
        event = json.loads(body)["event"]
    except (ValueError, KeyError, TypeError):
        return False
    return bool(event.get("source") == SOURCE and event.get("action") == CHECKPOINT_ACTION)


class EventWitness:
    """Publishes each checkpoint as an ``audit.checkpoint`` event (to every SOC sink)."""

    name = "events"

    def __init__(self, publish: Callable[[SecurityEvent], object]) -> None:
        self._publish = publish

    def witness(self, checkpoint: Checkpoint) -> None:
        self._publish(checkpoint_event(checkpoint))


class FileWitness:
    """Appends each checkpoint as one JSON line (mode 0600, fsynced before returning)."""

    name = "file"

    def __init__(self, path: Path) -> None:
        self.path = path

    def witness(self, checkpoint: Checkpoint) -> None:
        line = json.dumps(checkpoint.to_dict(), sort_keys=True) + "\n"
        self.path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(self.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)
        try:
            os.write(fd, line.encode("utf-8"))
            os.fsync(fd)
        finally:
            os.close(fd)


class UrlWitness:
    """POSTs each checkpoint as JSON; any status but 2xx is a failure (logged)."""

    name = "url"

    def __init__(self, url: str, *, timeout: float = 5.0) -> None:
        self.url = url
        self._timeout = timeout

    def witness(self, checkpoint: Checkpoint) -> None:
        import httpx  # the client extra; only imported when a witness URL is configured

        try:
            response = httpx.post(self.url, json=checkpoint.to_dict(), timeout=self._timeout)
        except httpx.HTTPError as e:
            raise AuditError(f"witness {self.url}: {type(e).__name__}") from e
        if not response.is_success:
            raise AuditError(f"witness {self.url} answered {response.status_code}")


def read_witness(path: Path) -> list[Checkpoint]:
    """Checkpoints from a witness file: checkpoint lines or Donjon ``audit.checkpoint`` events.

    Other events (an event file holds every kind) are skipped; a line that is
    not JSON, or a checkpoint that is malformed, is an error naming the line.
    """
    return list(_read(path))


def _read(path: Path) -> Iterator[Checkpoint]:
    try:
        lines = path.read_text(encoding="utf-8").splitlines()
    except OSError as e:
        raise AuditError(f"cannot read witness file {path}: {e}") from e
    for number, line in enumerate(lines, 1):
        if not line.strip():
            continue
        try:
            data: Any = json.loads(line)
        except ValueError as e:
            raise AuditError(f"{path}:{number}: not JSON: {e}") from e
        if not isinstance(data, dict):
            raise AuditError(f"{path}:{number}: not a JSON object")
        if data.get("action") == CHECKPOINT_ACTION and data.get("source") == SOURCE:
            data = (data.get("attributes") or {}).get("checkpoint")
            if not isinstance(data, dict):
                raise AuditError(f"{path}:{number}: a checkpoint event without its checkpoint")
        elif "signature" not in data:
            continue  # another event of an event file
        try:
            yield Checkpoint.from_dict(data)
        except VerificationError as e:
            raise AuditError(f"{path}:{number}: {e}") from e


@dataclass
class AnchorState:
    """What a ledger's checkpoints cover in this process, and those still to witness."""

    lock: threading.Lock = field(default_factory=threading.Lock)
    # Entries up to here are signed by this process's checkpoints, or are only
    # the audit.checkpoint announcements that follow one (those need no other).
    covered_to: int = 0
    pending: list[Checkpoint] = field(default_factory=list)

    def announced(self, seq: int) -> None:
        with self.lock:
            if seq == self.covered_to + 1:
                self.covered_to = seq

    def signed(self, checkpoint: Checkpoint, witnessed: bool) -> None:
        with self.lock:
            self.covered_to = max(self.covered_to, checkpoint.seq)
            if witnessed:
                self.pending.append(checkpoint)

    def cover(self, seq: int) -> None:
        with self.lock:
            self.covered_to = max(self.covered_to, seq)

    def covered(self) -> int:
        with self.lock:
            return self.covered_to

    def has_pending(self) -> bool:
        with self.lock:
            return bool(self.pending)

    def take_pending(self) -> list[Checkpoint]:
        with self.lock:
            taken, self.pending = self.pending, []
        return taken
