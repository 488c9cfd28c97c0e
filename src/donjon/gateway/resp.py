"""A lean Redis client for the gateway's hot path: one pipelined connection per event loop.

``redis-py``'s asyncio client spends about 200 us of Python per command (pool
checkout and release, retries, event and observability hooks, a timeout per read),
several times a loopback round trip. The gateway sends three commands per request
and needs none of that: :class:`RespConnection` is an ``asyncio.Protocol`` that
writes RESP2 commands as they come (the commands of one loop iteration in one
``write``) and resolves them in order from the replies, parsed by ``hiredis``
(Redis's own C parser). Any number of requests share the connection, as Redis
answers one connection's commands in order.

A command not answered within ``timeout`` fails the connection and every command
waiting on it; a closed connection fails them too. The next command opens a new
connection: a Redis restart heals without a retry.
"""

from __future__ import annotations

import asyncio
import ssl
from collections import deque
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, cast
from urllib.parse import parse_qs, unquote, urlsplit

import hiredis

Arg = bytes | str | int | float
_GRACE = 0.05  # seconds: see RespConnection._check


class RespError(Exception):
    """Redis answered with an error, or the connection failed or timed out."""


class ReplyError(RespError):
    """An error reply (``-ERR ...``, ``-NOSCRIPT ...``) to one command."""


@dataclass(frozen=True)
class Address:
    """Where a Redis URL points: ``redis://``, ``rediss://`` (TLS) or ``unix://``."""

    host: str = "127.0.0.1"
    port: int = 6379
    path: str | None = None  # a unix socket
    db: int = 0
    username: str | None = None
    password: str | None = None
    tls: bool = False

    @classmethod
    def parse(cls, url: str) -> Address:
        parts = urlsplit(url)
        query = parse_qs(parts.query)
        db_text = (query.get("db") or [parts.path.lstrip("/") if parts.scheme != "unix" else ""])[0]
        try:
            db = int(db_text or 0)
            port = parts.port or 6379
        except ValueError as e:
            raise ValueError(f"invalid Redis URL {_shown(url)!r}: {e}") from e
        username = unquote(parts.username) if parts.username else None
        password = unquote(parts.password) if parts.password else None
        if parts.scheme == "unix":
            return cls(path=parts.path, db=db, username=username, password=password)
        if parts.scheme not in ("redis", "rediss") or not parts.hostname:
            raise ValueError(
                f"invalid Redis URL {_shown(url)!r}: use redis://, rediss:// or unix://"
            )
        return cls(
            host=parts.hostname,
            port=port,
            db=db,
            username=username,
            password=password,
            tls=parts.scheme == "rediss",
        )


def _shown(url: str) -> str:
    """The URL without credentials."""
    scheme, _, rest = url.partition("://")
    return f"{scheme}://{rest.rsplit('@', 1)[-1]}"


def pack(args: Sequence[Arg]) -> bytes:
    """One command in RESP: an array of bulk strings (floats as ``repr``), packed in C."""
    packed: bytes = hiredis.pack_command(tuple(args))  # type: ignore[arg-type]  # stub: a 1-tuple
    return packed


class RespConnection(asyncio.Protocol):
    """One connection; commands are pipelined and answered in order."""

    def __init__(self, timeout: float) -> None:
        self.timeout = timeout
        self._reader = hiredis.Reader()
        self._waiting: deque[tuple[asyncio.Future[Any], float]] = deque()
        self._outgoing: list[bytes] = []
        self._transport: asyncio.Transport | None = None
        self._loop = asyncio.get_running_loop()
        self._watchdog: asyncio.TimerHandle | None = None
        self._suspect: asyncio.Future[Any] | None = None  # past its deadline once
        self.closed = False

    @classmethod
    async def open(cls, address: Address, timeout: float) -> RespConnection:
        loop = asyncio.get_running_loop()
        connection = cls(timeout)
        try:
            if address.path is not None:
                connect = loop.create_unix_connection(lambda: connection, address.path)
            else:
                context = ssl.create_default_context() if address.tls else None
                connect = loop.create_connection(
                    lambda: connection, address.host, address.port, ssl=context
                )
            await asyncio.wait_for(connect, timeout)
            hello: list[Sequence[Arg]] = []
            if address.password is not None:
                user = [address.username] if address.username else []
                hello.append(["AUTH", *user, address.password])
            if address.db:
                hello.append(["SELECT", address.db])
            for reply in await asyncio.gather(*(connection.send(c) for c in hello)):
                if isinstance(reply, hiredis.ReplyError):
                    raise ReplyError(str(reply))
        except (OSError, TimeoutError, RespError) as e:
            connection.close()
            raise RespError(f"cannot connect: {e or type(e).__name__}") from e
        return connection

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self._transport = cast(asyncio.Transport, transport)  # a stream's transport

    def send(self, args: Sequence[Arg]) -> asyncio.Future[Any]:
        """Queue one command; its future resolves to the reply (an error reply as
        ``hiredis.ReplyError``, a value) or fails with :class:`RespError`."""
        future = self._loop.create_future()
        if self.closed:
            future.set_exception(RespError("connection closed"))
            return future
        if not self._outgoing:
            self._loop.call_soon(self._flush)
        self._outgoing.append(pack(args))
        self._waiting.append((future, self._loop.time() + self.timeout))
        if self._watchdog is None:
            self._watchdog = self._loop.call_at(self._waiting[0][1], self._check)
        return future

    def _flush(self) -> None:
        if self._outgoing and self._transport is not None and not self.closed:
            self._transport.write(b"".join(self._outgoing))
        self._outgoing.clear()

    def data_received(self, data: bytes) -> None:
        self._reader.feed(data)
        waiting = self._waiting
        while (reply := self._reader.gets()) is not False:
            if not waiting:
                self._fail(RespError("a reply to no command"))
                return
            future, _ = waiting.popleft()
            if not future.done():
                future.set_result(reply)

    def _check(self) -> None:
        """Fail the connection when its oldest command waited past the timeout.

        A loop that was itself stalled past the deadline may run this timer before it
        reads an answer that arrived meanwhile: the command is failed only if it is
        still the oldest unanswered one ``_GRACE`` later (one more pass over the
        socket)."""
        self._watchdog = None
        if not self._waiting:
            return
        head, due = self._waiting[0]
        now = self._loop.time()
        if now < due:
            self._watchdog = self._loop.call_at(due, self._check)
        elif self._suspect is not head:
            self._suspect = head
            self._watchdog = self._loop.call_at(now + _GRACE, self._check)
        else:
            self._fail(RespError(f"no answer within {self.timeout} s"))

    def connection_lost(self, exc: Exception | None) -> None:
        self._fail(RespError(f"connection lost: {exc}" if exc else "connection closed by Redis"))

    def _fail(self, error: RespError) -> None:
        self.closed = True
        if self._watchdog is not None:
            self._watchdog.cancel()
            self._watchdog = None
        while self._waiting:
            future, _ = self._waiting.popleft()
            if not future.done():
                future.set_exception(error)
        self._outgoing.clear()
        if self._transport is not None:
            self._transport.close()

    def close(self) -> None:
        self._fail(RespError("connection closed"))
