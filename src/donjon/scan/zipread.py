"""A zip reader that reads the central directory itself, as PyTorch's reader does.

It never trusts the local headers for names or sizes (only for the offset of
the data), ignores CRCs and flag bits for reading, and reports every
disagreement so that tricks aimed at other readers show up as findings.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass, field
from typing import BinaryIO

_EOCD = b"PK\x05\x06"
_EOCD64_LOC = b"PK\x06\x07"
_CDIR = b"PK\x01\x02"
_LOCAL = b"PK\x03\x04"


@dataclass
class ZipEntry:
    name: str
    method: int
    flags: int
    crc: int
    compressed: int
    size: int
    header_offset: int
    external_attr: int
    data_offset: int = -1
    local_name: str | None = None


@dataclass
class ZipDirectory:
    entries: list[ZipEntry] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)


def _zip64(extra: bytes, entry: ZipEntry) -> None:
    pos = 0
    while pos + 4 <= len(extra):
        tag, size = struct.unpack_from("<HH", extra, pos)
        body = extra[pos + 4 : pos + 4 + size]
        if tag == 1:
            values = [struct.unpack_from("<Q", body, i)[0] for i in range(0, len(body) - 7, 8)]
            if entry.size == 0xFFFFFFFF and values:
                entry.size = values.pop(0)
            if entry.compressed == 0xFFFFFFFF and values:
                entry.compressed = values.pop(0)
            if entry.header_offset == 0xFFFFFFFF and values:
                entry.header_offset = values.pop(0)
        pos += 4 + size


def read_directory(fh: BinaryIO, file_size: int, max_entries: int) -> ZipDirectory:
    """Parse the central directory; ValueError when there is none."""
    tail_size = min(file_size, 65536 + 22)
    fh.seek(file_size - tail_size)
    tail = fh.read(tail_size)
    at = tail.rfind(_EOCD)
    if at < 0 or at + 22 > len(tail):
        raise ValueError("no end-of-central-directory record")
    directory = ZipDirectory()
    _, _, _, total, cd_size, cd_offset, _ = struct.unpack_from("<HHHHIIH", tail, at + 4)
    loc = tail.rfind(_EOCD64_LOC, 0, at)
    if loc >= 0 and (cd_offset == 0xFFFFFFFF or total == 0xFFFF):
        (eocd64_at,) = struct.unpack_from("<Q", tail, loc + 8)
        fh.seek(eocd64_at)
        rec = fh.read(56)
        if rec[:4] == b"PK\x06\x06" and len(rec) == 56:
            total, cd_size, cd_offset = struct.unpack_from("<QQQ", rec, 32)
    eocd_at = file_size - tail_size + at
    # Prepended data (polyglots, self-extracting archives) shifts every offset.
    shift = max(0, eocd_at - cd_size - cd_offset) if loc < 0 else 0
    if shift:
        directory.problems.append(f"{shift} bytes of data precede the archive")
    fh.seek(cd_offset + shift)
    cd = fh.read(min(cd_size, 256 << 20))
    pos = 0
    while pos + 46 <= len(cd) and cd[pos : pos + 4] == _CDIR:
        if len(directory.entries) >= max_entries:
            directory.problems.append(f"more than {max_entries} members; the rest were skipped")
            break
        fields = struct.unpack_from("<HHHHHHIIIHHHHHII", cd, pos + 4)
        (_, _, flags, method, _, _, crc, csize, usize, nlen, xlen, clen, _, _, ext, off) = fields
        raw_name = cd[pos + 46 : pos + 46 + nlen]
        extra = cd[pos + 46 + nlen : pos + 46 + nlen + xlen]
        name = raw_name.decode("utf-8" if flags & 0x800 else "cp437", "replace")
        entry = ZipEntry(name, method, flags, crc, csize, usize, off + shift, ext)
        _zip64(extra, entry)
        directory.entries.append(entry)
        pos += 46 + nlen + xlen + clen
    if len(directory.entries) < min(total, max_entries):
        directory.problems.append(
            f"central directory lists {total} members but {len(directory.entries)} could be read"
        )
    for entry in directory.entries:
        _locate(fh, entry, directory)
    return directory


def _locate(fh: BinaryIO, entry: ZipEntry, directory: ZipDirectory) -> None:
    fh.seek(entry.header_offset)
    header = fh.read(30)
    if len(header) < 30 or header[:4] != _LOCAL:
        directory.problems.append(f"{entry.name}: no local header at {entry.header_offset}")
        return
    nlen, xlen = struct.unpack_from("<HH", header, 26)
    local_name = fh.read(nlen).decode("utf-8", "replace")
    entry.local_name = local_name
    entry.data_offset = entry.header_offset + 30 + nlen + xlen
    if local_name != entry.name:
        directory.problems.append(
            f"{entry.name}: local header names {local_name!r}, the central directory differs"
        )
