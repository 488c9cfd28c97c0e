"""Stream helpers: count and cap what an upload may send."""

from __future__ import annotations

import io
from typing import BinaryIO

from donjon.registry.errors import TooLarge


class LimitedReader(io.RawIOBase):
    """Reads through ``stream``, counting bytes; TooLarge once ``limit`` is passed."""

    def __init__(self, stream: BinaryIO, limit: int | None) -> None:
        super().__init__()
        self._stream = stream
        self._limit = limit
        self.count = 0

    def readable(self) -> bool:
        return True

    def read(self, size: int = -1) -> bytes:
        if self._limit is not None and (size is None or size < 0):
            size = self._limit - self.count + 1
        data = self._stream.read(size)
        self.count += len(data)
        if self._limit is not None and self.count > self._limit:
            raise TooLarge(f"upload is larger than the limit of {self._limit} bytes")
        return data

    def readinto(self, buffer: bytearray | memoryview) -> int:  # type: ignore[override]
        data = self.read(len(buffer))
        buffer[: len(data)] = data
        return len(data)
