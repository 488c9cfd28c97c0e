"""Containers: zip (PyTorch, Keras, npz and plain), tar, 7z and compressed streams."""

from __future__ import annotations

import re
import zlib
from collections.abc import Callable
from pathlib import Path, PurePosixPath
from typing import IO, BinaryIO, cast

from donjon.scan import rules
from donjon.scan.context import Context, Source
from donjon.scan.streams import InflateReader, LimitExceeded, SliceReader, decompressor
from donjon.scan.zipread import ZipEntry, read_directory

Recurse = Callable[[Context, Source], None]
_TENSOR_MEMBER = re.compile(r"(^|/)data/[^/]+$")
_TORCHSCRIPT_CODE = re.compile(r"(^|/)code/.+\.py$")
_CRC_CHECK_LIMIT = 16 << 20


def member_escapes(name: str) -> bool:
    """Absolute paths, drive letters, UNC paths and '..' components escape the target."""
    text = name.replace("\\", "/")
    if text.startswith("/") or re.match(r"^[A-Za-z]:", text):
        return True
    return ".." in PurePosixPath(text).parts


def seekable(source: Source, ctx: Context) -> BinaryIO:
    """A seekable handle on ``source``, spooling non-seekable streams (bounded)."""
    fh = source.open()
    if fh.seekable():
        return fh
    import tempfile

    spool = cast(BinaryIO, tempfile.SpooledTemporaryFile(max_size=16 << 20))  # noqa: SIM115
    copied = 0
    with fh:
        while chunk := fh.read(1 << 20):
            copied += len(chunk)
            if copied > ctx.policy.max_member_bytes:
                spool.close()
                raise LimitExceeded(f"member larger than {ctx.policy.max_member_bytes} bytes")
            spool.write(chunk)
    spool.seek(0)
    return spool


def _opener(source: Source, ctx: Context, entry: ZipEntry) -> Callable[[], BinaryIO]:
    def open_member() -> BinaryIO:
        fh = seekable(source, ctx)
        raw = SliceReader(fh, entry.data_offset, entry.compressed)
        if entry.method == 0:
            return cast(BinaryIO, _Closing(raw, fh))
        kind = {8: "deflate", 12: "bz2", 14: "lzma"}[entry.method]
        if kind == "lzma":
            raw.read(4)  # zip's LZMA header: version and properties length
            return cast(BinaryIO, _Closing(_raw_lzma(raw, ctx), fh))
        limit = min(ctx.policy.max_member_bytes, max(entry.size, 0) + (1 << 20))
        reader = InflateReader(cast(BinaryIO, raw), decompressor(kind), limit)
        return cast(BinaryIO, _Closing(reader, fh))

    return open_member


def _raw_lzma(raw: SliceReader, ctx: Context) -> InflateReader:
    import lzma

    props = raw.read(5)
    filters = [lzma._decode_filter_properties(lzma.FILTER_LZMA1, props)]  # type: ignore[attr-defined]
    d = lzma.LZMADecompressor(lzma.FORMAT_RAW, filters=filters)
    return InflateReader(cast(BinaryIO, raw), d, ctx.policy.max_member_bytes)


class _Closing:
    """A reader that closes the underlying file with it."""

    def __init__(self, reader: object, fh: IO[bytes]) -> None:
        self._reader, self._fh = reader, fh

    def __getattr__(self, name: str) -> object:
        return getattr(self._reader, name)

    def __enter__(self) -> _Closing:
        return self

    def __exit__(self, *exc: object) -> None:
        self._fh.close()

    def close(self) -> None:
        self._fh.close()


