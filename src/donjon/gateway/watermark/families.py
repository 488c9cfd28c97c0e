"""Marks carried by near-copies: a principal's near-copy of a marked input gets its mark.

An attacker who augments a few natural inputs (shifts, rotations, noise) sends
near-copies of every marked input, answered truthfully, which outvote the mark
in its surrogate. So a query of a principal the detectors flag (the watermark's
``suspected``) that lies closer to one of that principal's earlier marks than
``radius`` -- the profile's own nearest-neighbour distance at
``family_quantile``: closer than that share of natural records are to their
nearest neighbour -- is answered with that mark's keyed class and recorded as a
mark of the same *family* (its root: the record of the mark drawn by the HMAC).
Its near-copies are then marked too, and the neighbour vote an attacker would
use to strip marks agrees with the mark.

A family is one piece of evidence (:mod:`.verdict`): its members' answers are
correlated, its keyed class was drawn once. An exact repeat of an earlier query
of the principal answered truthfully is not marked (it would tell the mark by
the change of answer); a repeat of a carried mark is (it is in the memory).

The memory holds, per principal, the last ``family_memory`` marks (rows in the
profile's scaled space, float32), for at most ``max_principals`` principals
in process, or in Redis (:class:`RedisFamilies`, one list per principal that
expires with the detector state) so that every replica carries the same marks.
It is read for flagged principals only (one dictionary look-up in process, one
``LRANGE`` with Redis): an ordinary principal's requests cost nothing more.
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Protocol

import numpy as np
import numpy.typing as npt

from donjon.gateway.redis_link import RedisLink

Rows = npt.NDArray[np.float32]
_ADDRESS = 64  # hex digits of a record address


@dataclass(frozen=True)
class Carrier:
    """One marked input of a principal: where it is, its keyed class, its family."""

    row: Rows  # scaled, float32, one dimension
    keyed: int
    family: str  # the address of the family's root record


@dataclass(frozen=True)
class Recalled:
    """A principal's remembered marks, as arrays for one distance pass."""

    rows: Rows  # marks x features
    keyed: npt.NDArray[np.int64]
    families: tuple[str, ...]

    @classmethod
    def of(cls, carriers: Sequence[Carrier]) -> Recalled:
        return cls(
            np.stack([c.row for c in carriers]),
            np.array([c.keyed for c in carriers], dtype=np.int64),
            tuple(c.family for c in carriers),
        )

    def nearest(self, row: npt.NDArray[np.float64]) -> tuple[int, float]:
        """The index of the remembered mark nearest ``row`` (scaled) and its distance."""
        diff = self.rows - row.astype(np.float32)
        dist = (diff * diff).sum(axis=1)
        index = int(dist.argmin())
        return index, float(np.sqrt(dist[index]))


class FamilyMemory(Protocol):
    async def recall(self, principal: str) -> Recalled | None:
        """The principal's remembered marks; None when it has none."""
        ...

    async def remember(self, principal: str, carriers: Sequence[Carrier]) -> None:
        """Keep these marks (the oldest are forgotten past the bound)."""
        ...


class MemoryFamilies:
    """In process: at most ``per_principal`` marks of at most ``max_principals``."""

    def __init__(self, per_principal: int, max_principals: int) -> None:
        self.per_principal = per_principal
        self.max_principals = max_principals
        self._marks: OrderedDict[str, list[Carrier]] = OrderedDict()
        self._recalled: dict[str, Recalled] = {}  # stacked once per change, not per request
        self._lock = threading.Lock()

    async def recall(self, principal: str) -> Recalled | None:
        with self._lock:
            carriers = self._marks.get(principal)
            if not carriers:
                return None
            self._marks.move_to_end(principal)
            recalled = self._recalled.get(principal)
            if recalled is None:
                recalled = self._recalled[principal] = Recalled.of(carriers)
            return recalled

    async def remember(self, principal: str, carriers: Sequence[Carrier]) -> None:
        with self._lock:
            kept = self._marks.setdefault(principal, [])
            kept.extend(carriers)
            del kept[: -self.per_principal]
            self._recalled.pop(principal, None)
            self._marks.move_to_end(principal)
            while len(self._marks) > self.max_principals:
                forgotten, _ = self._marks.popitem(last=False)
                self._recalled.pop(forgotten, None)


# KEYS[1]: the principal's list; ARGV: bound, ttl in ms, then the entries
_REMEMBER = """
for i = 3, #ARGV do redis.call('RPUSH', KEYS[1], ARGV[i]) end
redis.call('LTRIM', KEYS[1], -tonumber(ARGV[1]), -1)
redis.call('PEXPIRE', KEYS[1], ARGV[2])
return 1
"""


class RedisFamilies:
    """One Redis list per (model, principal): every replica carries the same marks."""

    def __init__(
        self,
        link: RedisLink,
        model: str,
        features: int,
        *,
        prefix: str,
        per_principal: int,
        ttl_seconds: float,
    ) -> None:
        self.link = link
        self.features = features
        self.per_principal = per_principal
        self.ttl_ms = max(1, int(ttl_seconds * 1000))
        self._prefix = f"{prefix}{model}:families:"

    async def recall(self, principal: str) -> Recalled | None:
        raw = await self.link.command("LRANGE", self._prefix + principal, 0, -1)
        if not raw:
            return None
        return Recalled.of([self._decode(entry) for entry in raw])

    async def remember(self, principal: str, carriers: Sequence[Carrier]) -> None:
        entries = [self._encode(c) for c in carriers]
        await self.link.run(
            _REMEMBER, [self._prefix + principal], [self.per_principal, self.ttl_ms, *entries]
        )

    def _encode(self, carrier: Carrier) -> bytes:
        head = carrier.keyed.to_bytes(4, "little") + carrier.family.encode()
        return head + carrier.row.astype("<f4").tobytes()

    def _decode(self, entry: bytes) -> Carrier:
        row = np.frombuffer(entry, dtype="<f4", offset=4 + _ADDRESS)
        if len(row) != self.features:
            raise ValueError("a remembered watermark mark does not fit the model's features")
        keyed = int.from_bytes(entry[:4], "little")
        return Carrier(row.astype(np.float32), keyed, entry[4 : 4 + _ADDRESS].decode())
