"""Where each principal's detector state lives: in the process, or in Redis.

Every request opens the principal's state once (:meth:`StateStore.open`): its
sticky refusals are checked, the quota buckets charged, then the state is locked
and read; the pipeline runs the detectors on it and closes it (the state saved,
new refusals recorded, the lock released). :meth:`StateStore.label` records the
model's answers once they come back.

:class:`MemoryStates` keeps the states of one process (:class:`~.state.StateTable`,
least recently used evicted). :class:`RedisStates` keeps them in Redis through
``redis.asyncio``, so that several workers and replicas see one principal's whole
history and detect at the same query count as one process would. A principal's
requests in one process queue on an ``asyncio`` lock, so only requests of other
processes wait on its Redis lock. A request costs three round trips: one Lua
script to check refusals, take the quota buckets (when the quotas are in Redis on
the same URL), take the lock and read the state; one to save what changed, refuse
and unlock; one pipeline for the answers' labels. Keys:

* ``<prefix><model>:<principal>``: the counters, the bisection flags and the line
  test's spans (about 1 KB), rewritten by each request;
* ``...:rows``: the window of scaled rows (float32), each request writing only the
  rows it added (``SETRANGE``);
* ``...:lock``: the per-principal lock (a random token, with a timeout);
* ``...:labels``: the model's answer (int32) per window slot, written by the
  answering replica with one ``SETRANGE`` per slot, no lock needed;
* ``...:refused``: the sticky refusals (a hash: rule id -> end and action), the end
  in Redis's own clock, so replicas with different clocks agree on it.

Memory per principal is bounded by the window: ``window x (features + 2) x 4``
bytes and a few hundred more; every key expires ``ttl`` seconds after the
principal's last query (the in-process table's eviction, by time). Redis failing
raises :class:`~donjon.gateway.redis_link.StateUnavailable`: the request is refused.
"""

from __future__ import annotations

import asyncio
import json
import struct
import time
import uuid
from collections.abc import Iterator, Sequence
from contextlib import contextmanager, suppress
from dataclasses import dataclass
from typing import Any, Protocol

import numpy as np
import numpy.typing as npt

from donjon.gateway.detectors import Action
from donjon.gateway.detectors.state import UNKNOWN, PrincipalState, StateTable
from donjon.gateway.quotas import BUCKET_LUA, Bucket, QuotaResult, QuotaStore, RedisQuotas
from donjon.gateway.redis_link import RedisLink, StateUnavailable

_HEADER = struct.Struct("<I")
_VERSION = 2  # the layout of the values below
_UNKNOWN = struct.pack("<i", UNKNOWN)
# refusals of KEYS[1] whose end (Redis time) has not passed; sets ``now``
_REFUSALS_LUA = """
local t = redis.call('TIME')
local now = tonumber(t[1]) + tonumber(t[2]) / 1000000
local function active(key)
  local out = {}
  local all = redis.call('HGETALL', key)
  for i = 1, #all, 2 do
    local value = all[i + 1]
    local bar = string.find(value, '|', 1, true)
    local left = bar and (tonumber(string.sub(value, 1, bar - 1)) or 0) - now or 0
    if left > 0 then
      out[#out + 1] = all[i]
      out[#out + 1] = tostring(left)
      out[#out + 1] = string.sub(value, bar + 1)
    end
  end
  return out
end
"""
# KEYS: refused, lock, state, labels, rows, then one quota bucket per charge
# ARGV: lock token, lock ms, charges, then burst, rate, cost per charge
_OPEN = (
    BUCKET_LUA
    + _REFUSALS_LUA
    + """
local refused = active(KEYS[1])
if #refused > 0 then
  return {'refused', refused[1], refused[3]}
end
for i = 1, tonumber(ARGV[3]) do
  local burst, rate = tonumber(ARGV[1 + 3 * i]), tonumber(ARGV[2 + 3 * i])
  local cost = tonumber(ARGV[3 + 3 * i])
  local allowed, tokens = take(KEYS[5 + i], burst, rate, cost, now)
  if not allowed then
    return {'quota', tostring(i), tostring((cost - tokens) / rate)}
  end
end
if redis.call('SET', KEYS[2], ARGV[1], 'NX', 'PX', ARGV[2]) then
  local get = function(key) return redis.call('GET', key) or '' end
  return {'open', get(KEYS[3]), get(KEYS[4]), get(KEYS[5])}
end
return {'locked'}
"""
)
# KEYS: lock, state, labels, refused, rows
# ARGV: token, ttl, state, fresh, window, unknown label, row bytes, pushed count,
#       (slot, row)..., refusal count, (rule, seconds, action)...
_CLOSE = """
if redis.call('GET', KEYS[1]) ~= ARGV[1] then
  return 0
end
local ttl = tonumber(ARGV[2])
local unknown = ARGV[6]
local width = tonumber(ARGV[7])
redis.call('SET', KEYS[2], ARGV[3], 'EX', ttl)
if ARGV[4] == '1' then
  redis.call('SET', KEYS[3], string.rep(unknown, tonumber(ARGV[5])), 'EX', ttl)
end
local pushed = tonumber(ARGV[8])
for i = 1, pushed do
  local slot = tonumber(ARGV[7 + 2 * i])
  redis.call('SETRANGE', KEYS[3], slot * 4, unknown)
  redis.call('SETRANGE', KEYS[5], slot * width, ARGV[8 + 2 * i])
end
redis.call('EXPIRE', KEYS[3], ttl)
redis.call('EXPIRE', KEYS[5], ttl)
local base = 9 + 2 * pushed
local count = tonumber(ARGV[base])
if count > 0 then
  local t = redis.call('TIME')
  local now = tonumber(t[1]) + tonumber(t[2]) / 1000000
  local longest = redis.call('TTL', KEYS[4])
  for j = 0, count - 1 do
    local seconds = tonumber(ARGV[base + 2 + 3 * j])
    local value = string.format('%.6f', now + seconds) .. '|' .. ARGV[base + 3 + 3 * j]
    redis.call('HSET', KEYS[4], ARGV[base + 1 + 3 * j], value)
    longest = math.max(longest, math.ceil(seconds) + 1)
  end
  redis.call('EXPIRE', KEYS[4], longest)
end
redis.call('DEL', KEYS[1])
return 1
"""
# release the lock only if this request still holds it
_RELEASE = """
if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('DEL', KEYS[1]) end
return 0
"""
_REFUSALS = _REFUSALS_LUA + "return active(KEYS[1])"


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
    token: str = ""
    fresh: bool = False


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


