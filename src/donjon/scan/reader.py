"""A byte source with a position, for the pickle interpreter."""

from __future__ import annotations

from typing import BinaryIO

from donjon.scan.values import Malformed


class Reader:
    """A byte source with a position; ``read`` returns short data at the end."""

    def __init__(self, stream: BinaryIO, base: int = 0) -> None:
        self.stream = stream
        self.pos = base

    def read(self, n: int) -> bytes:
        data = self.stream.read(n)
        self.pos += len(data)
        if len(data) < n:
            raise Malformed(f"truncated: wanted {n} bytes at offset {self.pos - len(data)}")
        return data

    def skip(self, n: int) -> None:
        while n > 0:
            chunk = self.stream.read(min(n, 1 << 20))
            if not chunk:
                raise Malformed(f"truncated: {n} bytes missing at offset {self.pos}")
            self.pos += len(chunk)
            n -= len(chunk)

    def line(self) -> bytes:
        data = self.stream.readline(1 << 16)
        self.pos += len(data)
        if not data.endswith(b"\n"):
            raise Malformed(f"unterminated line at offset {self.pos - len(data)}")
        return data[:-1]

    def peek1(self) -> bytes:
        data = self.stream.read(1)
        if data:
            seek = getattr(self.stream, "seek", None)
            if seek is not None and self.stream.seekable():
                seek(-1, 1)
            else:  # a one-byte push-back for streams that cannot seek
                self.stream = _Pushback(self.stream, data)  # type: ignore[assignment]
        return data


class _Pushback:
    def __init__(self, stream: BinaryIO, head: bytes) -> None:
        self._stream, self._head = stream, head

    def read(self, n: int = -1) -> bytes:
        head, self._head = self._head, b""
        if n < 0:
            return head + self._stream.read()
        return head + self._stream.read(n - len(head)) if n > len(head) else head

    def readline(self, limit: int = -1) -> bytes:
        if self._head:
            if self._head == b"\n":
                self._head = b""
                return b"\n"
            head, self._head = self._head, b""
            return head + self._stream.readline(limit - 1 if limit > 0 else -1)
        return self._stream.readline(limit)

    def seekable(self) -> bool:
        return False
