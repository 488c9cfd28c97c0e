"""NumPy .npy: parse the header; object arrays carry a pickle, analysed as such."""

from __future__ import annotations

import ast
import struct
from typing import Any

from donjon.scan import rules
from donjon.scan.context import Context, Source
from donjon.scan.pickles import scan_pickle

# The header is a Python dict literal, read as numpy reads it (ast.literal_eval:
# literals only, nothing evaluated); a pattern could be fooled by key order or quoting.
_MAX_HEADER = 1 << 20
AST_ONLY = "<donjon: syntax tree only>"  # the file name of parses that never compile code


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
        if size > _MAX_HEADER:
            ctx.add(rules.PKL_MALFORMED, f".npy header of {size} bytes", source)
            return
        rest = head[start:]
        raw = rest + fh.read(size - len(rest))
    text = raw.decode("utf-8" if major >= 3 else "latin-1", "replace")
    try:
        header = ast.literal_eval(ast.parse(text.strip(), AST_ONLY, mode="eval"))
    except (ValueError, SyntaxError, MemoryError, RecursionError) as e:
        ctx.add(rules.PKL_MALFORMED, f"unreadable .npy header: {type(e).__name__}", source)
        return
    if not isinstance(header, dict) or "descr" not in header:
        ctx.add(rules.PKL_MALFORMED, "unreadable .npy header: no descr", source)
        return
    if _holds_objects(header["descr"], 0):
        ctx.add(rules.PKL_OBJECT_ARRAY, "object array: its data is a pickle", source)
        scan_pickle(ctx, source, multi=False, base=start + size)


def _holds_objects(descr: Any, depth: int) -> bool:
    """True when a dtype description (a string, or fields of a structured dtype) has 'O'."""
    if depth > 32:
        return True  # numpy would refuse; fail closed
    if isinstance(descr, str):
        return descr.lstrip("|<>=").startswith("O")
    if isinstance(descr, list):  # fields: (name or (title, name), dtype[, shape])
        return any(
            not isinstance(field, tuple) or len(field) < 2 or _holds_objects(field[1], depth + 1)
            for field in descr
        )
    return True  # not a dtype numpy accepts: fail closed