class RedisStates:
    """States shared by every worker and replica through Redis (``redis.asyncio``)."""

    def __init__(
        self,
        link: RedisLink,
        *,
        window: int,
        features: int,
        prefix: str,
        ttl: float = 86_400.0,
        lock_timeout: float = 5.0,
    ) -> None:
        self.link = link
        self.window = window
        self.features = features
        self.prefix = prefix
        self.ttl = max(1, int(ttl))
        self.lock_timeout = lock_timeout
        self._local: dict[str, tuple[asyncio.Lock, int]] = {}  # key -> lock, its users

    @classmethod
    def from_url(cls, url: str, **kwargs: Any) -> RedisStates:
        return cls(RedisLink(url), **kwargs)

    async def open(
        self, key: str, quotas: QuotaStore, charges: Sequence[Charge], now: float
    ) -> Opened:
        # a principal's requests in this process queue here, not on Redis's lock: only
        # requests of other processes ever poll it
        await self._enter(key)
        try:
            opened = await self._open(key, quotas, charges, now)
        except BaseException:
            self._leave(key)
            raise
        if opened.state is None:
            self._leave(key)
        return opened

    async def _open(
        self, key: str, quotas: QuotaStore, charges: Sequence[Charge], now: float
    ) -> Opened:
        name = self.prefix + key
        token = uuid.uuid4().hex
        keys = [name + ":refused", name + ":lock", name, name + ":labels", name + ":rows"]
        millis = int(self.lock_timeout * 1000)
        # the quota buckets in the same script when they live in the same Redis
        folded = isinstance(quotas, RedisQuotas) and quotas.link is self.link
        inline = list(charges) if folded else []
        args: list[Any] = [token, millis, len(inline)]
        for charge in inline:
            keys.append(f"{quotas.prefix}{charge.key}")  # type: ignore[attr-defined]
            args += [charge.bucket.burst, charge.bucket.rate, charge.cost]
        got = await self.link.run(_OPEN, keys, args)
        deadline = time.monotonic() + self.lock_timeout
        pause = 0.001
        while got[0] == b"locked":  # another process serves this principal now
            if time.monotonic() > deadline:
                raise StateUnavailable(f"detector state of {name!r} stays locked")
            await asyncio.sleep(pause)
            pause = min(pause * 2, 0.008)
            got = await self.link.run(_OPEN, keys[:5], [token, millis, 0])
        if got[0] == b"refused":
            return Opened(key, refused=(got[1].decode(), Action(got[2].decode())), now=now)
        if got[0] == b"quota":
            charge = inline[int(got[1]) - 1]
            return Opened(key, denied=(charge.key, QuotaResult(False, float(got[2]))), now=now)
        try:
            for charge in [] if folded else charges:
                result = await quotas.take(charge.key, charge.bucket, charge.cost)
                if not result.allowed:
                    await self._unlock(name, token)
                    return Opened(key, denied=(charge.key, result), now=now)
            state = self._decode(got[1] or None, got[3] or None, got[2] or None)
        except BaseException:
            await self._unlock(name, token)
            raise
        return Opened(key, state=state, now=now, token=token, fresh=not got[1])

    async def close(self, opened: Opened, refusals: Sequence[Refusal]) -> None:
        state = opened.state
        if state is None:
            return
        opened.state = None
        name = self.prefix + opened.key
        keys = [name + ":lock", name, name + ":labels", name + ":refused", name + ":rows"]
        args: list[Any] = [opened.token, self.ttl, self._encode(state), int(opened.fresh)]
        args += [self.window, _UNKNOWN, self.features * 4, len(state.pushed)]
        for slot in state.pushed:  # only the rows this request added
            args += [slot, state.rows[slot].astype("<f4").tobytes()]
        args.append(len(refusals))
        for refusal in refusals:
            args += [refusal.rule_id, max(refusal.seconds, 0.001), refusal.action.value]
        try:
            saved = await self.link.run(_CLOSE, keys, args)
        finally:
            self._leave(opened.key)
        state.pushed.clear()
        if int(saved) != 1:
            raise StateUnavailable(f"the lock on {name!r} expired before its state was saved")

    async def abort(self, opened: Opened) -> None:
        if opened.state is None:
            return
        opened.state = None
        try:
            await self._unlock(self.prefix + opened.key, opened.token)
        finally:
            self._leave(opened.key)

    async def _unlock(self, name: str, token: str) -> None:
        with suppress(StateUnavailable):  # else it expires (lock_timeout)
            await self.link.run(_RELEASE, [name + ":lock"], [token])

    async def _enter(self, key: str) -> None:
        lock, users = self._local.get(key, (None, 0))
        if lock is None:
            lock = asyncio.Lock()
        self._local[key] = (lock, users + 1)  # bounded: only keys in use are kept
        try:
            await lock.acquire()
        except BaseException:
            self._forget(key)
            raise

    def _leave(self, key: str) -> None:
        self._local[key][0].release()
        self._forget(key)

    def _forget(self, key: str) -> None:
        lock, users = self._local[key]
        if users <= 1:
            del self._local[key]
        else:
            self._local[key] = (lock, users - 1)

    async def refusals(self, key: str, now: float) -> dict[str, tuple[float, Action]]:
        raw = await self.link.run(_REFUSALS, [self.prefix + key + ":refused"], [])
        out = {}
        for i in range(0, len(raw), 3):
            out[raw[i].decode()] = (now + float(raw[i + 1]), Action(raw[i + 2].decode()))
        return out

    async def label(self, key: str, slots: list[int], labels: npt.NDArray[np.int64]) -> None:
        name = self.prefix + key + ":labels"
        pipe = self.link.client().pipeline(transaction=False)
        for slot, value in zip(slots, labels, strict=False):
            if 0 <= slot < self.window:
                pipe.setrange(name, slot * 4, struct.pack("<i", int(value)))
        if len(pipe):
            await self.link.call(pipe.execute())

    # -- encoding ---------------------------------------------------------------

    def _encode(self, state: PrincipalState) -> bytes:
        """Everything but the window's rows: counters, the bisection flags, the spans."""
        last = state.spans
        header = {
            "v": _VERSION,
            "walk": state.walk,
            "size": state.size,
            "cursor": state.cursor,
            "queries": state.queries,
            "ood": state.ood,
            "tested": state.tested,
            "synthetic": state.synthetic,
            "cusum": state.cusum,
            "scatter": state.scatter,
            "grid_seen": state.grid_seen,
            "grid_off": state.grid_off,
            "last": -1 if last is None else len(last),
        }
        head = json.dumps(header, separators=(",", ":")).encode()
        body = state.bisecting.tobytes()
        if last is not None:
            body += np.asarray(last, dtype=np.float32).tobytes()
        return _HEADER.pack(len(head)) + head + body

    def _decode(
        self, blob: bytes | None, rows: bytes | None, labels: bytes | None
    ) -> PrincipalState:
        state = PrincipalState(self.window, self.features)
        if blob is None:
            return state
        try:
            (size,) = _HEADER.unpack_from(blob)
            header = json.loads(blob[4 : 4 + size])
            if header.get("v") != _VERSION:  # another release's layout: start afresh
                return state
            body = memoryview(blob)[4 + size :]
            state.bisecting = np.frombuffer(body[: self.window], dtype=np.bool_).copy()
            last = int(header["last"])
            if last >= 0:
                span = body[self.window : self.window + 4 * last]
                state.spans = np.frombuffer(span, dtype=np.float32).copy()
            cells = self.window * self.features * 4
            stored = (rows or b"")[:cells]  # SETRANGE wrote up to the highest slot used
            flat = np.frombuffer(stored + bytes(cells - len(stored)), dtype="<f4")
            state.rows = flat.reshape(self.window, self.features).astype(np.float32)
        except (ValueError, KeyError, struct.error) as e:
            raise StateUnavailable(f"malformed detector state in Redis: {e}") from e
        for name in ("walk", "size", "cursor", "queries", "ood", "tested", "synthetic"):
            setattr(state, name, int(header[name]))
        state.cusum = float(header["cusum"])
        state.scatter = float(header.get("scatter", 0.0))
        state.grid_seen, state.grid_off = int(header["grid_seen"]), int(header["grid_off"])
        if labels is not None and len(labels) >= 4 * self.window:
            state.labels = np.frombuffer(labels[: 4 * self.window], dtype="<i4").astype(np.int32)
        return state
