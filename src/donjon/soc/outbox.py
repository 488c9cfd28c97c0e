"""Delivery without loss: the durable outbox and the per-sink dispatcher.

:class:`Outbox` (``donjon.soc.journal``) is the bus's journal: ``append`` returns
only once the event is committed to the store, so an acknowledged event survives
a crash.

:class:`Dispatcher` delivers stored events to each sink in order, from that
sink's own cursor. A sink that raises :class:`SinkUnavailable` (down,
refusing, timing out) is retried with exponential back-off for as long as it
takes and catches up in order when it returns; any other error counts as an
attempt against the event at the head of the queue, and after
``max_attempts`` that event is parked in the dead-letter list and the cursor
moves on. Delivery is at least once; sinks use the event uid as their
idempotency key where the collector supports one (Elasticsearch ``_id``, NATS
``Nats-Msg-Id``).

Several processes may share one outbox (``donjon server --workers``, a gateway
and a vault on one database): when the store offers a :class:`LeaseStore`, a
dispatcher delivers only while it holds the outbox's relay lease, renewed every
round, so one relay delivers at a time and another takes over when it stops or
its lease runs out.
"""

from __future__ import annotations

import logging
import os
import random
import socket
import threading
import time
import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol, runtime_checkable

from donjon.core.events import SCHEMA_VERSION, SecurityEvent
from donjon.core.ports import EventSink
from donjon.errors import DonjonError, ExportError
from donjon.soc import jsonfast
from donjon.soc.journal import Outbox, OutboxStore, outbox_row

__all__ = [
    "BatchSink", "Dispatcher", "LeaseStore", "Outbox", "OutboxStore", "PayloadSink",
    "SinkState", "SinkUnavailable", "outbox_row",
]  # fmt: skip

log = logging.getLogger(__name__)


class SinkUnavailable(ExportError):
    """The collector cannot take events now (down, refused, timed out): retry later."""


@runtime_checkable
class LeaseStore(Protocol):
    """A store that can elect one relay among processes (``SqlOutboxStore``)."""

    def acquire_lease(self, name: str, holder: str, ttl: float) -> bool: ...

    def release_lease(self, name: str, holder: str) -> None: ...


RELAY_LEASE = "relay"


def _holder_id() -> str:
    return f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:8]}"


@runtime_checkable
class BatchSink(Protocol):
    """A sink that sends many events in one request (HEC, ``_bulk``, one TCP write)."""

    name: str

    def emit(self, event: SecurityEvent) -> None: ...

    def emit_batch(self, events: Sequence[SecurityEvent]) -> None: ...


@runtime_checkable
class PayloadSink(Protocol):
    """A sink that takes the stored JSON payloads as they are (the JSON-lines file)."""

    name: str

    def emit(self, event: SecurityEvent) -> None: ...

    def emit_payloads(self, payloads: Sequence[str]) -> None: ...


@dataclass
class SinkState:
    """Back-off state of one sink (in memory; the cursor itself is stored)."""

    attempts: int = 0  # failed attempts on the event at the head (poison count)
    failures: int = 0  # consecutive failed rounds (back-off exponent)
    head_seq: int = 0
    not_before: float = 0.0
    last_error: str | None = None
    delivered: int = 0
    dead: int = 0


