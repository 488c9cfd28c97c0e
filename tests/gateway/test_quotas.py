"""Token buckets in process and in the machine's Redis (shared by two replicas)."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from typing import Any

import pytest

from donjon.errors import GatewayError
from donjon.gateway.quotas import Bucket, MemoryQuotas, RedisQuotas


def test_memory_bucket_refuses_past_burst_and_refills() -> None:
    now = [100.0]
    quotas = MemoryQuotas(clock=lambda: now[0])
    bucket = Bucket(rate=2.0, burst=5.0)
    assert quotas.take("p", bucket, 5).allowed
    refused = quotas.take("p", bucket, 1)
    assert not refused.allowed
    assert refused.retry_after == pytest.approx(0.5)
    assert quotas.take("q", bucket, 1).allowed  # buckets are per key
    now[0] += 1.0
    assert quotas.take("p", bucket, 2).allowed
    assert not quotas.take("p", bucket, 1).allowed


def test_memory_quotas_stay_bounded() -> None:
    quotas = MemoryQuotas(max_keys=3)
    for i in range(10):
        quotas.take(f"k{i}", Bucket(1, 1), 1)
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
    replica_a = RedisQuotas(client, prefix=prefix)
    replica_b = RedisQuotas(client, prefix=prefix)
    bucket = Bucket(rate=0.001, burst=10)
    taken = [replica.take("alice", bucket, 1).allowed for replica in [replica_a, replica_b] * 6]
    assert taken.count(True) == 10
    refused = replica_b.take("alice", bucket, 1)
    assert not refused.allowed
    assert refused.retry_after > 0
    assert replica_a.take("bob", bucket, 3).allowed
    assert list(client.scan_iter(match=prefix + "*"))


@pytest.mark.redis
def test_redis_down_is_an_error_not_a_pass() -> None:
    quotas = RedisQuotas.from_url("redis://127.0.0.1:1/0")
    with pytest.raises(GatewayError, match="quota store unavailable"):
        quotas.take("alice", Bucket(1, 1), 1)
