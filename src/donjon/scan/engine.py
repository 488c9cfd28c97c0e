"""Dispatch by content, one file at a time, and folders in parallel."""

from __future__ import annotations

import os
import stat
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO

from donjon.core.findings import Finding
from donjon.errors import ScanError
from donjon.scan import rules
from donjon.scan.context import Context, Source
from donjon.scan.detect import PICKLE_EXTENSIONS, Format, sniff
from donjon.scan.policy import DEFAULT_POLICY, ScanPolicy
from donjon.scan.probe import PROBE_BYTES
from donjon.scan.report import FileReport, ScanReport
from donjon.scan.streams import LimitExceeded
from donjon.scan.values import Bound, Malformed

# A format's analyser (and what it needs: the pickle interpreter, zip and tar
# readers, decompressors, json) is imported when a file of that format shows up.

_COMPRESSED = {Format.GZIP: "gzip", Format.BZ2: "bz2", Format.XZ: "xz", Format.LZMA: "lzma",
               Format.ZLIB: "zlib", Format.LZ4: "lz4"}  # fmt: skip
# What sniff() can only answer from a name: the content is asked first.
_BY_NAME = frozenset({Format.OTHER, Format.ONNX, Format.SAVED_MODEL, Format.TEMPLATE})
# Below this many bytes a folder scans faster in one process than a pool starts.
_PARALLEL_BYTES = 256 << 20


def scan_source(ctx: Context, source: Source) -> None:
    """Scan one stream by its content; nested containers come back here."""
    if source.depth > ctx.policy.max_nesting:
        ctx.add(rules.ARC_LIMIT, f"containers nest deeper than {ctx.policy.max_nesting}", source)
        return
    with source.open() as fh:
        head = fh.read(512)
        fmt = sniff(head, source.name)
        if fmt in _BY_NAME:  # no magic number: the content first, the name only as a hint
            window = head + fh.read(PROBE_BYTES - len(head))
            found = _probe(ctx, window, source.size)
            if fmt is Format.OTHER or found not in (Format.OTHER, Format.CONFIG):
                fmt = found
    if fmt is Format.OTHER and _tail_is_zip(source):
        fmt = Format.ZIP  # data prepended to a zip (polyglots, self-extractors)
    if source.depth == 0:
        ctx.formats.append(fmt.value)
    _extension_hint(ctx, source, fmt)
    _HANDLERS.get(fmt, _skip)(ctx, source)


def _probe(ctx: Context, window: bytes, size: int | None) -> Format:
    """The format of a stream without a magic number, from its first bytes."""
    from donjon.scan.probe import looks_like_pickle, protobuf_kind

    kind = protobuf_kind(window)
    if kind is not None:
        return Format(kind)
    whole = len(window) < PROBE_BYTES or size == len(window)
    if looks_like_pickle(window, ctx.policy, whole=whole):
        return Format.PICKLE
    if _is_text(window, whole):
        return Format.CONFIG  # configs, templates, requirement lists, source code
    return Format.OTHER


def _is_text(window: bytes, whole: bool) -> bool:
    if not window or b"\x00" in window:
        return False
    try:
        window.decode("utf-8")
    except UnicodeDecodeError as e:  # a character cut at the window's end is still text
        return not whole and e.start >= len(window) - 3
    return True


def _tail_is_zip(source: Source) -> bool:
    with source.open() as fh:
        if not fh.seekable():
            return False
        size = fh.seek(0, 2)
        fh.seek(max(0, size - 65558))
        return b"PK\x05\x06" in fh.read(65558)


def _extension_hint(ctx: Context, source: Source, fmt: Format) -> None:
    suffix = source.suffix
    if fmt is Format.PICKLE and suffix and suffix not in PICKLE_EXTENSIONS | {".npy"}:
        ctx.add(rules.SCN_EXTENSION, f"pickle content behind a {suffix!r} extension", source)


def _skip(ctx: Context, source: Source) -> None:
    return None


def _pickle(ctx: Context, source: Source) -> None:
    from donjon.scan.pickles import scan_pickle

    scan_pickle(ctx, source)


