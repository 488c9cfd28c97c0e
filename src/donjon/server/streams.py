"""Bridges between the ASGI world (async chunks) and the blob store (sync streams)."""

from __future__ import annotations

import io
import queue
import threading
import time
from collections import deque
from collections.abc import AsyncIterator, Iterator
from typing import BinaryIO

import anyio
import anyio.from_thread
from anyio.streams.memory import MemoryObjectReceiveStream, MemoryObjectSendStream
from starlette.requests import ClientDisconnect

from donjon.errors import InputError

DOWNLOAD_CHUNK = 1 << 20
PREFETCH_CHUNKS = 16  # request chunks buffered ahead of the consumer (each <= ~256 KiB)


class RequestReader(io.RawIOBase):
    """A blocking file-like view of a request body, for use in a worker thread.

    :meth:`pump` (a task on the event loop) receives the body into a small
    bounded buffer while the worker hashes and writes what came before, so
    network and disk overlap; when the buffer is full the pump waits, the
    server stops reading the socket and the client is throttled
    (backpressure, memory flat). The worker hops to the event loop only when
    it has nothing left to read, and then takes every chunk already waiting;
    chunks are handed out as they arrived, without copying them again.
    """

    def __init__(self, chunks: AsyncIterator[bytes], idle_timeout: float = 60.0) -> None:
        super().__init__()
        self._chunks = chunks
        self._idle_timeout = idle_timeout
        send, receive = anyio.create_memory_object_stream[bytes](PREFETCH_CHUNKS)
        self._send: MemoryObjectSendStream[bytes] = send
        self._receive: MemoryObjectReceiveStream[bytes] = receive
        self._ready: deque[bytes] = deque()
        self._eof = False
        self._error: Exception | None = None
        self._waiting_since: float | None = None  # when the pump began waiting for the client

    def readable(self) -> bool:
        return True

    async def pump(self) -> None:
        """Move the body into the buffer; run it beside the worker, cancel it after.

        A client silent for ``idle_timeout`` seconds fails the upload. One
        watchdog task checks that, rather than a timer per chunk: time spent
        waiting for the worker (backpressure) is not the client's silence.
        """
        async with self._send, anyio.create_task_group() as tasks:
            tasks.start_soon(self._watchdog, tasks.cancel_scope)
            try:
                while True:
                    self._waiting_since = time.monotonic()
                    chunk = await self._chunks.__anext__()
                    self._waiting_since = None
                    if chunk:
                        await self._send.send(chunk)
            except StopAsyncIteration:
                pass
            except ClientDisconnect:
                self._error = InputError("the client went away during the upload")
            except Exception as e:  # noqa: BLE001 - handed to the reader, which raises it
                self._error = e
            finally:
                self._waiting_since = None
                tasks.cancel_scope.cancel()

    async def _watchdog(self, scope: anyio.CancelScope) -> None:
        step = min(1.0, self._idle_timeout / 4)
        while True:
            await anyio.sleep(step)
            since = self._waiting_since
            if since is not None and time.monotonic() - since > self._idle_timeout:
                self._error = InputError(
                    f"the upload stalled for {self._idle_timeout:g} s; nothing was stored"
                )
                scope.cancel()
                return

    async def _take(self, size: int) -> None:
        """Wait for one chunk, then take those already waiting, up to ``size`` bytes."""
        got = 0
        try:
            chunk = await self._receive.receive()
            while True:
                self._ready.append(chunk)
                got += len(chunk)
                if got >= size:
                    return
                chunk = self._receive.receive_nowait()
        except anyio.WouldBlock:
            return
        except anyio.EndOfStream:
            self._eof = True

    def read(self, size: int = -1) -> bytes:
        if size is None or size < 0:
            parts = []
            while part := self.read(1 << 30):
                parts.append(part)
            return b"".join(parts)
        if size == 0:
            return b""
        if not self._ready and not self._eof:
            anyio.from_thread.run(self._take, size)  # one hop for all that is waiting
        if not self._ready:
            if self._error is not None:
                raise self._error
            return b""
        chunk = self._ready.popleft()
        if len(chunk) > size:
            self._ready.appendleft(chunk[size:])
            chunk = chunk[:size]
        return chunk

    def readinto(self, buffer: bytearray | memoryview) -> int:  # type: ignore[override]
        data = self.read(len(buffer))
        buffer[: len(data)] = data
        return len(data)

    def close(self) -> None:
        self._send.close()
        self._receive.close()
        super().close()


def iterate(stream: BinaryIO, chunk_size: int = DOWNLOAD_CHUNK) -> Iterator[bytes]:
    """Yield a stream's bytes in chunks and close it (Starlette runs this in a thread).

    A reader thread keeps up to ``PREFETCH_CHUNKS`` chunks ready, so reading
    and hashing overlap sending (memory stays bounded). The last chunk is held
    back until the stream reached its end: a verifying stream that finds the
    bytes changed raises there, and the client sees a truncated body, never a
    complete wrong one.
    """
    ready: queue.Queue[bytes | BaseException | None] = queue.Queue(maxsize=4)
    stop = threading.Event()

    def produce() -> None:
        try:
            while not stop.is_set():
                chunk = stream.read(chunk_size)
                _offer(ready, stop, chunk or None)
                if not chunk:
                    return
        except Exception as e:  # noqa: BLE001 - handed to the consumer, which raises it
            _offer(ready, stop, e)
        finally:
            stream.close()

    reader = threading.Thread(target=produce, name="donjon-blob-reader", daemon=True)
    reader.start()
    try:
        held = ready.get()
        while isinstance(held, bytes):
            following = ready.get()
            if isinstance(following, BaseException):
                raise following
            yield held
            held = following
        if isinstance(held, BaseException):
            raise held
    finally:
        stop.set()
        reader.join(timeout=5)


def _offer(
    ready: queue.Queue[bytes | BaseException | None],
    stop: threading.Event,
    item: bytes | BaseException | None,
) -> None:
    while not stop.is_set():
        try:
            ready.put(item, timeout=0.5)
            return
        except queue.Full:
            continue
