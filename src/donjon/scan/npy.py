"""NumPy .npy: parse the header; object arrays carry a pickle, analysed as such."""

from __future__ import annotations

import re
import struct

from donjon.scan import rules
from donjon.scan.context import Context, Source
from donjon.scan.pickles import scan_pickle

# The header is a Python dict literal; it is matched, never evaluated.
_DESCR = re.compile(r"""['"]descr['"]\s*:\s*(\[.*\]|'[^']*'|"[^"]*")""", re.S)
_OBJECT = re.compile(r"""['"][|<>=]?O\d*['"]""")


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
    found = _DESCR.search(text)
    if found is None:
        ctx.add(rules.PKL_MALFORMED, "unreadable .npy header: no descr", source)
        return
    if _OBJECT.search(found[1]):
        ctx.add(rules.PKL_OBJECT_ARRAY, "object array: its data is a pickle", source)
        scan_pickle(ctx, source, multi=False, base=start + size)