def _compressed(fmt: Format) -> Callable[[Context, Source], None]:
    def handler(ctx: Context, source: Source) -> None:
        from donjon.scan import archives

        if fmt in (Format.GZIP, Format.BZ2, Format.XZ) and _is_tar(source, fmt):
            archives.scan_tar(ctx, source, scan_source)
            return
        archives.scan_compressed(ctx, source, _COMPRESSED[fmt], scan_source)

    return handler


def _is_tar(source: Source, fmt: Format) -> bool:
    from donjon.scan.streams import InflateReader, decompressor

    with source.open() as fh:
        reader = InflateReader(fh, decompressor(_COMPRESSED[fmt]), 1 << 20)
        try:
            inner = reader.read(512)
        except (OSError, LimitExceeded):
            return False
    return len(inner) >= 262 and inner[257:262] == b"ustar"


def _lazy(module: str, function: str) -> Callable[[Context, Source], None]:
    def handler(ctx: Context, source: Source) -> None:
        import importlib

        getattr(importlib.import_module(f"donjon.scan.{module}"), function)(ctx, source)

    return handler


def _container(function: str) -> Callable[[Context, Source], None]:
    def handler(ctx: Context, source: Source) -> None:
        from donjon.scan import archives

        getattr(archives, function)(ctx, source, scan_source)

    return handler


_HANDLERS: dict[Format, Callable[[Context, Source], None]] = {
    Format.PICKLE: _pickle,
    Format.ZIP: _container("scan_zip"),
    Format.TAR: _container("scan_tar"),
    Format.SEVEN_ZIP: _container("scan_7z"),
    Format.NPY: _lazy("npy", "scan_npy"),
    Format.HDF5: _lazy("keras", "scan_hdf5"),
    Format.GGUF: _lazy("gguf", "scan_gguf"),
    Format.SAFETENSORS: _lazy("safetensors", "scan_safetensors"),
    Format.ONNX: _lazy("onnx", "scan_onnx"),
    Format.SAVED_MODEL: _lazy("tfsaved", "scan_saved_model"),
    Format.TEMPLATE: _lazy("templates", "scan_template_file"),
    Format.CONFIG: _lazy("config", "scan_config_file"),
    Format.NATIVE: _lazy("config", "scan_native"),
    **{fmt: _compressed(fmt) for fmt in _COMPRESSED},
}


def scan_file(path: str, policy: ScanPolicy = DEFAULT_POLICY) -> FileReport:
    """Scan one file; problems with the file's content are findings, never exceptions."""
    started = time.perf_counter()
    ctx = Context.start(path, policy)
    p = Path(path)
    error = None
    size = 0
    try:
        size = p.stat().st_size

        def opener() -> BinaryIO:
            return open(p, "rb")

        scan_source(ctx, Source(p.name, None, opener, size, 0, str(p.parent)))
    except LimitExceeded as e:
        ctx.add(rules.ARC_BOMB, f"decompression bound reached: {e}")
    except (Malformed, Bound, RecursionError, MemoryError) as e:
        ctx.add(rules.SCN_BUDGET, f"scan stopped: {type(e).__name__}: {e}")
    except PermissionError as e:
        error = f"cannot read {path}: {e.strerror}"
    except FileNotFoundError:
        error = f"{path} vanished during the scan"
    except OSError as e:
        ctx.add(rules.SCN_BUDGET, f"read error inside the file: {e}")
    except Exception as e:  # noqa: BLE001 - fail closed: a scanner fault is a finding, not a pass
        ctx.add(
            rules.SCN_BUDGET, f"scanner fault, file not fully analysed: {type(e).__name__}: {e}"
        )
    fmt = ctx.formats[0] if ctx.formats else "unknown"
    return FileReport(
        path=path,
        format=fmt,
        size=size,
        findings=tuple(ctx.findings),
        error=error,
        seconds=time.perf_counter() - started,
    )


def iter_files(root: Path) -> Iterator[Path]:
    """Every regular file under ``root``, each content once.

    Symbolic links to files inside ``root`` (a Hugging Face cache's
    ``snapshots/`` pointing into ``blobs/``) are reported under the link's
    readable name and their target is not scanned a second time; links that
    leave ``root`` are not followed.
    """
    if root.is_file():
        yield root
        return
    base = root.resolve()
    links: list[Path] = []
    plain: list[Path] = []
    for folder, dirs, files in os.walk(root, followlinks=False):
        dirs.sort()
        for name in sorted(files):
            path = Path(folder) / name
            (links if path.is_symlink() else plain).append(path)
    seen: set[Path] = set()
    for path in links:
        target = path.resolve()
        if target.is_file() and (base in target.parents) and target not in seen:
            seen.add(target)
            yield path
    for path in plain:
        if (not seen or path.resolve() not in seen) and path.is_file():
            yield path


