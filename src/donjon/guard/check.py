"""Scan what a loader is about to read (a path, bytes or an open file) and decide."""

from __future__ import annotations

import dataclasses
import importlib.util
import io
import os
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import BinaryIO

from donjon.core.severity import Severity
from donjon.errors import ModelRefused
from donjon.scan import DEFAULT_POLICY, FileReport, ScanPolicy, rules, scan_file, scan_path
from donjon.scan.context import Context, Source
from donjon.scan.engine import scan_source
from donjon.scan.streams import LimitExceeded
from donjon.scan.values import Bound, Malformed


@dataclass(frozen=True, slots=True)
class GuardPolicy:
    """When a guarded loader refuses: any finding at or above ``fail_on``.

    ``scan`` is the scanner's own policy (allow lists, limits). A file the
    scanner cannot read is refused too: the guard fails closed.
    """

    fail_on: Severity = Severity.MEDIUM
    scan: ScanPolicy = field(default=DEFAULT_POLICY)

    @classmethod
    def from_label(cls, fail_on: str, scan: ScanPolicy = DEFAULT_POLICY) -> GuardPolicy:
        return cls(fail_on=Severity.parse(fail_on), scan=scan)


def scan_bytes(data: bytes, name: str, policy: ScanPolicy = DEFAULT_POLICY) -> FileReport:
    """Scan an in-memory artifact the way ``scan_file`` scans a file."""
    started = time.perf_counter()
    ctx = Context.start(name, policy)

    def opener() -> BinaryIO:
        return io.BytesIO(data)

    try:
        scan_source(ctx, Source(name, None, opener, len(data), 0, None))
    except LimitExceeded as e:
        ctx.add(rules.ARC_BOMB, f"decompression bound reached: {e}")
    except (Malformed, Bound, RecursionError, MemoryError) as e:
        ctx.add(rules.SCN_BUDGET, f"scan stopped: {type(e).__name__}: {e}")
    except Exception as e:  # noqa: BLE001 - fail closed: a scanner fault is a finding, not a pass
        ctx.add(rules.SCN_BUDGET, f"scanner fault, not fully analysed: {type(e).__name__}: {e}")
    return FileReport(
        path=name,
        format=ctx.formats[0] if ctx.formats else "unknown",
        size=len(data),
        findings=tuple(ctx.findings),
        error=None,
        seconds=time.perf_counter() - started,
    )


def enforce(report: FileReport, policy: GuardPolicy, loader: str) -> None:
    """Raise :class:`ModelRefused` when ``report`` reaches the policy's threshold."""
    if report.error:
        raise ModelRefused(f"{loader}: refused {report.path}: {report.error}", report)
    bad = [f for f in report.findings if f.level >= policy.fail_on]
    if bad:
        worst = max(bad, key=lambda f: f.level)
        more = f" (and {len(bad) - 1} more)" if len(bad) > 1 else ""
        raise ModelRefused(
            f"{loader}: refused {report.path}: {worst.rule.id} [{worst.level.label}] "
            f"{worst.message}{more}",
            report,
        )


def check_path(path: str | os.PathLike[str], policy: GuardPolicy, loader: str) -> None:
    """Scan a file (or every file of a folder) before ``loader`` opens it."""
    p = Path(path)
    if p.is_dir():
        for report in scan_path(str(p), policy=policy.scan).files:
            enforce(report, policy, loader)
        return
    if not p.exists():
        return  # the loader raises its own FileNotFoundError; nothing to scan or load
    enforce(scan_file(str(p), policy.scan), policy, loader)


def check_stream(stream: BinaryIO, policy: GuardPolicy, loader: str) -> BinaryIO:
    """Scan the rest of an open file; return a stream positioned where it was.

    A seekable stream is rewound; any other is replaced by the bytes read.
    """
    name = str(getattr(stream, "name", "<stream>"))
    if stream.seekable():
        start = stream.tell()
        data = stream.read()
        stream.seek(start)
        enforce(scan_bytes(data, name, policy.scan), policy, loader)
        return stream
    data = stream.read()
    enforce(scan_bytes(data, name, policy.scan), policy, loader)
    return io.BytesIO(data)


def check_cached_repo(repo_id: str, revision: str | None, policy: GuardPolicy, loader: str) -> None:
    """Scan a Hugging Face repository's cached snapshot before ``from_pretrained`` reads it.

    Not cached (or huggingface_hub absent): nothing to scan here; the files the
    library then downloads go through the guarded ``torch.load`` if they pickle.
    """
    if importlib.util.find_spec("huggingface_hub") is None:
        return
    from donjon.hub import cached_files

    for hub_file in cached_files(repo_id, revision):
        report = scan_file(str(hub_file.path), policy.scan)
        enforce(dataclasses.replace(report, path=hub_file.label), policy, loader)
