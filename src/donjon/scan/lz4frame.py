"""An LZ4 frame decoder in pure Python (joblib's ``compress="lz4"``), with no dependency.

It follows the frame format (magic ``04 22 4D 18``, frame descriptor, blocks,
end mark, optional checksums, which are skipped rather than verified) and the
block format (literal runs and back-references into the last 64 KiB). It is
fed chunk by chunk like :mod:`zlib`'s decompressors and never produces more
than one block per input block, so the caller's output bound holds.
"""

from __future__ import annotations

MAGIC = b"\x04\x22\x4d\x18"
_SKIPPABLE = range(0x184D2A50, 0x184D2A60)
_WINDOW = 64 << 10
_BLOCK_SIZES = {4: 64 << 10, 5: 256 << 10, 6: 1 << 20, 7: 4 << 20}


class Lz4Error(ValueError):
    """The bytes are not a valid LZ4 frame."""


def _extended(src: bytes, i: int, value: int, what: str) -> tuple[int, int]:
    """An LZ4 length of 15 goes on in bytes of 255 until a smaller one; returns (length, i)."""
    n = len(src)
    while True:
        if i >= n:
            raise Lz4Error(f"truncated {what}")
        extra = src[i]
        i += 1
        value += extra
        if extra != 255:
            return value, i


def decode_block(src: bytes, history: bytearray) -> bytes:
    """Decode one compressed block; back-references may reach into ``history``."""
    out = bytearray(history)
    base = len(out)
    i, n = 0, len(src)
    while i < n:
        token = src[i]
        i += 1
        literals = token >> 4
        if literals == 15:
            literals, i = _extended(src, i, literals, "literal length")
        if i + literals > n:
            raise Lz4Error("literals run past the block")
        out += src[i : i + literals]
        i += literals
        if i >= n:
            break  # the last sequence has literals only
        if i + 2 > n:
            raise Lz4Error("truncated match offset")
        offset = src[i] | src[i + 1] << 8
        i += 2
        if offset == 0 or offset > len(out):
            raise Lz4Error("match offset out of range")
        length = token & 15
        if length == 15:
            length, i = _extended(src, i, length, "match length")
        length += 4
        start = len(out) - offset
        if length <= offset:
            out += out[start : start + length]
        else:  # an overlapping copy repeats the last ``offset`` bytes
            pattern = bytes(out[start:])
            out += (pattern * (length // offset + 1))[:length]
    return bytes(out[base:])


class Lz4FrameDecompressor:
    """Streaming decoder with the ``decompress(data)`` / ``eof`` interface of zlib's objects."""

    def __init__(self) -> None:
        self._buf = bytearray()
        self._history = bytearray()
        self._header_done = False
        self._block_checksum = False
        self._content_checksum = False
        self._max_block = 4 << 20
        self.eof = False

    def decompress(self, data: bytes, max_length: int = 0) -> bytes:
        self._buf += data
        out = bytearray()
        while not self.eof:
            if not self._header_done:
                if not self._header():
                    break
                continue
            if len(self._buf) < 4:
                break
            size = int.from_bytes(self._buf[:4], "little")
            if size == 0:  # end mark, then an optional content checksum
                need = 8 if self._content_checksum else 4
                if len(self._buf) < need:
                    break
                del self._buf[:need]
                self.eof = True
                break
            raw, size = bool(size & 0x80000000), size & 0x7FFFFFFF
            if size > self._max_block:
                raise Lz4Error(f"block of {size} bytes exceeds the frame's block size")
            need = 4 + size + (4 if self._block_checksum else 0)
            if len(self._buf) < need:
                break
            payload = bytes(self._buf[4 : 4 + size])
            del self._buf[:need]
            block = payload if raw else decode_block(payload, self._history)
            self._history = (self._history + block)[-_WINDOW:]
            out += block
        return bytes(out)

    def _header(self) -> bool:
        if len(self._buf) < 7:
            return False
        magic = int.from_bytes(self._buf[:4], "little")
        if magic in _SKIPPABLE:  # a skippable frame: magic, size, data
            if len(self._buf) < 8:
                return False
            skip = 8 + int.from_bytes(self._buf[4:8], "little")
            if len(self._buf) < skip:
                return False
            del self._buf[:skip]
            return True
        if bytes(self._buf[:4]) != MAGIC:
            raise Lz4Error("not an LZ4 frame")
        flags, block_descriptor = self._buf[4], self._buf[5]
        if flags >> 6 != 1:
            raise Lz4Error(f"unsupported LZ4 frame version {flags >> 6}")
        size = 7 + (8 if flags & 0x08 else 0) + (4 if flags & 0x01 else 0)
        if len(self._buf) < size:
            return False
        self._block_checksum = bool(flags & 0x10)
        self._content_checksum = bool(flags & 0x04)
        self._max_block = _BLOCK_SIZES.get((block_descriptor >> 4) & 7, 4 << 20)
        del self._buf[:size]
        self._header_done = True
        return True
