"""Streaming, parallel digests of model files and folders, following the OMS manifest rules.

The OpenSSF Model Signing (OMS) ``files`` serialization records one digest per
regular file, named by its POSIX path relative to the model folder; ``shards``
records one digest per ``path:start:end`` slice of ``shard_size`` bytes, so the
slices of one big file hash in parallel. Paths under an ignored path (``.git``,
``.github``, ``.gitattributes``, ``.gitignore`` and the signature file by
default) are left out. A symbolic link is refused unless ``allow_symlinks``;
sockets, pipes and devices are always refused.

Hashing streams each file through one reused buffer per worker thread
(``hashlib`` releases the GIL on large updates), so memory stays flat whatever
the model size, and the work is spread over the CPU cores, biggest pieces first.
The buffer is 256 KiB, well inside a core's L2 cache: ``readinto`` copies the
page-cache bytes into it and SHA-256 then reads them from cache. In
``benchmarks/sign_bench.py --io`` a 4 MiB buffer (spilling out of L2) costs
about 6 % more CPU per byte, and ``mmap`` about 25 % more whatever the advice:
SHA-NI reading page-cache memory directly waits on DRAM, where the kernel's
copy streams it.
"""

from __future__ import annotations

import hashlib
import os
import stat
import threading
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath
from typing import Any, Protocol

from donjon.errors import InputError

DEFAULT_IGNORED = (".git", ".gitattributes", ".github", ".gitignore")
DEFAULT_SHARD_SIZE = 1_000_000_000
BUFFER_SIZE = 256 * 1024  # stays in L2: see the module docstring
_SEQUENTIAL = getattr(os, "POSIX_FADV_SEQUENTIAL", 2)
ALGORITHMS = ("sha256", "blake3")


class _Hasher(Protocol):
    def update(self, data: bytes | memoryview, /) -> object: ...

    def digest(self) -> bytes: ...


def _new_hasher(algorithm: str) -> _Hasher:
    if algorithm == "sha256":
        return hashlib.sha256()
    if algorithm == "blake3":
        try:
            from blake3 import blake3
        except ImportError as e:
            raise InputError("blake3 hashing needs the 'blake3' package (extra 'sign')") from e
        hasher: _Hasher = blake3()
        return hasher
    raise InputError(f"unsupported hash algorithm {algorithm!r}; use one of {ALGORITHMS}")


_LOCAL = threading.local()


def _buffer() -> memoryview:
    """This thread's read buffer: allocated once, reused for every file it hashes."""
    view: memoryview | None = getattr(_LOCAL, "view", None)
    if view is None:
        view = memoryview(bytearray(BUFFER_SIZE))
        _LOCAL.view = view
    return view


def hash_range(
    path: Path, algorithm: str = "sha256", start: int = 0, end: int | None = None
) -> str:
    """Hex digest of ``path[start:end]``, streamed through this thread's reused buffer."""
    hasher = _new_hasher(algorithm)
    view = _buffer()
    with path.open("rb", buffering=0) as f:
        if hasattr(os, "posix_fadvise"):  # cold caches: ask for aggressive read-ahead
            os.posix_fadvise(f.fileno(), start, 0 if end is None else end - start, _SEQUENTIAL)
        if start:
            f.seek(start)
        remaining = -1 if end is None else end - start
        while remaining != 0:
            want = BUFFER_SIZE if remaining < 0 else min(BUFFER_SIZE, remaining)
            got = f.readinto(view[:want])
            if not got:
                if remaining > 0:
                    raise InputError(f"{path} shrank while it was being hashed")
                break
            hasher.update(view[:got])
            if remaining > 0:
                remaining -= got
    return hasher.digest().hex()


def file_digest(path: Path, algorithm: str = "sha256") -> str:
    """Hex digest of a whole file."""
    return hash_range(path, algorithm)


