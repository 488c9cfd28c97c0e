"""Where each principal's detector state lives: in the process, or in Redis.

Every request opens the principal's state once (:meth:`StateStore.open`): its
sticky refusals are checked, the quota buckets charged, then the state is locked
and read; the pipeline runs the detectors on it and closes it (the state saved,
new refusals recorded, the lock released). :meth:`StateStore.label` records the
model's answers once they come back.

:class:`MemoryStates` keeps the states of one process (:class:`~.state.StateTable`,
least recently used evicted); :class:`~.redis_states.RedisStates` keeps them in
Redis, so that several workers and replicas see one principal's whole history.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Protocol

import numpy as np
import numpy.typing as npt

from donjon.gateway.detectors import Action
from donjon.gateway.detectors.state import PrincipalState, StateTable
from donjon.gateway.quotas import Bucket, QuotaResult, QuotaStore


@dataclass(frozen=True)
class Charge:
    """``cost`` tokens to take from the quota bucket ``key``."""

    key: str
    bucket: Bucket
    cost: float


@dataclass(frozen=True)
class Refusal:
    """Refuse the principal under ``rule_id`` for ``seconds``."""

    rule_id: str
    action: Action
    seconds: float


@dataclass
class Opened:
    """One request's hold on a principal's state; ``state`` is None when refused or over quota."""

    key: str
    state: PrincipalState | None = None
    refused: tuple[str, Action] | None = None  # a sticky refusal in force
    denied: tuple[str, QuotaResult] | None = None  # the quota bucket that refused
    now: float = 0.0
    token: str = ""  # the Redis lock's, and the tag of the state it saves


class StateStore(Protocol):
    async def open(
        self, key: str, quotas: QuotaStore, charges: Sequence[Charge], now: float
    ) -> Opened:
        """Check refusals, charge the quotas, then lock and read the principal's state.

        The caller must :meth:`close` or :meth:`abort` an opened state, with no
        ``await`` between (the in-process store holds a thread lock).
        """
        ...

    async def close(self, opened: Opened, refusals: Sequence[Refusal]) -> None:
        """Save the state, record the new refusals and release the lock."""
        ...

    async def abort(self, opened: Opened) -> None:
        """Release the lock without saving."""
        ...

    async def refusals(self, key: str, now: float) -> dict[str, tuple[float, Action]]:
        """Sticky refusals in force: rule id -> (until, on ``now``'s clock; action)."""
        ...

    async def label(self, key: str, slots: list[int], labels: npt.NDArray[np.int64]) -> None:
        """Record the model's answers for the window slots of one request."""
        ...

    async def aclose(self) -> None:
        """Finish the work still in flight (saves, unlocks) before the loop ends."""
        ...


class MemoryStates:
    """One process's states (bounded by ``max_principals``, LRU); no method suspends."""

    def __init__(self, *, window: int, features: int, max_principals: int) -> None:
        self.table = StateTable(window=window, features=features, max_principals=max_principals)

    @contextmanager
    def session(self, key: str) -> Iterator[PrincipalState]:
        """The principal's state under the table's lock (direct use, without quotas)."""
        with self.table.lock:
            state = self.table.get(key)
            yield state
            state.pushed.clear()

    async def open(
        self, key: str, quotas: QuotaStore, charges: Sequence[Charge], now: float
    ) -> Opened:
        with self.table.lock:
            blocked = dict(self.table.get(key).blocked_until)
        for rule_id, (until, action) in blocked.items():
            if until > now:
                return Opened(key, refused=(rule_id, action), now=now)
        for charge in charges:
            result = await quotas.take(charge.key, charge.bucket, charge.cost)
            if not result.allowed:
                return Opened(key, denied=(charge.key, result), now=now)
        self.table.lock.acquire()  # released by close() or abort()
        return Opened(key, state=self.table.get(key), now=now)

    async def close(self, opened: Opened, refusals: Sequence[Refusal]) -> None:
        if opened.state is None:
            return
        try:
            for refusal in refusals:
                until = opened.now + refusal.seconds
                opened.state.blocked_until[refusal.rule_id] = (until, refusal.action)
            opened.state.pushed.clear()
        finally:
            opened.state = None
            self.table.lock.release()

    async def abort(self, opened: Opened) -> None:
        if opened.state is not None:
            opened.state = None
            self.table.lock.release()

    async def refusals(self, key: str, now: float) -> dict[str, tuple[float, Action]]:
        with self.table.lock:
            blocked = dict(self.table.get(key).blocked_until)
        return {rule: (until, action) for rule, (until, action) in blocked.items() if until > now}

    async def label(self, key: str, slots: list[int], labels: npt.NDArray[np.int64]) -> None:
        with self.table.lock:
            state = self.table.get(key)
            for slot, value in zip(slots, labels, strict=False):
                if slot >= 0:
                    state.label(slot, int(value))

    async def aclose(self) -> None:
        """Nothing runs in the background."""
