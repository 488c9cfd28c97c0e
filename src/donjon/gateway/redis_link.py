"""The gateway's connection to Redis: one pipelined connection per event loop.

A server process runs one event loop, so it holds one connection for every Redis
user of the gateway (quotas, detector state, watermark records) that shares the
URL (:mod:`.resp`: about 40 us of CPU per command where ``redis-py``'s asyncio
client spends about 250). Lua scripts run by ``EVALSHA``; a script missing after a
Redis restart is sent once with ``EVAL``, which loads it again.

Any Redis failure becomes :class:`StateUnavailable`: the pipeline refuses the
request (503), it never lets it through unchecked.
"""

from __future__ import annotations

import asyncio
import hashlib
import threading
import weakref
from collections.abc import Sequence
from typing import Any

import hiredis

from donjon.errors import GatewayError
from donjon.gateway.resp import Address, Arg, RespConnection, RespError


class StateUnavailable(GatewayError):
    """The shared state store (Redis) did not answer: the request is refused."""


class _Loop:
    """One event loop's connection (opened on first use, again after a failure)."""

    def __init__(self) -> None:
        self.connection: RespConnection | None = None
        self.opening: asyncio.Future[RespConnection] | None = None


class RedisLink:
    """A Redis URL and its per-event-loop connections."""

    def __init__(self, url: str, *, timeout: float = 1.0) -> None:
        self.url = url
        self.address = Address.parse(url)
        self.timeout = timeout
        self._loops: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, _Loop] = (
            weakref.WeakKeyDictionary()
        )
        self._lock = threading.Lock()
        self._shas: dict[str, str] = {}
        self._last: tuple[asyncio.AbstractEventLoop, _Loop] | None = None

    async def command(self, *args: Arg) -> Any:
        """One command, one round trip; its reply."""
        return self._checked(args, await self._send(args))

    async def run(
        self,
        script: str,
        keys: Sequence[str],
        args: Sequence[Arg],
        sent: asyncio.Future[Any] | None = None,
    ) -> Any:
        """Run a Lua ``script`` (EVALSHA; EVAL when Redis lost it): one round trip.

        ``sent``: what :meth:`submit` returned for the same script, keys and args."""
        if sent is None:
            reply = await self._send(("EVALSHA", self._sha(script), len(keys), *keys, *args))
        else:
            try:
                reply = await sent
            except RespError as e:
                raise StateUnavailable(f"Redis at {self._where()} unavailable: {e}") from e
        if isinstance(reply, hiredis.ReplyError) and str(reply).startswith("NOSCRIPT"):
            reply = await self._send(("EVAL", script, len(keys), *keys, *args))
        return self._checked(("EVALSHA",), reply)

    def submit(
        self, script: str, keys: Sequence[str], args: Sequence[Arg]
    ) -> asyncio.Future[Any] | None:
        """Queue ``script`` now, without suspending, on this loop's open connection (None:
        none is open); :meth:`run` with the future reads its reply. Commands submitted
        in one loop iteration leave in one write, in order."""
        last = self._last
        if last is None or last[0] is not asyncio.get_running_loop():
            return None
        connection = last[1].connection
        if connection is None or connection.closed:
            return None
        return connection.send(("EVALSHA", self._sha(script), len(keys), *keys, *args))

    def _sha(self, script: str) -> str:
        sha = self._shas.get(script)
        if sha is None:
            sha = self._shas[script] = hashlib.sha1(script.encode()).hexdigest()  # noqa: S324 - Redis's script id
        return sha

    async def _send(self, args: Sequence[Arg]) -> Any:
        try:
            connection = await self._connection()
            return await connection.send(args)
        except RespError as e:
            raise StateUnavailable(f"Redis at {self._where()} unavailable: {e}") from e

    def _checked(self, args: Sequence[Arg], reply: Any) -> Any:
        if isinstance(reply, hiredis.ReplyError):
            raise StateUnavailable(f"Redis at {self._where()} refused {args[0]!r}: {reply}")
        return reply

    async def _connection(self) -> RespConnection:
        loop = asyncio.get_running_loop()
        last = self._last
        if last is not None and last[0] is loop:  # a server's one loop: no lookup
            entry = last[1]
        else:
            with self._lock:
                found = self._loops.get(loop)
                if found is None:
                    found = self._loops[loop] = _Loop()
            entry = found
            self._last = (loop, entry)
        connection = entry.connection
        if connection is not None and not connection.closed:
            return connection
        if entry.opening is None:  # one attempt at a time; the others wait on it
            entry.opening = loop.create_task(RespConnection.open(self.address, self.timeout))
        opening = entry.opening
        try:
            connection = await asyncio.shield(opening)
        finally:
            if entry.opening is opening and opening.done():
                entry.opening = None
        entry.connection = connection
        return connection

    def _where(self) -> str:
        """The URL without credentials, for messages."""
        rest = self.url.split("://", 1)[-1]
        return rest.rsplit("@", 1)[-1]

    async def aclose(self) -> None:
        """Close this event loop's connection."""
        loop = asyncio.get_running_loop()
        with self._lock:
            entry = self._loops.pop(loop, None)
            self._last = None
        if entry is not None and entry.connection is not None:
            entry.connection.close()
