"""The tamper-evident ledger: append (the ``EventJournal`` port), checkpoint, verify, export.

A :class:`LedgerStore` adapter (``donjon.storage.ledger``) serialises appends
on the chain head (a lock row) and stores rows; this module computes hashes,
signs checkpoints and checks everything on the way back. See
:mod:`donjon.audit.chain` for the hash and canonical-JSON definitions.
"""

from __future__ import annotations

import base64
import enum
import hashlib
import json
import logging
import threading
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import IO, Any, Protocol

from donjon.audit.chain import (
    GENESIS,
    Checkpoint,
    body_seq_suffix,
    entry_body,
    entry_hash,
    signed_payload,
)
from donjon.core.clock import SystemClock
from donjon.core.events import SecurityEvent
from donjon.core.ports import Clock, KeyProvider
from donjon.errors import AuditError, DonjonError, VerificationError

log = logging.getLogger(__name__)

# (seq, prev_hash, hash, body)
Row = tuple[int, str, str, str]
Builder = Callable[[int, str], Sequence[Row]]


class LedgerStore(Protocol):
    """Rows of the chain and its checkpoints, with appends serialised on the head."""

    def append(self, build: Builder) -> Sequence[Row]:
        """Lock the head, call ``build(head_seq, head_hash)``, store its rows, move the head."""
        ...

    def head(self) -> tuple[int, str]: ...

    def rows(self, start: int = 1) -> Iterator[Row]: ...

    def add_checkpoint(self, checkpoint: Mapping[str, Any]) -> None: ...

    def checkpoints(self) -> list[Mapping[str, Any]]: ...


class Problem(enum.StrEnum):
    MODIFIED = "modified"
    MISSING = "missing"  # a deleted entry (a gap in the sequence)
    OUT_OF_ORDER = "out-of-order"  # inserted or reordered entries
    TRUNCATED = "truncated"
    BAD_CHECKPOINT = "bad-checkpoint"


@dataclass(frozen=True, slots=True)
class Issue:
    problem: Problem
    seq: int
    message: str


@dataclass(frozen=True)
class Verification:
    """The result of :meth:`Ledger.verify`: ``ok`` or the issues, first bad entry first."""

    entries: int
    head_hash: str
    checkpoints: int
    issues: tuple[Issue, ...] = ()
    anchors: tuple[str, ...] = field(default=())

    @property
    def ok(self) -> bool:
        return not self.issues

    @property
    def first_bad_seq(self) -> int | None:
        return min(i.seq for i in self.issues) if self.issues else None

    def to_dict(self) -> dict[str, Any]:
        return {
            "ok": self.ok,
            "entries": self.entries,
            "head_hash": self.head_hash,
            "checkpoints": self.checkpoints,
            "first_bad_seq": self.first_bad_seq,
            "issues": [
                {"problem": i.problem.value, "seq": i.seq, "message": i.message}
                for i in self.issues
            ],
            "anchors": list(self.anchors),
        }


@dataclass
class _Pending:
    """One caller's events waiting for a group commit."""

    events: list[SecurityEvent]
    done: bool = False
    seqs: list[int] = field(default_factory=list)
    error: BaseException | None = None

    def result(self) -> list[int]:
        if self.error is not None:
            raise AuditError(f"the ledger append failed: {self.error}") from self.error
        if len(self.seqs) != len(self.events):
            raise AuditError("the ledger append was not committed")
        return self.seqs