@dataclass(frozen=True, slots=True)
class HashOptions:
    """How a model is serialised into a manifest (the OMS ``serialization`` block)."""

    algorithm: str = "sha256"
    method: str = "files"  # or "shards"
    shard_size: int = DEFAULT_SHARD_SIZE
    allow_symlinks: bool = False
    ignore_paths: tuple[str, ...] = ()
    ignore_git_paths: bool = True
    workers: int | None = None

    def __post_init__(self) -> None:
        if self.algorithm not in ALGORITHMS:
            raise InputError(f"unsupported hash algorithm {self.algorithm!r}; use {ALGORITHMS}")
        if self.method not in ("files", "shards"):
            raise InputError(f"unknown serialization method {self.method!r}; use files or shards")
        if self.shard_size <= 0:
            raise InputError("shard size must be positive")

    def all_ignored(self) -> tuple[str, ...]:
        extra = DEFAULT_IGNORED if self.ignore_git_paths else ()
        return tuple(dict.fromkeys((*extra, *self.ignore_paths)))

    def serialization(self) -> dict[str, Any]:
        """The OMS predicate's ``serialization`` object for these options."""
        out: dict[str, Any] = {"method": self.method, "hash_type": self.algorithm}
        if self.method == "shards":
            out["shard_size"] = self.shard_size
        out["allow_symlinks"] = self.allow_symlinks
        ignored = self.all_ignored()
        if ignored:
            out["ignore_paths"] = list(ignored)
        return out

    @classmethod
    def from_serialization(cls, data: dict[str, Any], **overrides: Any) -> HashOptions:
        """Rebuild options from a signed ``serialization`` object (verification)."""
        try:
            values: dict[str, Any] = {
                "algorithm": str(data["hash_type"]),
                "method": str(data["method"]),
                "allow_symlinks": _flag(data["allow_symlinks"]),
                "ignore_paths": tuple(str(p) for p in data.get("ignore_paths", ())),
                "ignore_git_paths": False,
            }
            if values["method"] == "shards":
                values["shard_size"] = int(data["shard_size"])
        except (KeyError, TypeError, ValueError) as e:
            raise InputError(f"malformed serialization block: {e!r}") from e
        values.update(overrides)
        return cls(**values)


def _flag(value: object) -> bool:
    """A signed boolean; model_signing's compat manifests spell it as a string."""
    if isinstance(value, bool):
        return value
    if value in ("true", "false"):
        return value == "true"
    raise ValueError(f"allow_symlinks must be a boolean, not {value!r}")


@dataclass(frozen=True, slots=True)
class ManifestItem:
    """One OMS resource: a file (``path``) or a shard (``path:start:end``) and its digest."""

    name: str
    algorithm: str
    digest: str

    def sort_key(self) -> tuple[tuple[str, ...], int, int]:
        # model_signing sorts pathlib keys: by path components, then shard offsets.
        path, _, span = self.name.partition(":")
        start, _, end = span.partition(":")
        return (PurePosixPath(path).parts, int(start or 0), int(end or 0))


@dataclass(frozen=True, slots=True)
class Manifest:
    """The digests of every file (or shard) of a model, in OMS order."""

    model_name: str
    items: tuple[ManifestItem, ...]
    serialization: dict[str, Any] = field(hash=False, compare=False)

    @classmethod
    def of(
        cls, model_name: str, items: Iterable[ManifestItem], serialization: dict[str, Any]
    ) -> Manifest:
        return cls(model_name, tuple(sorted(items, key=ManifestItem.sort_key)), serialization)

    @property
    def subject_digest(self) -> str:
        """SHA-256 over the concatenated raw digests: the in-toto subject of an OMS signature."""
        root = hashlib.sha256()
        for item in self.items:
            root.update(bytes.fromhex(item.digest))
        return root.hexdigest()

    def digests(self) -> dict[str, str]:
        return {item.name: item.digest for item in self.items}

    @property
    def files(self) -> tuple[str, ...]:
        return tuple(dict.fromkeys(item.name.partition(":")[0] for item in self.items))


def _is_ignored(relative: PurePosixPath, ignored: tuple[PurePosixPath, ...]) -> bool:
    return any(relative.is_relative_to(path) for path in ignored)