def scan_zip(ctx: Context, source: Source, recurse: Recurse) -> None:
    policy = ctx.policy
    with seekable(source, ctx) as fh:
        size = fh.seek(0, 2)
        try:
            directory = read_directory(fh, size, policy.max_members)
        except (ValueError, OSError) as e:
            ctx.add(rules.ARC_MALFORMED, f"unreadable zip: {e}", source)
            return
    entries = directory.entries
    for problem in directory.problems:
        ctx.add(rules.ARC_MALFORMED, f"zip structure: {problem}", source)
    names = [e.name for e in entries]
    is_torch = any(n.endswith(("data.pkl", ".data/version")) for n in names)
    is_keras = "config.json" in names and any(
        n in ("metadata.json", "model.weights.h5") for n in names
    )
    ctx.formats.append("pytorch-zip" if is_torch else "keras" if is_keras else "zip")
    seen: set[str] = set()
    total = 0
    for entry in entries:
        if entry.name in seen:
            ctx.add(
                rules.ARC_MALFORMED,
                f"duplicate member name {entry.name!r}: readers disagree on which one counts",
                source,
            )
        seen.add(entry.name)
        if not _check_member(ctx, source, entry):
            continue
        total += entry.size
        if total > policy.max_total_bytes:
            ctx.add(rules.ARC_BOMB, f"archive expands to more than {total} bytes", source)
            return
        if entry.name.endswith("/") or entry.data_offset < 0:
            continue
        if is_torch and _TENSOR_MEMBER.search(entry.name) and not entry.name.endswith(".pkl"):
            continue  # tensor payload: PyTorch never interprets it as code
        if is_keras and entry.name.endswith(".h5"):
            continue  # Keras v3 weights: arrays only, the config is in config.json
        if entry.method not in (0, 8, 12, 14):
            ctx.add(rules.ARC_MALFORMED, f"{entry.name}: unsupported method {entry.method}", source)
            continue
        if ctx.out_of_time():
            ctx.add(rules.SCN_BUDGET, "time budget exhausted inside the archive", source)
            return
        child = source.child(entry.name, _opener(source, ctx, entry), entry.size)
        if is_keras and entry.name == "config.json":
            from donjon.scan.keras import scan_keras_config

            scan_keras_config(ctx, child)
            continue
        if entry.size <= _CRC_CHECK_LIMIT:
            _check_crc(ctx, child, entry)
        if is_torch and _TORCHSCRIPT_CODE.search(entry.name):
            from donjon.scan.torchscript import scan_torchscript_code

            scan_torchscript_code(ctx, child)
            continue
        try:
            recurse(ctx, child)
        except LimitExceeded as e:
            ctx.add(rules.ARC_BOMB, f"{entry.name}: {e} (declared {entry.size})", child)


def _check_member(ctx: Context, source: Source, entry: ZipEntry) -> bool:
    if member_escapes(entry.name):
        ctx.add(rules.ARC_TRAVERSAL, f"member {entry.name!r} escapes the target folder", source)
    mode = entry.external_attr >> 16
    if mode & 0o170000 == 0o120000:
        ctx.add(rules.ARC_LINK, f"member {entry.name!r} is a symbolic link", source)
        return False
    if entry.flags & 0x1:
        ctx.add(
            rules.ARC_MALFORMED,
            f"{entry.name}: encryption flag set (PyTorch ignores it; other readers refuse)",
            source,
        )
    if entry.compressed > 0 and entry.size > (1 << 20):
        ratio = entry.size / entry.compressed
        if ratio > ctx.policy.max_ratio:
            ctx.add(
                rules.ARC_BOMB,
                f"member {entry.name!r} expands {ratio:.0f}x to {entry.size} bytes",
                source,
            )
            return False
    if entry.size > ctx.policy.max_member_bytes and entry.method != 0:
        ctx.add(rules.ARC_BOMB, f"member {entry.name!r} declares {entry.size} bytes", source)
        return False
    return True


def _check_crc(ctx: Context, child: Source, entry: ZipEntry) -> None:
    crc = 0
    try:
        with child.open() as fh:
            while chunk := fh.read(1 << 20):
                crc = zlib.crc32(chunk, crc)
    except (OSError, LimitExceeded) as e:
        ctx.add(rules.ARC_MALFORMED, f"{entry.name}: unreadable member data: {e}", child)
        return
    if crc != entry.crc:
        ctx.add(
            rules.ARC_MALFORMED,
            f"{entry.name}: CRC mismatch (stored {entry.crc:08x}, actual {crc:08x})",
            child,
        )