class Ledger:
    """The audit ledger. ``append`` makes it the bus's ``EventJournal``."""

    def __init__(
        self,
        store: LedgerStore,
        *,
        keys: KeyProvider | None = None,
        key_id: str = "ledger",
        checkpoint_every: int = 1000,
        clock: Clock | None = None,
        name: str = "donjon",
    ) -> None:
        if checkpoint_every < 0:
            raise ValueError("checkpoint_every must be 0 (off) or positive")
        self._store = store
        self._keys = keys
        self._key_id = key_id
        self._every = checkpoint_every
        self._clock: Clock = clock or SystemClock()
        self.name = name
        self._turn = threading.Condition()
        self._queue: list[_Pending] = []
        self._writing = False

    # -- writing -------------------------------------------------------------

    def append(self, event: SecurityEvent) -> None:
        self.append_many([event])

    def append_many(self, events: Iterable[SecurityEvent]) -> list[int]:
        """Append ``events`` in one transaction; returns their sequence numbers.

        Concurrent callers are group-committed: while one transaction is being
        written, the next callers queue, and the first of them writes all their
        events in the following transaction. Each caller returns only once its
        own events are committed (or raises the error that prevented it), so an
        event is never acknowledged before it is stored.
        """
        mine = _Pending(list(events))
        if not mine.events:
            return []
        with self._turn:
            self._queue.append(mine)
            while self._writing and not mine.done:
                self._turn.wait()
            if mine.done:
                return mine.result()
            self._writing = True
            group, self._queue = self._queue, []
        try:
            self._write(group)
        finally:
            with self._turn:
                self._writing = False
                for pending in group:
                    pending.done = True
                self._turn.notify_all()
        return mine.result()

    def _write(self, group: list[_Pending]) -> None:
        batch = [event for pending in group for event in pending.events]
        try:
            rows = self._store.append(self.builder(batch))
        except Exception as e:  # every waiter gets the error; none is acknowledged
            for pending in group:
                pending.error = e
            raise
        start = 0
        for pending in group:
            pending.seqs = [row[0] for row in rows[start : start + len(pending.events)]]
            start += len(pending.events)
        self.committed(rows)

    @staticmethod
    def builder(events: Sequence[SecurityEvent]) -> Builder:
        """The rows of ``events`` after a head: what a store writes under its head lock.

        Also for a store that appends inside a transaction of its own (a registry
        write and the events that record it, committed together); it then calls
        :meth:`committed` with the rows once that transaction has committed.
        """
        batch = list(events)

        def build(head_seq: int, head_hash: str) -> list[Row]:
            rows: list[Row] = []
            prev = head_hash
            for offset, event in enumerate(batch, start=1):
                seq = head_seq + offset
                body = entry_body(seq, event)
                digest = entry_hash(prev, body)
                rows.append((seq, prev, digest, body))
                prev = digest
            return rows

        return build

    def committed(self, rows: Sequence[Row]) -> None:
        """After ``rows`` are committed: sign the checkpoints that fall among them."""
        if self._every and self._keys is not None:
            for seq, _prev, digest, _body in rows:
                if seq % self._every == 0:
                    try:
                        self._sign_and_store(seq, digest)
                    except DonjonError:  # the entries are stored; the next checkpoint covers them
                        log.exception("could not sign the ledger checkpoint at entry %d", seq)

    def checkpoint(self) -> Checkpoint:
        """Sign the current head now (also what ``donjon audit checkpoint`` does)."""
        seq, digest = self._store.head()
        return self._sign_and_store(seq, digest)

    def _sign_and_store(self, seq: int, digest: str) -> Checkpoint:
        if self._keys is None:
            raise VerificationError("no signing key: checkpoints cannot be signed")
        time = self._clock.now()
        signature = self._keys.sign(self._key_id, signed_payload(self.name, seq, digest, time))
        checkpoint = Checkpoint(
            seq, digest, time, self._key_id, base64.b64encode(signature).decode(), self.name
        )
        self._store.add_checkpoint(checkpoint.to_dict())  # idempotent per seq
        return checkpoint

    def head(self) -> tuple[int, str]:
        return self._store.head()

    # -- reading -------------------------------------------------------------

    def export(self, out: IO[str], start: int = 1) -> int:
        """Write entries as JSON lines ``{"seq","prev","hash","entry"}``; returns the count."""
        count = 0
        for seq, prev, digest, body in self._store.rows(start):
            entry = json.loads(body)
            out.write(json.dumps({"seq": seq, "prev": prev, "hash": digest, "entry": entry}))
            out.write("\n")
            count += 1
        return count

    def verify(
        self, *, public_key_pem: bytes | None = None, head: Checkpoint | None = None
    ) -> Verification:
        """Check every entry, the head row, the signed checkpoints and an exported head."""
        if public_key_pem is None and self._keys is not None:
            public_key_pem = self._keys.public_key_pem(self._key_id)
        checkpoints = [Checkpoint.from_dict(dict(c)) for c in self._store.checkpoints()]
        anchors = {c.seq for c in checkpoints} | ({head.seq} if head else set())
        seen: dict[int, str] = {0: GENESIS}
        issues: list[Issue] = []
        prev, expected = GENESIS, 1
        highest = 0
        sha256 = hashlib.sha256
        for seq, stored_prev, digest, body in self._store.rows():
            highest = seq
            if issues:
                continue  # the chain is broken; only find where the table ends
            intact = (
                seq == expected
                and stored_prev == prev
                and body.endswith(f',"seq":{seq}}}')
                and sha256((prev + body).encode()).hexdigest() == digest
            )  # the fast path of _check_row, which says what is wrong otherwise
            if not intact:
                issue = _check_row(seq, expected, prev, stored_prev, digest, body)
                issues.append(issue or Issue(Problem.MODIFIED, seq, f"entry {seq} is corrupt"))
                continue
            if seq in anchors:
                seen[seq] = digest
            prev, expected = digest, expected + 1
        last = expected - 1 if not issues else highest
        head_seq, head_hash = self._store.head()
        if not issues and (head_seq, head_hash) != (last, prev):
            problem = Problem.TRUNCATED if head_seq > last else Problem.OUT_OF_ORDER
            issues.append(
                Issue(
                    problem,
                    min(head_seq, last) + 1,
                    f"the chain head records entry {head_seq} but the ledger ends at {last}",
                )
            )
        anchored = [
            *(("checkpoint", c) for c in checkpoints),
            *((("head file", head),) if head else ()),
        ]
        for what, checkpoint in anchored:
            issues += _check_anchor(what, checkpoint, seen, last, public_key_pem, checkpoints)
        issues.sort(key=lambda i: i.seq)
        return Verification(
            entries=last,
            head_hash=prev,
            checkpoints=len(checkpoints),
            issues=tuple(issues),
            anchors=tuple(sorted(f"{w}@{c.seq}" for w, c in anchored)),
        )


