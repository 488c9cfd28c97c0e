"""Pickle streams: run the interpreter and turn its issues into findings."""

from __future__ import annotations

from donjon.scan.context import Context, Source
from donjon.scan.pickle_vm import Issue, PickleVM, Reader


def scan_pickle(ctx: Context, source: Source, *, multi: bool = True, base: int = 0) -> None:
    """Analyse ``source`` as one or more back-to-back pickles starting at ``base``."""
    with source.open() as fh:
        if base:
            fh.read(base)
        vm = PickleVM(ctx.policy, deadline=ctx.deadline)
        issues = vm.run(Reader(fh, base), multi=multi)
    if vm.skipped_arrays:
        # joblib semantics skipped raw array bytes; plain pickle.load would not.
        # Interpret the stream again as plain pickle so nothing can hide there.
        with source.open() as fh:
            if base:
                fh.read(base)
            plain = PickleVM(ctx.policy, deadline=ctx.deadline)
            plain.plain = True
            seen = {(i.rule.id, i.evidence.get("callable")) for i in issues}
            for issue in plain.run(Reader(fh, base), multi=multi):
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
