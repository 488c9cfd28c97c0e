"""Bounded byte streams: a slice of a file, and decompressors with an output cap."""

from __future__ import annotations

import sys
import zlib
from typing import BinaryIO, Protocol


class Decompressor(Protocol):
    def decompress(self, data: bytes, max_length: int = ...) -> bytes: ...


class LimitExceeded(Exception):
    """A stream produced more bytes than its bound."""


class SliceReader:
    """Bytes ``[start, start + size)`` of a seekable file, read lazily."""

    def __init__(self, fh: BinaryIO, start: int, size: int) -> None:
        self._fh, self._start, self._size, self._pos = fh, start, size, 0

    def read(self, n: int = -1) -> bytes:
        left = self._size - self._pos
        n = left if n < 0 else min(n, left)
        if n <= 0:
            return b""
        self._fh.seek(self._start + self._pos)
        data = self._fh.read(n)
        self._pos += len(data)
        return data

    def readline(self, limit: int = -1) -> bytes:
        out = bytearray()
        while limit < 0 or len(out) < limit:
            chunk = self.read(min(256, limit - len(out)) if limit > 0 else 256)
            if not chunk:
                break
            cut = chunk.find(b"\n")
            if cut >= 0:
                out += chunk[: cut + 1]
                self._pos -= len(chunk) - cut - 1
                break
            out += chunk
        return bytes(out)

    def seekable(self) -> bool:
        return True

    def seek(self, offset: int, whence: int = 0) -> int:
        base = {0: 0, 1: self._pos, 2: self._size}[whence]
        self._pos = max(0, min(self._size, base + offset))
        return self._pos


class InflateReader:
    """A decompressing reader over ``raw`` that refuses to produce more than ``limit`` bytes."""

    def __init__(self, raw: BinaryIO, decompressor: Decompressor, limit: int) -> None:
        self._raw, self._d, self._limit = raw, decompressor, limit
        self._buf = b""
        self.produced = 0
        self.consumed = 0
        self._eof = False

    def _fill(self, want: int) -> None:
        while len(self._buf) < want and not self._eof:
            chunk = self._raw.read(1 << 16)
            self.consumed += len(chunk)
            if not chunk:
                self._eof = True
                break
            try:
                out = self._d.decompress(chunk)
            except Exception as e:  # anything but corrupt data is raised again
                if not _corrupt(e):
                    raise
                raise OSError(f"corrupt compressed data: {e}") from e
            self.produced += len(out)
            if self.produced > self._limit:
                raise LimitExceeded(f"decompressed size exceeds {self._limit} bytes")
            self._buf += out
            if getattr(self._d, "eof", False):
                self._eof = True

    def read(self, n: int = -1) -> bytes:
        if n < 0:
            self._fill(self._limit + 1)
            data, self._buf = self._buf, b""
            return data
        self._fill(n)
        data, self._buf = self._buf[:n], self._buf[n:]
        return data

    def readline(self, limit: int = -1) -> bytes:
        cap = limit if limit > 0 else 1 << 16
        while b"\n" not in self._buf and len(self._buf) < cap and not self._eof:
            self._fill(len(self._buf) + 256)
        cut = self._buf.find(b"\n", 0, cap)
        end = cut + 1 if cut >= 0 else min(cap, len(self._buf))
        data, self._buf = self._buf[:end], self._buf[end:]
        return data

    def seekable(self) -> bool:
        return False


def _corrupt(error: Exception) -> bool:
    """What decompressors raise on bad data (``lzma`` is imported only for its formats)."""
    if isinstance(error, zlib.error | OSError | EOFError | ValueError):
        return True
    lzma = sys.modules.get("lzma")
    return lzma is not None and isinstance(error, lzma.LZMAError)


def decompressor(kind: str) -> Decompressor:
    if kind == "zlib":
        return zlib.decompressobj()
    if kind == "gzip":
        return zlib.decompressobj(16 + zlib.MAX_WBITS)
    if kind == "deflate":
        return zlib.decompressobj(-zlib.MAX_WBITS)
    if kind == "bz2":
        import bz2

        return bz2.BZ2Decompressor()
    if kind in ("xz", "lzma"):
        import lzma

        return lzma.LZMADecompressor()
    if kind == "lz4":
        from donjon.scan.lz4frame import Lz4FrameDecompressor

        return Lz4FrameDecompressor()
    raise ValueError(f"unknown compression {kind!r}")