def _check_row(
    seq: int, expected: int, prev: str, stored_prev: str, digest: str, body: str
) -> Issue | None:
    if seq > expected:
        return Issue(Problem.MISSING, expected, f"entry {expected} is missing (deleted)")
    if seq < expected:
        return Issue(Problem.OUT_OF_ORDER, seq, f"entry {seq} appears again after {expected - 1}")
    if not body.endswith(body_seq_suffix(seq)):
        return Issue(Problem.OUT_OF_ORDER, seq, f"entry {seq} holds the body of another entry")
    if stored_prev != prev:
        return Issue(
            Problem.OUT_OF_ORDER, seq, f"entry {seq} does not follow entry {seq - 1} (inserted?)"
        )
    if entry_hash(prev, body) != digest:
        return Issue(Problem.MODIFIED, seq, f"entry {seq} was modified (hash mismatch)")
    return None


def _check_anchor(
    what: str,
    checkpoint: Checkpoint,
    seen: dict[int, str],
    last: int,
    public_key_pem: bytes | None,
    checkpoints: list[Checkpoint],
) -> list[Issue]:
    if public_key_pem is None:
        return [
            Issue(
                Problem.BAD_CHECKPOINT,
                checkpoint.seq,
                f"{what} at entry {checkpoint.seq}: no public key to verify it",
            )
        ]
    try:
        checkpoint.verify(public_key_pem)
    except VerificationError as e:
        return [Issue(Problem.BAD_CHECKPOINT, checkpoint.seq, f"{what}: {e}")]
    if checkpoint.seq > last:
        return [
            Issue(
                Problem.TRUNCATED,
                last + 1,
                f"ledger truncated: the signed {what} covers entry {checkpoint.seq} "
                f"but the ledger ends at {last}",
            )
        ]
    if checkpoint.seq not in seen:
        return []  # beyond the first broken entry: already reported
    if seen[checkpoint.seq] != checkpoint.hash:
        earlier = [c.seq for c in checkpoints if c.seq < checkpoint.seq]
        since = max(earlier, default=0) + 1
        return [
            Issue(
                Problem.MODIFIED,
                since,
                f"entries {since}..{checkpoint.seq} were rewritten: entry "
                f"{checkpoint.seq} no longer matches its signed {what}",
            )
        ]
    return []
