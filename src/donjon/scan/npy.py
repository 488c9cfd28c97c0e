"""NumPy .npy: parse the header; object arrays carry a pickle, analysed as such."""

from __future__ import annotations

import ast
import struct

from donjon.scan import rules
from donjon.scan.context import Context, Source
from donjon.scan.pickles import scan_pickle


def scan_npy(ctx: Context, source: Source) -> None:
    ctx.formats.append("npy")
    with source.open() as fh:
        head = fh.read(12)
        if len(head) < 10:
            ctx.add(rules.PKL_MALFORMED, "truncated .npy header", source)
            return
        major = head[6]
        if major == 1:
            (size,), start = struct.unpack("<H", head[8:10]), 10
        else:
            (size,), start = struct.unpack("<I", head[8:12]), 12
        rest = head[start:]
        text = (rest + fh.read(size - len(rest))).decode("latin-1", "replace")
    try:
        header = ast.literal_eval(text.strip())
        descr = header["descr"]
    except (ValueError, SyntaxError, KeyError, TypeError) as e:
        ctx.add(rules.PKL_MALFORMED, f"unreadable .npy header: {e}", source)
        return
    if "O" in str(descr):
        ctx.add(rules.PKL_OBJECT_ARRAY, "object array: its data is a pickle", source)
        scan_pickle(ctx, source, multi=False, base=start + size)