def iter_model_files(root: Path, options: HashOptions) -> Iterator[tuple[Path, PurePosixPath]]:
    """Yield ``(path, relative POSIX name)`` of every file to hash, refusing unsafe entries."""
    ignored = tuple(PurePosixPath(p) for p in options.all_ignored())
    if root.is_symlink() and not options.allow_symlinks:
        raise InputError(f"{root} is a symbolic link; pass allow_symlinks to follow it")
    try:
        mode = root.stat().st_mode
    except OSError as e:
        raise InputError(f"cannot read {root}: {e.strerror}") from e
    if stat.S_ISREG(mode):
        yield root, PurePosixPath(".")  # model_signing names a lone file "."
        return
    if not stat.S_ISDIR(mode):
        raise InputError(f"{root} is neither a file nor a folder")

    def on_error(error: OSError) -> None:
        raise InputError(f"cannot read {error.filename}: {error.strerror}") from error

    for folder, dirs, names in os.walk(root, onerror=on_error):
        here = Path(folder)
        rel_folder = PurePosixPath(here.relative_to(root).as_posix())
        keep = []
        for name in sorted(dirs):
            rel = rel_folder / name
            if _is_ignored(rel, ignored):
                continue
            if (here / name).is_symlink():
                if not options.allow_symlinks:
                    raise InputError(f"{rel} is a symbolic link; pass allow_symlinks to follow it")
                continue  # like model_signing, a linked folder is not descended into
            keep.append(name)
        dirs[:] = keep
        for name in sorted(names):
            rel = rel_folder / name
            if _is_ignored(rel, ignored):
                continue
            path = here / name
            if path.is_symlink() and not options.allow_symlinks:
                raise InputError(f"{rel} is a symbolic link; pass allow_symlinks to follow it")
            try:
                mode = path.stat().st_mode
            except OSError as e:
                raise InputError(f"cannot read {rel}: {e.strerror}") from e
            if not stat.S_ISREG(mode):
                raise InputError(f"{rel} is not a regular file (socket, pipe or device)")
            yield path, rel


Task = tuple[Path, str, int, int | None]


def _tasks(root: Path, options: HashOptions) -> list[tuple[int, Task]]:
    tasks: list[tuple[int, Task]] = []
    for path, rel in iter_model_files(root, options):
        size = path.stat().st_size
        if options.method == "files":
            tasks.append((size, (path, str(rel), 0, None)))
            continue
        for start in range(0, size, options.shard_size):
            end = min(start + options.shard_size, size)
            tasks.append((end - start, (path, f"{rel}:{start}:{end}", start, end)))
    tasks.sort(key=lambda t: -t[0])  # biggest first: the pool finishes together
    return tasks


def build_manifest(
    model: Path,
    options: HashOptions | None = None,
    *,
    only: Iterable[str] | None = None,
    progress: Callable[[int], None] | None = None,
) -> Manifest:
    """Hash ``model`` (a file or folder) into a manifest, in parallel, with flat memory.

    ``only`` restricts hashing to those relative file names (verification with
    ``--ignore-unsigned-files``); ``progress`` is called with each piece's size.
    """
    options = options or HashOptions()
    tasks = _tasks(model, options)
    if only is not None:
        wanted = set(only)
        tasks = [t for t in tasks if t[1][1].partition(":")[0] in wanted]
    workers = options.workers or os.cpu_count() or 1

    # model_signing labels shard digests "<algorithm>-sharded-<shard size>"
    label = options.algorithm
    if options.method == "shards":
        label = f"{options.algorithm}-sharded-{options.shard_size}"

    def run(task: Task) -> ManifestItem:
        path, name, start, end = task
        digest = hash_range(path, options.algorithm, start, end)
        if progress is not None:
            progress((end or path.stat().st_size) - start)
        return ManifestItem(name, label, digest)

    if workers == 1 or len(tasks) <= 1:
        items = [run(task) for _, task in tasks]
    else:
        with ThreadPoolExecutor(max_workers=min(workers, len(tasks))) as pool:
            items = list(pool.map(run, (task for _, task in tasks)))
    name = model.name or model.resolve().name
    return Manifest.of(name, items, options.serialization())