def scan_tar(ctx: Context, source: Source, recurse: Recurse) -> None:
    import tarfile  # imported by the scans that need it: `donjon scan` starts faster

    ctx.formats.append("tar")
    total = 0
    try:
        with seekable(source, ctx) as fh, tarfile.open(fileobj=fh, mode="r:*") as tar:
            for count, info in enumerate(tar):
                if count >= ctx.policy.max_members:
                    ctx.add(rules.ARC_LIMIT, "too many tar members; the rest were skipped", source)
                    return
                if member_escapes(info.name):
                    ctx.add(rules.ARC_TRAVERSAL, f"member {info.name!r} escapes", source)
                if info.issym() or info.islnk():
                    ctx.add(
                        rules.ARC_LINK, f"member {info.name!r} links to {info.linkname!r}", source
                    )
                    continue
                if info.isdev() or info.isfifo():
                    ctx.add(rules.ARC_LINK, f"member {info.name!r} is a special file", source)
                    continue
                if not info.isfile():
                    continue
                total += info.size
                if total > ctx.policy.max_total_bytes:
                    ctx.add(rules.ARC_BOMB, f"tar expands to more than {total} bytes", source)
                    return
                data_at, size = info.offset_data, info.size

                def open_member(at: int = data_at, n: int = size) -> BinaryIO:
                    inner = seekable(source, ctx)
                    if inner.seekable() and not _compressed_tar(inner):
                        return cast(BinaryIO, _Closing(SliceReader(inner, at, n), inner))
                    inner.close()
                    return _tar_member(source, ctx, at, n)

                recurse(ctx, source.child(info.name, open_member, size))
    except (tarfile.TarError, OSError, EOFError) as e:
        ctx.add(rules.ARC_MALFORMED, f"unreadable tar: {e}", source)


def _compressed_tar(fh: BinaryIO) -> bool:
    fh.seek(0)
    head = fh.read(6)
    fh.seek(0)
    return head[:2] == b"\x1f\x8b" or head[:3] == b"BZh" or head[:6] == b"\xfd7zXZ\x00"


def _tar_member(source: Source, ctx: Context, at: int, size: int) -> BinaryIO:
    import tarfile

    fh = seekable(source, ctx)
    tar = tarfile.open(fileobj=fh, mode="r:*")  # noqa: SIM115
    for info in tar:
        if info.offset_data == at:
            member = tar.extractfile(info)
            if member is not None:
                return cast(BinaryIO, _Closing(member, fh))
    fh.close()
    raise OSError("tar member vanished")


def scan_compressed(ctx: Context, source: Source, kind: str, recurse: Recurse) -> None:
    """gzip / bz2 / xz / lzma / zlib streams (joblib's compressors): scan the content."""
    ctx.formats.append(kind)
    limit = ctx.policy.max_member_bytes

    def open_inner() -> BinaryIO:
        raw = source.open()
        return cast(BinaryIO, _Closing(InflateReader(raw, decompressor(kind), limit), raw))

    name = source.name
    inner_name = str(Path(name).with_suffix("")) if Path(name).suffix else name
    child = source.child(f"{inner_name}[{kind}]", open_inner, None)
    try:
        recurse(ctx, child)
    except LimitExceeded as e:
        ctx.add(rules.ARC_BOMB, f"{kind} stream: {e}", source)


def scan_7z(ctx: Context, source: Source, recurse: Recurse) -> None:
    ctx.formats.append("7z")
    try:
        import py7zr
    except ImportError:
        ctx.add(rules.SCN_BUDGET, "7z support is not installed (pip install donjon[scan])", source)
        return
    try:
        with seekable(source, ctx) as fh, py7zr.SevenZipFile(fh, mode="r") as archive:
            infos = archive.list()
            targets, total = [], 0
            for info in infos[: ctx.policy.max_members]:
                name = info.filename
                if member_escapes(name):
                    ctx.add(rules.ARC_TRAVERSAL, f"member {name!r} escapes", source)
                    continue
                if getattr(info, "is_symlink", False):
                    ctx.add(rules.ARC_LINK, f"member {name!r} is a symbolic link", source)
                    continue
                if info.is_directory:
                    continue
                total += info.uncompressed or 0
                if total > ctx.policy.max_member_bytes:
                    ctx.add(rules.ARC_BOMB, f"7z expands to more than {total} bytes", source)
                    return
                targets.append(name)
            import tempfile

            with tempfile.TemporaryDirectory(prefix="donjon-7z-") as tmp:
                archive.extract(path=tmp, targets=targets)
                for name in targets:
                    path = Path(tmp) / name
                    if path.is_file() and not path.is_symlink():
                        data = path.read_bytes()
                        recurse(ctx, source.child(name, _bytes_opener(data), len(data)))
    except Exception as e:  # noqa: BLE001 - py7zr raises many types on hostile input
        ctx.add(rules.ARC_MALFORMED, f"unreadable 7z archive: {type(e).__name__}: {e}", source)


def _bytes_opener(data: bytes) -> Callable[[], BinaryIO]:
    import io

    return lambda: io.BytesIO(data)
