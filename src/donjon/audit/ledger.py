"""The tamper-evident ledger: append (the ``EventJournal`` port), checkpoint, verify, export.

A :class:`LedgerStore` adapter (``donjon.storage.ledger``) serialises appends
on the chain head (a lock row) and stores rows; this module computes hashes,
signs checkpoints and hands them to the witnesses (:mod:`donjon.audit.witness`);
:mod:`donjon.audit.verify` checks everything on the way back. See
:mod:`donjon.audit.chain` for the hash and canonical-JSON definitions.

Checkpoints are signed every ``checkpoint_every`` entries (at exact
multiples, while appending) by any process; a long-running process that
called :meth:`Ledger.start_anchoring` (the server) also signs the head
within ``checkpoint_seconds`` of its moving and at :meth:`Ledger.close` (a
clean shutdown), so a server that stops cleanly leaves the tail signed and
witnessed.
"""

from __future__ import annotations

import base64
import json
import logging
import threading
import time
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import IO, Any, Protocol

from donjon.audit.chain import Checkpoint, entry_body, entry_hash, signed_payload
from donjon.audit.verify import Verification, verify_chain
from donjon.audit.witness import AnchorState, Witness, is_announcement
from donjon.core.clock import SystemClock
from donjon.core.events import SecurityEvent
from donjon.core.ports import Clock, KeyProvider
from donjon.errors import AuditError, DonjonError, VerificationError

log = logging.getLogger(__name__)

# (seq, prev_hash, hash, body)
Row = tuple[int, str, str, str]
Builder = Callable[[int, str], Sequence[Row]]


