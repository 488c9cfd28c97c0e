"""Rate quotas: token buckets per principal and for the whole gateway.

A bucket holds at most ``burst`` tokens and refills at ``rate`` tokens per
second; a request of ``cost`` queries (rows) takes ``cost`` tokens or is
refused. :class:`MemoryQuotas` keeps buckets in the process (one replica);
:class:`RedisQuotas` keeps them in Redis with one atomic Lua script, so several
replicas share them (with Redis detector state on the same URL, the buckets are
taken inside the state's own script: one round trip for both).
"""

from __future__ import annotations

import threading
import time
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass
from typing import Protocol

from donjon.gateway.redis_link import RedisLink


@dataclass(frozen=True)
class Bucket:
    rate: float  # tokens per second
    burst: float  # capacity

    def __post_init__(self) -> None:
        if self.rate <= 0 or self.burst <= 0:
            raise ValueError("quota rate and burst must be positive")


@dataclass(frozen=True)
class QuotaResult:
    allowed: bool
    retry_after: float  # seconds until ``cost`` tokens are available


class QuotaStore(Protocol):
    async def take(self, key: str, bucket: Bucket, cost: float) -> QuotaResult: ...


class MemoryQuotas:
    """In-process buckets, at most ``max_keys`` of them (least recently used dropped)."""

    def __init__(
        self, *, max_keys: int = 100_000, clock: Callable[[], float] = time.monotonic
    ) -> None:
        self._buckets: OrderedDict[str, tuple[float, float]] = OrderedDict()
        self._lock = threading.Lock()
        self._max = max_keys
        self._clock = clock

    async def take(self, key: str, bucket: Bucket, cost: float) -> QuotaResult:
        """Never suspends: the pipeline runs it inline."""
        now = self._clock()
        with self._lock:
            tokens, stamp = self._buckets.get(key, (bucket.burst, now))
            tokens = min(bucket.burst, tokens + (now - stamp) * bucket.rate)
            allowed = tokens >= cost
            if allowed:
                tokens -= cost
            self._buckets[key] = (tokens, now)
            self._buckets.move_to_end(key)
            while len(self._buckets) > self._max:
                self._buckets.popitem(last=False)
        wait = 0.0 if allowed else (cost - tokens) / bucket.rate
        return QuotaResult(allowed, wait)


# one bucket (KEYS[i], ARGV burst, rate, cost); Redis's clock, so replicas agree
BUCKET_LUA = """
local function take(key, burst, rate, cost, now)
  local state = redis.call('HMGET', key, 'tokens', 'stamp')
  local tokens = tonumber(state[1]) or burst
  local stamp = tonumber(state[2]) or now
  tokens = math.min(burst, tokens + math.max(0, now - stamp) * rate)
  local allowed = tokens >= cost
  if allowed then
    tokens = tokens - cost
  end
  redis.call('HSET', key, 'tokens', tostring(tokens), 'stamp', tostring(now))
  redis.call('EXPIRE', key, math.ceil(burst / rate) + 60)
  return allowed, tokens
end
local t = redis.call('TIME')
local now = tonumber(t[1]) + tonumber(t[2]) / 1000000
"""
_TAKE = (
    BUCKET_LUA
    + """
local allowed, tokens = take(KEYS[1], tonumber(ARGV[1]), tonumber(ARGV[2]), tonumber(ARGV[3]), now)
return {allowed and 1 or 0, tostring(tokens)}
"""
)


class RedisQuotas:
    """Buckets shared by gateway replicas through Redis (one Lua script, atomic, async)."""

    def __init__(self, link: RedisLink, *, prefix: str = "donjon:gw:quota:") -> None:
        self.link = link
        self.prefix = prefix

    @classmethod
    def from_url(cls, url: str, *, prefix: str = "donjon:gw:quota:") -> RedisQuotas:
        return cls(RedisLink(url), prefix=prefix)

    async def take(self, key: str, bucket: Bucket, cost: float) -> QuotaResult:
        allowed, tokens = await self.link.run(
            _TAKE, [self.prefix + key], [bucket.burst, bucket.rate, cost]
        )
        ok = int(allowed) == 1
        wait = 0.0 if ok else (cost - float(tokens)) / bucket.rate
        return QuotaResult(ok, wait)
