"""Token buckets in process and in the machine's Redis (shared by two replicas)."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Iterator
from typing import Any

import pytest

from donjon.gateway.quotas import Bucket, MemoryQuotas, QuotaResult, QuotaStore, RedisQuotas
from donjon.gateway.redis_link import StateUnavailable

REDIS = "redis://127.0.0.1:6379/0"


def take(quotas: QuotaStore, key: str, bucket: Bucket, cost: float) -> QuotaResult:
    return asyncio.run(quotas.take(key, bucket, cost))


def test_memory_bucket_refuses_past_burst_and_refills() -> None:
    now = [100.0]
    quotas = MemoryQuotas(clock=lambda: now[0])
    bucket = Bucket(rate=2.0, burst=5.0)
    assert take(quotas, "p", bucket, 5).allowed
    refused = take(quotas, "p", bucket, 1)
    assert not refused.allowed
    assert refused.retry_after == pytest.approx(0.5)
    assert take(quotas, "q", bucket, 1).allowed  # buckets are per key
    now[0] += 1.0
    assert take(quotas, "p", bucket, 2).allowed
    assert not take(quotas, "p", bucket, 1).allowed


def test_memory_quotas_stay_bounded() -> None:
    quotas = MemoryQuotas(max_keys=3)
    for i in range(10):
        take(quotas, f"k{i}", Bucket(1, 1), 1)
    assert len(quotas._buckets) == 3


@pytest.fixture
def redis_client() -> Iterator[Any]:
    redis = pytest.importorskip("redis")
    client = redis.Redis(host="127.0.0.1", port=6379, socket_timeout=2)
    try:
        client.ping()
    except redis.RedisError:
        pytest.skip("Redis is not running on 127.0.0.1:6379")
    prefix = f"donjon-test:{uuid.uuid4().hex}:"
    yield client, prefix
    for key in client.scan_iter(match=prefix + "*"):
        client.delete(key)
    client.close()


@pytest.mark.redis
def test_redis_buckets_are_shared_by_replicas(redis_client: tuple[Any, str]) -> None:
    client, prefix = redis_client
    replica_a = RedisQuotas.from_url(REDIS, prefix=prefix)
    replica_b = RedisQuotas.from_url(REDIS, prefix=prefix)
    bucket = Bucket(rate=0.001, burst=10)

    async def run() -> tuple[list[bool], QuotaResult, QuotaResult]:
        taken = [
            (await replica.take("alice", bucket, 1)).allowed
            for replica in [replica_a, replica_b] * 6
        ]
        refused = await replica_b.take("alice", bucket, 1)
        other = await replica_a.take("bob", bucket, 3)
        await replica_a.link.aclose()
        await replica_b.link.aclose()
        return taken, refused, other

    taken, refused, other = asyncio.run(run())
    assert taken.count(True) == 10
    assert not refused.allowed
    assert refused.retry_after > 0
    assert other.allowed
    assert list(client.scan_iter(match=prefix + "*"))


def test_redis_down_is_an_error_not_a_pass() -> None:
    quotas = RedisQuotas.from_url("redis://127.0.0.1:1/0")
    with pytest.raises(StateUnavailable, match=r"127\.0\.0\.1:1/0 unavailable"):
        take(quotas, "alice", Bucket(1, 1), 1)
