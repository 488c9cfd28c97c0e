"""Bridges between the ASGI world (async chunks) and the blob store (sync streams)."""

from __future__ import annotations

import io
from collections.abc import AsyncIterator, Iterator
from typing import BinaryIO

import anyio
import anyio.from_thread
from starlette.requests import ClientDisconnect

from donjon.errors import InputError

DOWNLOAD_CHUNK = 1 << 20


class RequestReader(io.RawIOBase):
    """A blocking file-like view of a request body, for use in a worker thread.

    Each ``read`` hops to the event loop once and gathers chunks until it has
    ``size`` bytes (or the end), so memory stays at one read's worth and the
    client is throttled by the consumer (backpressure).
    """

    def __init__(self, chunks: AsyncIterator[bytes], idle_timeout: float = 60.0) -> None:
        super().__init__()
        self._chunks = chunks
        self._idle_timeout = idle_timeout
        self._buffer = bytearray()
        self._eof = False

    def readable(self) -> bool:
        return True

    async def _fill(self, size: int) -> None:
        try:
            while not self._eof and len(self._buffer) < size:
                with anyio.fail_after(self._idle_timeout):
                    chunk = await self._chunks.__anext__()
                if chunk:
                    self._buffer += chunk
                else:
                    self._eof = True
        except StopAsyncIteration:
            self._eof = True
        except ClientDisconnect as e:
            raise InputError("the client went away during the upload; nothing was stored") from e
        except TimeoutError as e:
            raise InputError(
                f"the upload stalled for {self._idle_timeout:g} s; nothing was stored"
            ) from e

    def read(self, size: int = -1) -> bytes:
        want = size if size is not None and size >= 0 else 1 << 62
        if not self._eof and len(self._buffer) < want:
            anyio.from_thread.run(self._fill, want)
        data = bytes(self._buffer[:want])
        del self._buffer[:want]
        return data

    def readinto(self, buffer: bytearray | memoryview) -> int:  # type: ignore[override]
        data = self.read(len(buffer))
        buffer[: len(data)] = data
        return len(data)


def iterate(stream: BinaryIO, chunk_size: int = DOWNLOAD_CHUNK) -> Iterator[bytes]:
    """Yield a stream's bytes in chunks and close it (Starlette runs this in a thread).

    Reads one chunk ahead, so a verifying stream that finds the bytes changed
    (it raises at the end) stops the response before its last chunk leaves:
    the client sees a truncated body, never a complete wrong one.
    """
    try:
        chunk = stream.read(chunk_size)
        while chunk:
            following = stream.read(chunk_size)
            yield chunk
            chunk = following
    finally:
        stream.close()
