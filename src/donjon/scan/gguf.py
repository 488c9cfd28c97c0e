"""GGUF: parse the header and key-value metadata ourselves; check chat templates."""

from __future__ import annotations

import struct
from typing import Any, BinaryIO

from donjon.scan import rules
from donjon.scan.config import check_value
from donjon.scan.context import Context, Source
from donjon.scan.templates import check_template

_SCALARS = {0: "<B", 1: "<b", 2: "<H", 3: "<h", 4: "<I", 5: "<i", 6: "<f", 7: "<?", 10: "<Q",
            11: "<q", 12: "<d"}  # fmt: skip
_MAX_KV = 1 << 20
_MAX_STRING = 64 << 20
_MAX_ARRAY = 1 << 26


class _Bad(Exception):
    pass


def _read(fh: BinaryIO, n: int) -> bytes:
    data = fh.read(n)
    if len(data) != n:
        raise _Bad("truncated")
    return data


def _string(fh: BinaryIO, wide: bool) -> str:
    (n,) = struct.unpack("<Q" if wide else "<I", _read(fh, 8 if wide else 4))
    if n > _MAX_STRING:
        raise _Bad(f"string of {n} bytes")
    return _read(fh, n).decode("utf-8", "replace")


def _value(fh: BinaryIO, kind: int, wide: bool, keep: bool) -> Any:
    if kind in _SCALARS:
        fmt = _SCALARS[kind]
        return struct.unpack(fmt, _read(fh, struct.calcsize(fmt)))[0]
    if kind == 8:
        return _string(fh, wide)
    if kind == 9:
        (inner,) = struct.unpack("<I", _read(fh, 4))
        (n,) = struct.unpack("<Q" if wide else "<I", _read(fh, 8 if wide else 4))
        if n > _MAX_ARRAY:
            raise _Bad(f"array of {n} items")
        if inner in _SCALARS:
            fh.seek(n * struct.calcsize(_SCALARS[inner]), 1)
            return None
        return (
            [_value(fh, inner, wide, False) for _ in range(n)]
            if keep
            else [_value(fh, inner, wide, False) for _ in range(n)][:0]
        )
    raise _Bad(f"unknown value type {kind}")


def scan_gguf(ctx: Context, source: Source) -> None:
    ctx.formats.append("gguf")
    with source.open() as fh:
        try:
            _, version = struct.unpack("<4sI", _read(fh, 8))
            wide = version >= 2
            fmt = "<QQ" if wide else "<II"
            _, kv_count = struct.unpack(fmt, _read(fh, struct.calcsize(fmt)))
            if kv_count > _MAX_KV:
                raise _Bad(f"{kv_count} metadata entries")
            for _ in range(kv_count):
                key = _string(fh, wide)
                (kind,) = struct.unpack("<I", _read(fh, 4))
                keep = "chat_template" in key
                value = _value(fh, kind, wide, keep)
                if keep and isinstance(value, str):
                    check_template(ctx, source, value, key)
                elif isinstance(value, str) and len(value) > 8:  # any string metadata
                    check_value(ctx, source, value, key)
        except (_Bad, struct.error, OSError) as e:
            ctx.add(rules.GGF_MALFORMED, f"malformed GGUF metadata: {e}", source)
