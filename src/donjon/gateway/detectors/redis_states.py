"""Detector state shared by every worker and replica through Redis.

Several workers and replicas see one principal's whole history and detect at the
same query count as one process would. A request costs three round trips: one Lua
script checks the principal's refusals, takes the quota buckets (when the quotas
are in Redis on the same URL), takes the lock and reads the state; one saves what
changed, refuses and unlocks; one ``BITFIELD`` writes the answers' labels.

Each process keeps the states it saved last (least recently used evicted, at most
``max_cached``): every save writes a fresh random tag at the head of the state,
and a request whose cached tag is still the one in Redis (no other process saved
since) reads only the labels (``window x 4`` bytes), not the window's rows. A
principal's requests in one process queue on an ``asyncio`` lock, so only
requests of other processes wait on its Redis lock. Keys:

* ``<prefix><model>:<principal>``: the tag, then the counters, the bisection flags
  and the line test's spans (packed, about 700 bytes), rewritten by each request;
* ``...:rows``: the window of scaled rows (float32), each request writing only the
  rows it added (``SETRANGE``);
* ``...:lock``: the per-principal lock (the request's tag, with a timeout);
* ``...:labels``: the model's answer + 1 (big-endian int32, 0: not known yet) per
  window slot, written by the answering replica (``BITFIELD``), no lock needed;
* ``...:refused``: the sticky refusals (a hash: rule id -> end and action), the end
  in Redis's own clock, so replicas with different clocks agree on it.

Memory per principal is bounded by the window: ``window x (features + 2) x 4``
bytes and a few hundred more; every key expires ``ttl`` seconds after the
principal's last query (the in-process table's eviction, by time). Redis failing
raises :class:`~donjon.gateway.redis_link.StateUnavailable`: the request is refused.
"""

from __future__ import annotations

import asyncio
import os
import struct
import time
from collections import OrderedDict
from collections.abc import Sequence
from contextlib import suppress
from operator import attrgetter
from typing import Any

import numpy as np
import numpy.typing as npt

from donjon.gateway.detectors import Action
from donjon.gateway.detectors.state import PrincipalState
from donjon.gateway.detectors.stores import Charge, Opened, Refusal
from donjon.gateway.quotas import BUCKET_LUA, QuotaResult, QuotaStore, RedisQuotas
from donjon.gateway.redis_link import RedisLink, StateUnavailable

