"""The gateway's connection to Redis: one ``redis.asyncio`` client (one pool) per event loop.

A server process runs one event loop, so it holds one connection pool for every
Redis user of the gateway (quotas, detector state, watermark records) that shares
the URL. Lua scripts are registered once per client; a script missing after a
Redis restart is loaded again by ``redis-py``, and a pooled connection that the
restart broke is retried once on a fresh connection.

Any Redis failure becomes :class:`StateUnavailable`: the pipeline refuses the
request (503), it never lets it through unchecked.
"""

from __future__ import annotations

import asyncio
import threading
import weakref
from collections.abc import Sequence
from typing import Any

from donjon.errors import GatewayError


class StateUnavailable(GatewayError):
    """The shared state store (Redis) did not answer: the request is refused."""


class RedisLink:
    """A Redis URL and its per-event-loop ``redis.asyncio`` clients."""

    def __init__(self, url: str, *, timeout: float = 1.0) -> None:
        self.url = url
        self.timeout = timeout
        self._clients: weakref.WeakKeyDictionary[
            asyncio.AbstractEventLoop, tuple[Any, dict[str, Any]]
        ] = weakref.WeakKeyDictionary()
        self._lock = threading.Lock()

    def client(self) -> Any:
        """This event loop's client (created on first use)."""
        return self._entry()[0]

    def _entry(self) -> tuple[Any, dict[str, Any]]:
        loop = asyncio.get_running_loop()
        with self._lock:
            entry = self._clients.get(loop)
            if entry is None:
                import redis.asyncio
                from redis.asyncio.retry import Retry
                from redis.backoff import NoBackoff

                client = redis.asyncio.Redis.from_url(
                    self.url,
                    socket_timeout=self.timeout,
                    socket_connect_timeout=self.timeout,
                    retry=Retry(NoBackoff(), 1),  # once, on a fresh connection
                )
                entry = (client, {})
                self._clients[loop] = entry
        return entry

    async def run(self, script: str, keys: Sequence[str], args: Sequence[Any]) -> Any:
        """Run a Lua ``script`` (EVALSHA, loaded when missing): one round trip."""
        client, scripts = self._entry()
        registered = scripts.get(script)
        if registered is None:
            registered = scripts[script] = client.register_script(script)
        return await self.call(registered(keys=list(keys), args=list(args)))

    async def call(self, awaitable: Any) -> Any:
        """Await a Redis call, turning any failure into :class:`StateUnavailable`."""
        import redis

        try:
            return await awaitable
        except (TimeoutError, redis.RedisError, OSError) as e:
            raise StateUnavailable(f"Redis at {self._where()} unavailable: {e}") from e

    def _where(self) -> str:
        """The URL without credentials, for messages."""
        rest = self.url.split("://", 1)[-1]
        return rest.rsplit("@", 1)[-1]

    async def aclose(self) -> None:
        """Close this event loop's client and its pool."""
        loop = asyncio.get_running_loop()
        with self._lock:
            entry = self._clients.pop(loop, None)
        if entry is not None:
            await entry[0].aclose()
