"""The gateway's own Redis connection: URLs, commands, scripts, timeouts, failures."""

from __future__ import annotations

import asyncio
import socket
import threading
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from donjon.gateway.redis_link import RedisLink, StateUnavailable
from donjon.gateway.resp import Address, pack
from tests.support.redis_server import redis_server

redis = pytest.importorskip("redis")
REDIS = "redis://127.0.0.1:6379/0"


def test_urls_are_read_like_redis_py_reads_them() -> None:
    assert Address.parse("redis://127.0.0.1:6380/2") == Address("127.0.0.1", 6380, db=2)
    secret = Address.parse("rediss://me:p%40ss@cache.internal/0")
    assert (secret.host, secret.port, secret.tls) == ("cache.internal", 6379, True)
    assert (secret.username, secret.password) == ("me", "p@ss")
    assert Address.parse("redis://:pw@h?db=5") == Address("h", password="pw", db=5)  # noqa: S106
    assert Address.parse("unix:///run/redis.sock?db=1") == Address(path="/run/redis.sock", db=1)
    with pytest.raises(ValueError, match="use redis://"):
        Address.parse("http://127.0.0.1:6379")
    with pytest.raises(ValueError, match=r"invalid Redis URL 'redis://h/x'"):
        Address.parse("redis://u:secret@h/x")  # the password is never shown


def test_commands_are_packed_as_resp_bulk_strings() -> None:
    packed = pack(["SET", "k", b"\x00\r\n", 7, 0.5])
    assert packed == b"*5\r\n$3\r\nSET\r\n$1\r\nk\r\n$3\r\n\x00\r\n\r\n$1\r\n7\r\n$3\r\n0.5\r\n"


@pytest.mark.redis
def test_concurrent_commands_share_one_connection_and_scripts_reload(tmp_path: Path) -> None:
    key = "counter"
    script = "return redis.call('INCRBY', KEYS[1], ARGV[1])"

    async def run(url: str) -> tuple[list[int], int, set[int]]:
        link = RedisLink(url)
        counts = await asyncio.gather(*(link.run(script, [key], [2]) for _ in range(50)))
        ids = await asyncio.gather(*(link.command("CLIENT", "ID") for _ in range(10)))
        await link.command("SCRIPT", "FLUSH")  # as a Redis restart would
        again = int(await link.run(script, [key], [1]))  # EVAL loads it again
        await link.command("DEL", key)
        await link.aclose()
        return [int(c) for c in counts], again, set(ids)

    with redis_server(tmp_path) as server:  # a private one: SCRIPT FLUSH
        counts, again, ids = asyncio.run(run(server.url))
    assert counts == list(range(2, 101, 2))  # each ran once, answered in order
    assert again == 101
    assert len(ids) == 1


@pytest.mark.redis
def test_the_url_selects_its_database() -> None:
    key = f"test:{uuid.uuid4().hex}"

    async def run() -> None:
        link = RedisLink("redis://127.0.0.1:6379/3")
        await link.command("SET", key, "three", "EX", 60)
        await link.aclose()

    asyncio.run(run())
    client = redis.Redis.from_url("redis://127.0.0.1:6379/3")
    try:
        assert client.get(key) == b"three"
        assert redis.Redis.from_url(REDIS).get(key) is None
    finally:
        client.delete(key)
        client.close()


@pytest.mark.redis
def test_a_password_in_the_url_is_sent_and_a_wrong_one_refused(tmp_path: Path) -> None:
    secret = uuid.uuid4().hex

    async def ping(url: str) -> Any:
        link = RedisLink(url)
        try:
            return await link.command("PING")
        finally:
            await link.aclose()

    with redis_server(tmp_path, "--requirepass", secret) as server:
        port = server.port
        assert asyncio.run(ping(f"redis://:{secret}@127.0.0.1:{port}/1")) == b"PONG"
        assert asyncio.run(ping(f"redis://default:{secret}@127.0.0.1:{port}")) == b"PONG"
        with pytest.raises(StateUnavailable, match="cannot connect: WRONGPASS") as wrong:
            asyncio.run(ping(f"redis://:not-{secret}@127.0.0.1:{port}"))
        assert secret not in str(wrong.value)
        with pytest.raises(StateUnavailable, match="NOAUTH"):
            asyncio.run(ping(server.url))


@pytest.fixture
def silent_server() -> Iterator[int]:
    """A loopback server that accepts connections and never answers."""
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen()
    listener.settimeout(0.05)
    accepted: list[socket.socket] = []
    stop = threading.Event()

    def serve() -> None:
        while not stop.is_set():
            try:
                accepted.append(listener.accept()[0])
            except TimeoutError:
                continue

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    yield int(listener.getsockname()[1])
    stop.set()
    thread.join(5)
    listener.close()
    for connection in accepted:
        connection.close()


def test_an_unanswered_command_fails_within_the_timeout(silent_server: int) -> None:
    async def run() -> float:
        link = RedisLink(f"redis://127.0.0.1:{silent_server}/0", timeout=0.2)
        loop = asyncio.get_running_loop()
        started = loop.time()
        with pytest.raises(StateUnavailable, match=r"no answer within 0\.2 s"):
            await asyncio.gather(link.command("PING"), link.command("PING"))
        return loop.time() - started

    assert asyncio.run(run()) < 1.0


def test_no_server_is_an_error_not_a_pass() -> None:
    async def run() -> None:
        await RedisLink("redis://127.0.0.1:1/0", timeout=0.5).command("PING")

    with pytest.raises(StateUnavailable, match=r"127\.0\.0\.1:1/0 unavailable: cannot connect"):
        asyncio.run(run())


@pytest.mark.redis
def test_an_error_reply_is_an_error() -> None:
    async def run() -> None:
        link = RedisLink(REDIS)
        try:
            await link.command("NOSUCHCOMMAND")
        finally:
            await link.aclose()

    with pytest.raises(StateUnavailable, match="refused 'NOSUCHCOMMAND'"):
        asyncio.run(run())
