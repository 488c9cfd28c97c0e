"""Rate quotas: token buckets per principal and for the whole gateway.

A bucket holds at most ``burst`` tokens and refills at ``rate`` tokens per
second; a request of ``cost`` queries (rows) takes ``cost`` tokens or is
refused. :class:`MemoryQuotas` keeps buckets in the process (one replica);
:class:`RedisQuotas` keeps them in Redis with one atomic Lua script, so several
replicas share them.
"""

from __future__ import annotations

import threading
import time
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Protocol

from donjon.errors import GatewayError


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
    def take(self, key: str, bucket: Bucket, cost: float) -> QuotaResult: ...


class MemoryQuotas:
    """In-process buckets, at most ``max_keys`` of them (least recently used dropped)."""

    def __init__(
        self, *, max_keys: int = 100_000, clock: Callable[[], float] = time.monotonic
    ) -> None:
        self._buckets: OrderedDict[str, tuple[float, float]] = OrderedDict()
        self._lock = threading.Lock()
        self._max = max_keys
        self._clock = clock

    def take(self, key: str, bucket: Bucket, cost: float) -> QuotaResult:
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


_LUA = """
local burst = tonumber(ARGV[1])
local rate = tonumber(ARGV[2])
local cost = tonumber(ARGV[3])
local t = redis.call('TIME')
local now = tonumber(t[1]) + tonumber(t[2]) / 1000000
local state = redis.call('HMGET', KEYS[1], 'tokens', 'stamp')
local tokens = tonumber(state[1]) or burst
local stamp = tonumber(state[2]) or now
tokens = math.min(burst, tokens + math.max(0, now - stamp) * rate)
local allowed = 0
if tokens >= cost then
  tokens = tokens - cost
  allowed = 1
end
redis.call('HSET', KEYS[1], 'tokens', tostring(tokens), 'stamp', tostring(now))
redis.call('EXPIRE', KEYS[1], math.ceil(burst / rate) + 60)
return {allowed, tostring(tokens)}
"""


class RedisQuotas:
    """Buckets shared by gateway replicas through Redis (one Lua script, atomic)."""

    def __init__(self, client: Any, *, prefix: str = "donjon:gw:quota:") -> None:
        self._client = client
        self._prefix = prefix
        self._script = client.register_script(_LUA)

    @classmethod
    def from_url(cls, url: str, *, prefix: str = "donjon:gw:quota:") -> RedisQuotas:
        import redis

        return cls(redis.Redis.from_url(url, socket_timeout=1.0), prefix=prefix)

    def take(self, key: str, bucket: Bucket, cost: float) -> QuotaResult:
        import redis

        try:
            allowed, tokens = self._script(
                keys=[self._prefix + key], args=[bucket.burst, bucket.rate, cost]
            )
        except redis.RedisError as e:
            raise GatewayError(f"quota store unavailable: {e}") from e
        ok = int(allowed) == 1
        wait = 0.0 if ok else (cost - float(tokens)) / bucket.rate
        return QuotaResult(ok, wait)