@dataclass
class Dispatcher:
    """Delivers the outbox to its sinks; ``run_once`` / ``drain`` / ``start`` + ``stop``."""

    store: OutboxStore
    sinks: Sequence[EventSink]
    batch_size: int = 500
    max_attempts: int = 5
    backoff_base: float = 0.5
    backoff_max: float = 60.0
    idle_wait: float = 0.2
    lease_ttl: float = 10.0
    standby_wait: float = 1.0  # how often a process without the lease asks for it
    holder: str = field(default_factory=_holder_id)
    clock: Callable[[], float] = time.monotonic
    states: dict[str, SinkState] = field(default_factory=dict)
    _stop: threading.Event = field(default_factory=threading.Event, repr=False)
    _round: threading.Lock = field(default_factory=threading.Lock, repr=False)
    _thread: threading.Thread | None = field(default=None, repr=False)
    _lease_until: float = field(default=0.0, repr=False)

    def __post_init__(self) -> None:
        names = [s.name for s in self.sinks]
        if len(set(names)) != len(names):
            raise ExportError(f"two sinks share a name (each keeps a cursor by name): {names}")
        for name in names:
            self.states.setdefault(name, SinkState())

    def run_once(self) -> int:
        """One delivery round over every sink that is not backing off; events delivered.

        Rounds never overlap (a ``drain`` while the background thread runs waits its
        turn), so two rounds never send the same batch from the same cursor.
        """
        with self._round:
            moved = 0
            for sink in self.sinks:
                if not self._hold_lease():
                    break
                moved += self._deliver(sink)
            return moved

    @property
    def is_relay(self) -> bool:
        """Whether this dispatcher held the relay lease at its last check."""
        return self._lease_until > self.clock()

    def _hold_lease(self) -> bool:
        """Take or renew the relay lease (renewed once a third of it has passed)."""
        store = self.store
        if not isinstance(store, LeaseStore):
            return True
        now = self.clock()
        if now < self._lease_until - self.lease_ttl * 2 / 3:
            return True
        if store.acquire_lease(RELAY_LEASE, self.holder, self.lease_ttl):
            if self._lease_until <= now:
                log.info("outbox: %s is now the relay", self.holder)
            self._lease_until = now + self.lease_ttl
            return True
        self._lease_until = 0.0
        return False

    def _release_lease(self) -> None:
        with self._round:
            if isinstance(self.store, LeaseStore) and self._lease_until > 0:
                self._lease_until = 0.0
                try:
                    self.store.release_lease(RELAY_LEASE, self.holder)
                except DonjonError:  # it expires on its own
                    log.warning("outbox: could not release the relay lease", exc_info=True)

    def guarantees(self) -> dict[str, str]:
        """Each sink's delivery guarantee: ``at-least-once`` unless it says otherwise
        (syslog over UDP is ``lossy``: nothing acknowledges a datagram)."""
        return {s.name: str(getattr(s, "guarantee", "at-least-once")) for s in self.sinks}

    def lag(self) -> dict[str, int]:
        """Events stored but not yet delivered (or parked), per sink."""
        return {s.name: self.store.count_after(self.store.position(s.name)) for s in self.sinks}

    def drain(self, timeout: float = 10.0) -> bool:
        """Deliver until every sink is caught up or ``timeout`` passes; True if caught up.

        While another process holds the relay lease, this waits for that relay to
        catch up instead; a lease taken here is given up on return unless the
        background thread runs."""
        try:
            return self._drain(timeout)
        finally:
            if self._thread is None:
                self._release_lease()

    def _drain(self, timeout: float) -> bool:
        deadline = self.clock() + timeout
        while True:
            if self.run_once():
                continue  # more may be waiting: no sleep while events flow
            if not any(self.lag().values()):
                return True
            now = self.clock()
            if now >= deadline:
                return False
            waits = [st.not_before - now for st in self.states.values() if st.not_before > now]
            time.sleep(max(0.001, min([*waits, deadline - now, self.idle_wait])))

    def start(self) -> None:
        """Deliver in a background thread until :meth:`stop`."""
        if self._thread is not None:
            return
        self._stop.clear()
        self._thread = threading.Thread(target=self._loop, name="donjon-outbox", daemon=True)
        self._thread.start()

    def stop(self, drain_timeout: float = 0.0) -> None:
        """Stop the background thread, deliver what is left (for up to ``drain_timeout``
        seconds) and give the relay lease up for another process to take."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join()
            self._thread = None
        try:
            if drain_timeout > 0:
                self._drain(drain_timeout)
        finally:
            self._release_lease()

    def _loop(self) -> None:
        while not self._stop.is_set():
            try:
                moved = self.run_once()
            except DonjonError:  # the store itself is unavailable: wait and retry
                log.exception("outbox delivery round failed")
                moved = 0
            # Only a full batch means more is waiting now; after a partial one the relay
            # waits too, so that under load a round carries many requests' events rather
            # than polling for each (the stored events are safe meanwhile).
            if moved < self.batch_size:
                self._stop.wait(self.idle_wait if self.is_relay else self.standby_wait)

    # -- one sink ------------------------------------------------------------

    def _deliver(self, sink: EventSink) -> int:
        state = self.states[sink.name]
        if self.clock() < state.not_before:
            return 0
        position = self.store.position(sink.name)
        rows = self.store.read_after(position, self.batch_size)
        if not rows:
            return 0
        if isinstance(sink, PayloadSink):
            return self._deliver_payloads(sink, state, rows)
        events: list[tuple[int, str, SecurityEvent]] = []
        for seq, uid, payload in rows:
            try:
                events.append((seq, uid, SecurityEvent.from_dict(jsonfast.loads(payload))))
            except ValueError as bad:  # unreadable row: poison, whatever the sink
                if events:
                    break
                self._park(sink, state, seq, uid, f"unreadable event: {bad}")
                return 0
        try:
            if isinstance(sink, BatchSink) and len(events) > 1:
                sink.emit_batch([event for _, _, event in events])
            else:
                events = events[:1]
                sink.emit(events[0][2])
        except SinkUnavailable as e:
            self._back_off(sink, state, str(e))
            return 0
        except Exception as e:  # noqa: BLE001 - any sink error is a failed attempt
            if len(events) > 1:  # isolate the poison event: go one by one from the head
                events = events[:1]
                try:
                    sink.emit(events[0][2])
                except SinkUnavailable as e2:
                    self._back_off(sink, state, str(e2))
                    return 0
                except Exception as e2:  # noqa: BLE001
                    return self._failed(sink, state, events[0], e2)
            else:
                return self._failed(sink, state, events[0], e)
        last_seq = events[-1][0]
        self.store.advance(sink.name, last_seq)
        state.attempts, state.failures, state.not_before, state.last_error = 0, 0, 0.0, None
        state.delivered += len(events)
        return len(events)

    def _deliver_payloads(
        self, sink: PayloadSink, state: SinkState, rows: list[tuple[int, str, str]]
    ) -> int:
        """The stored JSON goes out as it is, after a cheap check that it is our event
        (written by :func:`_row`: compact, key-sorted, so these fragments are exact)."""
        good: list[tuple[int, str]] = []
        schema = f'"schema":{SCHEMA_VERSION},'
        for seq, uid, payload in rows:
            valid = (
                payload.startswith("{")
                and payload.endswith("}")
                and schema in payload
                and f'"uid":"{uid}"' in payload
            )
            if not valid:
                if good:
                    break
                self._park(sink, state, seq, uid, "unreadable event: not a Donjon event")
                return 0
            good.append((seq, payload))
        try:
            sink.emit_payloads([p for _, p in good])
        except SinkUnavailable as e:
            self._back_off(sink, state, str(e))
            return 0
        except Exception as e:  # noqa: BLE001 - a failed write is a failed attempt
            self._back_off(sink, state, f"{type(e).__name__}: {e}")
            return 0
        self.store.advance(sink.name, good[-1][0])
        state.attempts, state.failures, state.not_before, state.last_error = 0, 0, 0.0, None
        state.delivered += len(good)
        return len(good)

    def _failed(
        self, sink: EventSink, state: SinkState, head: tuple[int, str, SecurityEvent], error: Any
    ) -> int:
        seq, uid, _ = head
        if state.head_seq != seq:
            state.head_seq, state.attempts = seq, 0
        state.attempts += 1
        message = f"{type(error).__name__}: {error}"
        if state.attempts >= self.max_attempts:
            self._park(sink, state, seq, uid, message)
            return 0
        self._back_off(sink, state, message)
        return 0

    def _park(self, sink: EventSink, state: SinkState, seq: int, uid: str, error: str) -> None:
        log.error("outbox: event %s parked for sink %s: %s", uid, sink.name, error)
        self.store.add_dead_letter(sink.name, seq, uid, max(state.attempts, 1), error)
        self.store.advance(sink.name, seq)
        state.attempts, state.failures, state.not_before = 0, 0, 0.0
        state.dead += 1

    def _back_off(self, sink: EventSink, state: SinkState, error: str) -> None:
        state.failures += 1
        exponent = min(state.failures, 16)
        delay = min(self.backoff_max, self.backoff_base * 2 ** (exponent - 1))
        delay *= 0.75 + random.random() / 2  # noqa: S311 - jitter, not security
        state.not_before = self.clock() + delay
        state.last_error = error
        log.warning("outbox: sink %s failed (%s); retry in %.2fs", sink.name, error, delay)