TAG = 16  # hex characters of a save's random tag, at the head of the state
_VERSION = 3  # the layout of the values below
# the counters of a PrincipalState, packed: version, these, then the spans' length (-1: none)
_FIELDS: tuple[str, ...] = ("walk", "size", "cursor", "queries", "ood", "tested", "synthetic")
_FIELDS += ("cusum", "scatter", "grid_seen", "grid_off")
_COUNTERS = struct.Struct("<B7qdd2qq")
_counters = attrgetter(*_FIELDS)
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
# ARGV: tag, lock ms, cached tag, charges, then burst, rate, cost per charge
_OPEN = (
    BUCKET_LUA
    + _REFUSALS_LUA
    + f"""
local refused = active(KEYS[1])
if #refused > 0 then
  return {{'refused', refused[1], refused[3]}}
end
for i = 1, tonumber(ARGV[4]) do
  local burst, rate = tonumber(ARGV[2 + 3 * i]), tonumber(ARGV[3 + 3 * i])
  local cost = tonumber(ARGV[4 + 3 * i])
  local allowed, tokens = take(KEYS[5 + i], burst, rate, cost, now)
  if not allowed then
    return {{'quota', tostring(i), tostring((cost - tokens) / rate)}}
  end
end
if not redis.call('SET', KEYS[2], ARGV[1], 'NX', 'PX', ARGV[2]) then
  return {{'locked'}}
end
local labels = redis.call('GET', KEYS[4]) or ''
local tag = redis.call('GETRANGE', KEYS[3], 0, {TAG - 1})
if tag ~= '' and tag == ARGV[3] then
  return {{'same', labels}}
end
return {{'open', labels, redis.call('GET', KEYS[3]) or '', redis.call('GET', KEYS[5]) or ''}}
"""
)
# KEYS: lock, state, labels, refused, rows
# ARGV: tag, ttl, state, row bytes, pushed count, (slot, row)...,
#       refusal count, (rule, seconds, action)...
_CLOSE = """
if redis.call('GET', KEYS[1]) ~= ARGV[1] then
  return 0
end
local ttl = tonumber(ARGV[2])
local width = tonumber(ARGV[4])
redis.call('SET', KEYS[2], ARGV[1] .. ARGV[3], 'EX', ttl)
local pushed = tonumber(ARGV[5])
local unknown = string.rep('\\0', 4)
for i = 1, pushed do
  local slot = tonumber(ARGV[4 + 2 * i])
  redis.call('SETRANGE', KEYS[3], slot * 4, unknown)
  redis.call('SETRANGE', KEYS[5], slot * width, ARGV[5 + 2 * i])
end
redis.call('EXPIRE', KEYS[3], ttl)
redis.call('EXPIRE', KEYS[5], ttl)
local base = 6 + 2 * pushed
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


class RedisStates:
    """States shared by every worker and replica through Redis, the last saved cached."""

    def __init__(
        self,
        link: RedisLink,
        *,
        window: int,
        features: int,
        prefix: str,
        ttl: float = 86_400.0,
        lock_timeout: float = 5.0,
        max_cached: int = 2000,
    ) -> None:
        self.link = link
        self.window = window
        self.features = features
        self.prefix = prefix
        self.ttl = max(1, int(ttl))
        self.lock_timeout = lock_timeout
        self.max_cached = max_cached
        self._local: dict[str, tuple[asyncio.Lock, int]] = {}  # key -> lock, its users
        self._cache: OrderedDict[str, tuple[str, PrincipalState]] = OrderedDict()
        self.reads = {"same": 0, "open": 0}  # cache hits and full reads
        self._unlocking: set[asyncio.Future[None]] = set()

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
        token = os.urandom(TAG // 2).hex()
        # a request that fails after this leaves no cache behind: the next one reads Redis
        cached_tag, cached = self._cache.pop(key, ("", None))
        keys = [name + ":refused", name + ":lock", name, name + ":labels", name + ":rows"]
        millis = int(self.lock_timeout * 1000)
        # the quota buckets in the same script when they live in the same Redis
        folded = isinstance(quotas, RedisQuotas) and quotas.link is self.link
        inline = list(charges) if folded else []
        args: list[Any] = [token, millis, cached_tag, len(inline)]
        for charge in inline:
            keys.append(f"{quotas.prefix}{charge.key}")  # type: ignore[attr-defined]
            args += [charge.bucket.burst, charge.bucket.rate, charge.cost]
        try:
            got = await self.link.run(_OPEN, keys, args)
            deadline = time.monotonic() + self.lock_timeout
            pause = 0.001
            while got[0] == b"locked":  # another process serves this principal now
                if time.monotonic() > deadline:
                    raise StateUnavailable(f"detector state of {name!r} stays locked")
                await asyncio.sleep(pause)
                pause = min(pause * 2, 0.008)
                got = await self.link.run(_OPEN, keys[:5], [token, millis, cached_tag, 0])
        except BaseException:
            # the script may have taken the lock and only its answer been lost: release
            # it now rather than leave the principal's other requests waiting for it
            # to expire (in the background: Redis may be the problem)
            task = asyncio.ensure_future(self._unlock(name, token))
            self._unlocking.add(task)
            task.add_done_callback(self._unlocking.discard)
            raise
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
            if got[0] == b"same" and cached is not None:
                self.reads["same"] += 1
                state = cached
            else:
                self.reads["open"] += 1
                state = self._decode(got[2], got[3])
            state.labels = self._labels(got[1])
        except BaseException:
            await self._unlock(name, token)
            raise
        return Opened(key, state=state, now=now, token=token)

    async def close(self, opened: Opened, refusals: Sequence[Refusal]) -> None:
        state = opened.state
        if state is None:
            return
        opened.state = None
        name = self.prefix + opened.key
        keys = [name + ":lock", name, name + ":labels", name + ":refused", name + ":rows"]
        args: list[Any] = [opened.token, self.ttl, self._encode(state), self.features * 4]
        args.append(len(state.pushed))
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
        self._cache[opened.key] = (opened.token, state)
        while len(self._cache) > self.max_cached:
            self._cache.popitem(last=False)

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
        command: list[Any] = ["BITFIELD", self.prefix + key + ":labels"]
        for slot, value in zip(slots, labels, strict=False):
            if 0 <= slot < self.window:
                command += ["SET", "i32", f"#{slot}", int(value) + 1]
        if len(command) > 2:
            await self.link.command(*command)

    # -- encoding ---------------------------------------------------------------

    def _encode(self, state: PrincipalState) -> bytes:
        """Everything but the window's rows and labels: counters, bisection flags, spans."""
        spans = state.spans
        head = _COUNTERS.pack(_VERSION, *_counters(state), -1 if spans is None else len(spans))
        body = state.bisecting.tobytes()
        if spans is not None:
            body += spans.astype("<f4", copy=False).tobytes()
        return head + body

    def _decode(self, blob: bytes, rows: bytes) -> PrincipalState:
        state = PrincipalState(self.window, self.features)
        if len(blob) < TAG + _COUNTERS.size or blob[TAG] != _VERSION:
            return state  # none yet, or another release's layout: start afresh
        try:
            values = _COUNTERS.unpack_from(blob, TAG)
            body = memoryview(blob)[TAG + _COUNTERS.size :]
            state.bisecting = np.frombuffer(body[: self.window], dtype=np.bool_).copy()
            if len(state.bisecting) != self.window:
                raise ValueError("truncated bisection flags")
            spans = values[-1]
            if spans >= 0:
                span = body[self.window : self.window + 4 * spans]
                state.spans = np.frombuffer(span, dtype="<f4").astype(np.float32)
        except (ValueError, struct.error) as e:
            raise StateUnavailable(f"malformed detector state in Redis: {e}") from e
        for name, value in zip(_FIELDS, values[1:-1], strict=True):
            setattr(state, name, value)
        cells = self.window * self.features * 4
        stored = rows[:cells]  # SETRANGE wrote up to the highest slot used
        flat = np.frombuffer(stored + bytes(cells - len(stored)), dtype="<f4")
        state.rows = flat.reshape(self.window, self.features).astype(np.float32)
        return state

    def _labels(self, raw: bytes) -> npt.NDArray[np.int32]:
        """Labels + 1 as big-endian int32 (0: unknown), up to the highest slot written."""
        cells = 4 * self.window
        stored = raw[:cells]
        flat = np.frombuffer(stored + bytes(cells - len(stored)), dtype=">i4")
        return (flat - 1).astype(np.int32)