class LedgerStore(Protocol):
    """Rows of the chain, its checkpoints and signing keys, appends serialised on the head."""

    def append(self, build: Builder) -> Sequence[Row]:
        """Lock the head, call ``build(head_seq, head_hash)``, store its rows, move the head."""
        ...

    def head(self) -> tuple[int, str] | None:
        """The head row, or None when it is missing (deleted)."""
        ...

    def rows(self, start: int = 1) -> Iterator[Row]: ...

    def add_checkpoint(self, checkpoint: Mapping[str, Any]) -> None: ...

    def checkpoints(self) -> list[Mapping[str, Any]]: ...

    def public_keys(self) -> dict[str, bytes]:
        """The registered checkpoint keys: key id -> PEM public key."""
        ...

    def register_key(self, key_id: str, public_key_pem: bytes) -> bool:
        """Register a checkpoint key (idempotent); False if the id names another key."""
        ...


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
    """The audit ledger. ``append`` makes it the bus's ``EventJournal``.

    ``key_id`` None signs with the provider's only key (``keys.key_ids()[0]``,
    looked up on first use: a verifier never needs the private key).
    """

    def __init__(
        self,
        store: LedgerStore,
        *,
        keys: KeyProvider | None = None,
        key_id: str | None = "ledger",
        checkpoint_every: int = 1000,
        checkpoint_seconds: float = 0.0,
        witnesses: Sequence[Witness] = (),
        clock: Clock | None = None,
        name: str = "donjon",
    ) -> None:
        if checkpoint_every < 0:
            raise ValueError("checkpoint_every must be 0 (off) or positive")
        if checkpoint_seconds < 0:
            raise ValueError("checkpoint_seconds must be 0 (off) or positive")
        self._store = store
        self._keys = keys
        self._key_id = key_id
        self._registered = False
        self._every = checkpoint_every
        self._seconds = checkpoint_seconds
        self._witnesses: list[Witness] = list(witnesses)
        self._clock: Clock = clock or SystemClock()
        self.name = name
        self._turn = threading.Condition()
        self._queue: list[_Pending] = []
        self._writing = False
        self._anchor = AnchorState()
        self._wake = threading.Condition()
        self._thread: threading.Thread | None = None
        self._stopping = threading.Event()
        self._serving = False

    def add_witness(self, witness: Witness) -> None:
        """Hand every later checkpoint to ``witness`` too (the bus, once it exists)."""
        self._witnesses.append(witness)

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
        for seq, _prev, _digest, body in rows:
            if is_announcement(body):
                self._anchor.announced(seq)
        if self._every and self._keys is not None:
            for seq, _prev, digest, _body in rows:
                if seq % self._every == 0:
                    try:
                        self._sign_and_store(seq, digest)
                    except DonjonError:  # the entries are stored; the next checkpoint covers them
                        log.exception("could not sign the ledger checkpoint at entry %d", seq)
        if self._anchor.has_pending():
            self._start_thread()

    def checkpoint(self) -> Checkpoint:
        """Sign the current head now (also what ``donjon audit checkpoint`` does)."""
        seq, digest = self.head()
        return self._sign_and_store(seq, digest)

    @property
    def key_id(self) -> str:
        """The signing key's id (looks the key up: raises when there is none)."""
        if self._keys is None:
            raise VerificationError("no signing key: checkpoints cannot be signed")
        if self._key_id is None:
            ids = self._keys.key_ids()
            if not ids:
                raise VerificationError("no signing key: checkpoints cannot be signed")
            self._key_id = ids[0]
        return self._key_id

    def _sign_and_store(self, seq: int, digest: str) -> Checkpoint:
        if self._keys is None:
            raise VerificationError("no signing key: checkpoints cannot be signed")
        key_id = self.key_id
        if not self._registered:
            if not self._store.register_key(key_id, self._keys.public_key_pem(key_id)):
                raise VerificationError(
                    f"the database registers another public key under key id {key_id!r}: "
                    "replicas must share one ledger key (docs/audit.md)"
                )
            self._registered = True
        now = self._clock.now()
        signature = self._keys.sign(key_id, signed_payload(self.name, seq, digest, now))
        checkpoint = Checkpoint(
            seq, digest, now, key_id, base64.b64encode(signature).decode(), self.name
        )
        self._store.add_checkpoint(checkpoint.to_dict())  # idempotent per seq
        self._anchor.signed(checkpoint, bool(self._witnesses))
        return checkpoint

    def entries(self, start: int = 1) -> Iterator[Row]:
        """The stored entries ``(seq, prev_hash, hash, body)`` from ``start``, in order."""
        return self._store.rows(start)

    def checkpoints(self) -> list[Mapping[str, Any]]:
        """The signed checkpoints stored in the database, oldest first."""
        return self._store.checkpoints()

    def head(self) -> tuple[int, str]:
        found = self._store.head()
        if found is None:
            raise AuditError("the ledger's head row is missing: run `donjon audit verify`")
        return found

    # -- anchoring: checkpoints on a timer and at shutdown, handed to witnesses --

    def start_anchoring(self) -> str:
        """Anchor the head from now on (a long-running process: the server).

        Checks the signing key (a clear error before serving), then signs the
        database's head whenever it moved past the last checkpoint, polled every
        ``checkpoint_seconds`` (whichever process appended), and once more at
        :meth:`close`. Returns the key id.
        """
        key_id = self.key_id
        self._serving = True
        self._start_thread()
        return key_id

    def _start_thread(self) -> None:
        if self._stopping.is_set():
            return
        if not (self._witnesses or (self._serving and self._seconds)):
            return
        with self._wake:
            if self._stopping.is_set():
                return
            if self._thread is None:
                self._thread = threading.Thread(
                    target=self._anchor_loop, name="ledger-anchor", daemon=True
                )
                self._thread.start()
            self._wake.notify_all()

    def _anchor_loop(self) -> None:
        next_poll = time.monotonic() + self._seconds
        while True:
            with self._wake:
                if self._stopping.is_set():
                    return
                if not self._anchor.has_pending():
                    wait = next_poll - time.monotonic() if self._poll() else 3600.0
                    self._wake.wait(timeout=max(0.0, wait))
                if self._stopping.is_set():
                    return
            poll = self._poll() and time.monotonic() >= next_poll
            if poll:
                next_poll = time.monotonic() + self._seconds
            try:
                self._anchor_once(sign_if_moved=poll)
            except Exception:  # the thread must outlive one bad round
                log.exception("ledger anchoring failed; retrying at the next poll")

    def _poll(self) -> bool:
        return self._serving and self._seconds > 0

    def _anchor_once(self, *, sign_if_moved: bool) -> None:
        """Sign the head if it moved past what is covered, then hand pending checkpoints out."""
        if sign_if_moved and self._keys is not None:
            try:
                self._sign_if_moved()
            except DonjonError as e:
                log.error("could not sign the ledger checkpoint: %s", e)
        for checkpoint in self._anchor.take_pending():
            for witness in self._witnesses:
                try:
                    witness.witness(checkpoint)
                except Exception as e:  # noqa: BLE001 - a witness never breaks the ledger
                    log.error(
                        "witness %s missed the checkpoint at entry %d: %s",
                        witness.name,
                        checkpoint.seq,
                        e,
                    )

    def _sign_if_moved(self) -> None:
        """Sign the head unless only checkpoints and their announcements lie past it.

        Checks the database, not only this process: of several replicas polling
        one ledger, one signs, and the others see its checkpoint and announcement.
        """
        found = self._store.head()
        if found is None:
            raise AuditError("the ledger's head row is missing: run `donjon audit verify`")
        if self._anchor.covered() == 0:
            latest = max((int(c["seq"]) for c in self._store.checkpoints()), default=0)
            self._anchor.cover(latest)
        covered = self._anchor.covered()
        if found[0] <= covered:
            return
        rows = self._store.rows(covered + 1)
        try:
            moved = any(not is_announcement(body) for _seq, _p, _h, body in rows)
        finally:
            close = getattr(rows, "close", None)
            if close is not None:
                close()
        if moved:
            self._sign_and_store(*found)
        else:
            self._anchor.cover(found[0])

    def flush(self) -> None:
        """Hand every signed checkpoint to the witnesses now (``audit checkpoint``)."""
        self._anchor_once(sign_if_moved=False)

    def close(self) -> None:
        """Stop anchoring; after :meth:`start_anchoring`, a clean shutdown signs the head.

        Every pending checkpoint goes to the witnesses. The shutdown
        checkpoint's own ``audit.checkpoint`` entry is covered by the next one.
        """
        with self._wake:
            self._stopping.set()
            self._wake.notify_all()
        if self._thread is not None:
            self._thread.join()
        self._anchor_once(sign_if_moved=self._serving)
        self._anchor_once(sign_if_moved=False)  # what announcing the last one signed, if anything

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

    def public_keys(self) -> dict[str, bytes]:
        return self._store.public_keys()

    def verify(
        self,
        *,
        public_key_pem: bytes | None = None,
        head: Checkpoint | None = None,
        witnessed: Sequence[Checkpoint] = (),
    ) -> Verification:
        """Check every entry, the head row, the signed checkpoints and outside copies.

        Checkpoint signatures are checked against the keys the database
        registers, or only against ``public_key_pem`` when it is given.
        ``head`` (a head file) and ``witnessed`` (a witness file, the SOC
        stream) are checkpoints kept outside the database.
        """
        checkpoints = [Checkpoint.from_dict(dict(c)) for c in self._store.checkpoints()]
        return verify_chain(
            self._store,
            checkpoints,
            keys=self._store.public_keys(),
            pinned_key=public_key_pem,
            head=head,
            witnessed=witnessed,
        )
