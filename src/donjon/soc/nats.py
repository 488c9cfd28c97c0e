"""NATS JetStream sink (nats-py): one message per event, deduplicated by uid.

Subjects are ``<subject_prefix>.<kind>``; each message carries the
``Nats-Msg-Id`` header set to the event uid, so JetStream drops a re-delivered
event within the stream's duplicate window. The publish waits for the
stream's acknowledgement. nats-py is asynchronous: the sink runs its own event
loop in a background thread.
"""

from __future__ import annotations

import asyncio
import json
import threading
from collections.abc import Sequence
from concurrent.futures import TimeoutError as FutureTimeout
from typing import Any, Literal

from donjon.core.events import SecurityEvent
from donjon.errors import ExportError
from donjon.soc.ecs import to_ecs
from donjon.soc.ocsf import to_ocsf
from donjon.soc.outbox import SinkUnavailable

Format = Literal["ocsf", "ecs", "donjon"]


class NatsSink:
    def __init__(
        self,
        url: str = "nats://127.0.0.1:4222",
        *,
        stream: str = "DONJON_EVENTS",
        subject_prefix: str = "donjon.events",
        name: str = "nats",
        fmt: Format = "ocsf",
        create_stream: bool = True,
        timeout: float = 5.0,
    ) -> None:
        self.name = name
        self.url, self.stream, self.prefix = url, stream, subject_prefix
        self._fmt: Format = fmt
        self._create = create_stream
        self._timeout = timeout
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(
            target=self._loop.run_forever, name=f"donjon-nats-{name}", daemon=True
        )
        self._thread.start()
        self._nc: Any = None
        self._js: Any = None
        self._lock = threading.Lock()

    def subject(self, event: SecurityEvent) -> str:
        return f"{self.prefix}.{event.kind.value}"

    def _body(self, event: SecurityEvent) -> bytes:
        doc = (
            to_ocsf(event)
            if self._fmt == "ocsf"
            else to_ecs(event)
            if self._fmt == "ecs"
            else event.to_dict()
        )
        return json.dumps(doc, separators=(",", ":")).encode("utf-8")

    async def _connect(self) -> None:
        import nats
        from nats.js.api import StreamConfig
        from nats.js.errors import APIError

        if self._nc is not None and self._nc.is_connected:
            return
        self._nc = await nats.connect(
            self.url, connect_timeout=self._timeout, max_reconnect_attempts=0, allow_reconnect=False
        )
        self._js = self._nc.jetstream(timeout=self._timeout)
        if self._create:
            config = StreamConfig(name=self.stream, subjects=[f"{self.prefix}.>"])
            try:
                await self._js.add_stream(config)
            except APIError as e:  # exists with another config: keep it
                if "already in use" not in str(e):
                    raise

    async def _publish(self, events: Sequence[SecurityEvent]) -> None:
        await self._connect()
        acks = [
            self._js.publish(
                self.subject(e), self._body(e), stream=self.stream, headers={"Nats-Msg-Id": e.uid}
            )
            for e in events
        ]
        await asyncio.gather(*acks)

    def emit(self, event: SecurityEvent) -> None:
        self.emit_batch([event])

    def emit_batch(self, events: Sequence[SecurityEvent]) -> None:
        from nats.errors import Error as NatsError
        from nats.js.errors import APIError

        with self._lock:
            future = asyncio.run_coroutine_threadsafe(self._publish(events), self._loop)
            try:
                future.result(self._timeout * 2 + 1)
            except APIError as e:
                if e.code is not None and 400 <= int(e.code) < 500 and e.code != 408:
                    raise ExportError(f"JetStream refused the event: {e}") from e
                raise SinkUnavailable(f"JetStream {self.url}: {e}") from e
            except (TimeoutError, NatsError, OSError, FutureTimeout) as e:
                self._reset()
                raise SinkUnavailable(f"NATS {self.url}: {type(e).__name__}: {e}") from e

    def _reset(self) -> None:
        nc, self._nc, self._js = self._nc, None, None
        if nc is not None:
            fut = asyncio.run_coroutine_threadsafe(nc.close(), self._loop)
            try:
                fut.result(self._timeout)
            except Exception:  # noqa: BLE001 - a dead connection may fail to close
                fut.cancel()

    def close(self) -> None:
        with self._lock:
            self._reset()
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(self._timeout)
        if not self._loop.is_running():
            self._loop.close()
