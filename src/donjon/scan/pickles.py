"""Pickle streams: run the interpreter and turn its issues into findings."""

from __future__ import annotations

import io
from typing import BinaryIO

from donjon.scan.context import Context, Source
from donjon.scan.pickle_vm import Issue, PickleVM, Reader

_IN_MEMORY = 64 << 20


def _stream(fh: BinaryIO, size: int | None) -> BinaryIO | _Chain:
    """Small streams are read at once: the interpreter reads one byte per opcode."""
    if size is not None and size <= _IN_MEMORY:
        return io.BytesIO(fh.read(size))
    if size is None and not fh.seekable():  # a decompressor: buffer it when it is small
        head = fh.read(_IN_MEMORY)
        if len(head) < _IN_MEMORY:
            return io.BytesIO(head)
        return _Chain(head, fh)
    return fh


class _Chain:
    """``head`` followed by the rest of ``fh``, for streams too large to buffer."""

    def __init__(self, head: bytes, fh: BinaryIO) -> None:
        self._head, self._fh = io.BytesIO(head), fh

    def read(self, n: int = -1) -> bytes:
        data = self._head.read(n)
        if n < 0 or len(data) < n:
            data += self._fh.read(-1 if n < 0 else n - len(data))
        return data

    def readline(self, limit: int = -1) -> bytes:
        line = self._head.readline(limit)
        if not line.endswith(b"\n") and (limit < 0 or len(line) < limit):
            line += self._fh.readline(-1 if limit < 0 else limit - len(line))
        return line

    def seekable(self) -> bool:
        return False


def scan_pickle(ctx: Context, source: Source, *, multi: bool = True, base: int = 0) -> None:
    """Analyse ``source`` as one or more back-to-back pickles starting at ``base``."""
    size = None if source.size is None else max(0, source.size - base)
    with source.open() as fh:
        if base:
            fh.read(base)
        vm = PickleVM(ctx.policy, deadline=ctx.deadline)
        issues = vm.run(Reader(_stream(fh, size), base), multi=multi)  # type: ignore[arg-type]
    if vm.skipped_arrays:
        # joblib semantics skipped raw array bytes; plain pickle.load would not.
        # Interpret the stream again as plain pickle so nothing can hide there.
        with source.open() as fh:
            if base:
                fh.read(base)
            plain = PickleVM(ctx.policy, deadline=ctx.deadline)
            plain.plain = True
            seen = {(i.rule.id, i.evidence.get("callable")) for i in issues}
            for issue in plain.run(Reader(_stream(fh, size), base), multi=multi):  # type: ignore[arg-type]
                if (issue.rule.id, issue.evidence.get("callable")) not in seen:
                    issue.evidence["reading"] = "plain pickle (no joblib array skipping)"
                    issues.append(issue)
    _emit(ctx, source, issues)


def _emit(ctx: Context, source: Source, issues: list[Issue]) -> None:
    for issue in issues:
        ctx.add(
            issue.rule,
            issue.message,
            source,
            offset=issue.offset,
            opcode_index=issue.opcode_index,
            severity=issue.severity,
            **issue.evidence,
        )