@dataclass(frozen=True)
class _Job:
    path: str
    policy: ScanPolicy


def _run_job(job: _Job) -> tuple[str, str, int, float, str | None, list[tuple[object, ...]]]:
    report = scan_file(job.path, job.policy)
    return (
        report.path,
        report.format,
        report.size,
        report.seconds,
        report.error,
        [_pack(f) for f in report.findings],
    )


def _pack(f: Finding) -> tuple[object, ...]:
    loc = f.location
    return (f.rule.id, f.message, loc.member, loc.offset, loc.opcode_index, f.level.value,
            dict(f.evidence))  # fmt: skip


def _unpack(path: str, packed: tuple[object, ...]) -> Finding:
    from donjon.core.artifacts import ArtifactRef
    from donjon.core.findings import Location, Subject
    from donjon.core.severity import Severity

    rule_id, message, member, offset, opcode, level, evidence = packed
    rule = next(r for r in rules.RULES if r.id == rule_id)
    return Finding(
        rule=rule,
        subject=Subject(artifact=ArtifactRef(path)),
        message=str(message),
        location=Location(member=member, offset=offset, opcode_index=opcode),  # type: ignore[arg-type]
        severity=Severity(int(level)),  # type: ignore[call-overload]
        evidence=evidence,  # type: ignore[arg-type]
    )


ProgressHook = Callable[[FileReport], None]


def scan_path(
    *paths: str | os.PathLike[str],
    policy: ScanPolicy = DEFAULT_POLICY,
    workers: int | None = None,
    on_file: ProgressHook | None = None,
    on_finding: Callable[[Finding], None] | None = None,
) -> ScanReport:
    """Scan files and folders (every file in a folder, each reported on its own)."""
    started = time.perf_counter()
    files: list[str] = []
    sizes: dict[str, int] = {}  # of the files named directly: stat once (a cache has thousands)
    for raw in paths:
        try:
            found = os.stat(raw)
        except OSError:
            raise ScanError(f"{raw} does not exist") from None
        if stat.S_ISREG(found.st_mode):
            files.append(str(Path(raw)))
            sizes[files[-1]] = found.st_size
        else:
            files.extend(str(p) for p in iter_files(Path(raw)))
    count = workers if workers is not None else (policy.workers or (os.cpu_count() or 1))
    reports: list[FileReport] = []

    def accept(report: FileReport) -> None:
        reports.append(report)
        if on_finding is not None:
            for finding in report.findings:
                on_finding(finding)
        if on_file is not None:
            on_file(report)

    total = sum(sizes[f] if f in sizes else os.path.getsize(f) for f in files)
    if count > 1 and len(files) >= 4 and (total >= _PARALLEL_BYTES or workers is not None):
        _parallel(files, policy, count, accept)
    else:
        for path in files:
            accept(scan_file(path, policy))
    reports.sort(key=lambda r: r.path)
    return ScanReport(
        roots=tuple(str(p) for p in paths),
        files=tuple(reports),
        seconds=time.perf_counter() - started,
    )


def _parallel(
    files: list[str], policy: ScanPolicy, workers: int, accept: Callable[[FileReport], None]
) -> None:
    import multiprocessing
    import threading
    from concurrent.futures import ProcessPoolExecutor, as_completed

    # fork is the fastest start; a process with other threads (a progress bar) must not fork.
    methods = multiprocessing.get_all_start_methods()
    method = "fork" if "fork" in methods and threading.active_count() == 1 else "spawn"
    context = multiprocessing.get_context(method)
    with ProcessPoolExecutor(max_workers=min(workers, len(files)), mp_context=context) as pool:
        futures = [pool.submit(_run_job, _Job(path, policy)) for path in files]
        for future in as_completed(futures):
            path, fmt, size, seconds, error, packed = future.result()
            findings = tuple(_unpack(path, item) for item in packed)
            accept(FileReport(path, fmt, size, findings, error, seconds))
