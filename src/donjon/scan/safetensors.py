"""safetensors: validate the JSON header against the file, never read tensors."""

from __future__ import annotations

import json
import math
import struct

from donjon.scan import rules
from donjon.scan.context import Context, Source

DTYPE_SIZES = {"BOOL": 1, "U8": 1, "I8": 1, "F8_E5M2": 1, "F8_E4M3": 1, "F8_E8M0": 1,
               "I16": 2, "U16": 2, "F16": 2, "BF16": 2, "I32": 4, "U32": 4, "F32": 4,
               "I64": 8, "U64": 8, "F64": 8, "C64": 8, "F4": 1, "F6_E2M3": 1,
               "F6_E3M2": 1}  # fmt: skip


def header_problems(header: object, data_size: int) -> list[str]:
    if not isinstance(header, dict):
        return ["header is not a JSON object"]
    problems: list[str] = []
    spans: list[tuple[int, int, str]] = []
    for name, info in header.items():
        if name == "__metadata__":
            if not isinstance(info, dict) or not all(isinstance(v, str) for v in info.values()):
                problems.append("__metadata__ must map strings to strings")
            continue
        if not isinstance(info, dict):
            problems.append(f"{name}: entry is not an object")
            continue
        dtype, shape, offsets = info.get("dtype"), info.get("shape"), info.get("data_offsets")
        if dtype not in DTYPE_SIZES:
            problems.append(f"{name}: unknown dtype {dtype!r}")
            continue
        if not isinstance(shape, list) or not all(isinstance(d, int) and d >= 0 for d in shape):
            problems.append(f"{name}: bad shape {shape!r}")
            continue
        if (
            not isinstance(offsets, list)
            or len(offsets) != 2
            or not all(isinstance(o, int) for o in offsets)
            or not 0 <= offsets[0] <= offsets[1]
        ):
            problems.append(f"{name}: bad data_offsets {offsets!r}")
            continue
        expected = math.prod(shape) * DTYPE_SIZES[dtype]
        if dtype in ("F4", "F6_E2M3", "F6_E3M2"):
            expected = -1  # sub-byte types: size checked by coverage only
        if expected >= 0 and offsets[1] - offsets[0] != expected:
            problems.append(f"{name}: {offsets[1] - offsets[0]} bytes for {expected} expected")
        if offsets[1] > data_size:
            problems.append(f"{name}: data ends at {offsets[1]}, beyond the file ({data_size})")
        spans.append((offsets[0], offsets[1], name))
    spans.sort()
    end = 0
    for start, stop, name in spans:
        if start < end:
            problems.append(f"{name}: overlaps the previous tensor")
        elif start > end:
            problems.append(f"{name}: gap of {start - end} bytes before it")
        end = max(end, stop)
    if spans and end != data_size:
        problems.append(f"tensors cover {end} bytes but the data section has {data_size}")
    return problems


def scan_safetensors(ctx: Context, source: Source) -> None:
    ctx.formats.append("safetensors")
    with source.open() as fh:
        head = fh.read(8)
        size = source.size if source.size is not None else 0
        (n,) = struct.unpack("<Q", head)
        if n > ctx.policy.max_header_bytes or (source.size is not None and n + 8 > size):
            ctx.add(rules.STF_HEADER, f"header length {n} exceeds the file or the bound", source)
            return
        raw = fh.read(n)
    try:
        header = json.loads(raw)
    except (ValueError, UnicodeDecodeError) as e:
        ctx.add(rules.STF_HEADER, f"header is not valid JSON: {e}", source)
        return
    metadata = header.get("__metadata__") if isinstance(header, dict) else None
    if isinstance(metadata, dict):  # strings: configs, templates, _target_ (by content)
        from donjon.scan.config import check_value

        check_value(ctx, source, metadata, "__metadata__")
    data_size = size - 8 - n if source.size is not None else 1 << 62
    problems = header_problems(header, data_size)
    if problems:
        ctx.add(
            rules.STF_HEADER,
            f"invalid safetensors header: {'; '.join(problems[:3])}",
            source,
            problems=problems[:50],
        )
