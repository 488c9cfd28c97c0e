"""List the files of Hugging Face cache snapshots, with their repository and revision."""

from __future__ import annotations

import importlib
import os
import stat
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType

from donjon.errors import InputError, ScanError

SCHEME = "hf://"


@dataclass(frozen=True, slots=True)
class HubFile:
    """One file of one snapshot: ``hf://{repo_id}@{revision}/{name}`` read from ``entry``."""

    repo_id: str
    repo_type: str
    revision: str  # the commit hash (the snapshot folder's name)
    refs: tuple[str, ...]  # branch or tag names pointing at it ("main")
    name: str  # the path inside the repository
    entry: str  # the snapshot entry (a link into blobs/), as a string: a cache has many

    @property
    def path(self) -> Path:
        return Path(self.entry)

    @property
    def snapshot_label(self) -> str:
        """``hf://ORG/NAME@COMMIT`` (``hf://datasets/...`` for a dataset)."""
        kind = "" if self.repo_type == "model" else f"{self.repo_type}s/"
        return f"{SCHEME}{kind}{self.repo_id}@{self.revision}"

    @property
    def label(self) -> str:
        return f"{self.snapshot_label}/{self.name}"


def _hub() -> ModuleType:
    try:
        return importlib.import_module("huggingface_hub")
    except ImportError as e:
        raise ScanError(
            "scanning Hugging Face sources needs huggingface_hub: pip install 'donjon[hf]'"
        ) from e


def parse_spec(spec: str) -> tuple[str, str | None]:
    """``hf://ORG/NAME[@REVISION]`` -> (repo id, revision or None)."""
    if not spec.startswith(SCHEME):
        raise InputError(f"{spec!r} is not an hf:// reference")
    body = spec[len(SCHEME) :]
    repo_id, _, revision = body.partition("@")
    parts = repo_id.split("/")
    if not 1 <= len(parts) <= 2 or not all(parts) or any(p in (".", "..") for p in parts):
        raise InputError(f"{spec!r}: expected hf://ORG/NAME[@REVISION]")
    if "@" in body and not revision:
        raise InputError(f"{spec!r}: empty revision after @")
    return repo_id, revision or None


def _inside(path: str, folder: str) -> bool:
    return path == folder or path.startswith(folder.rstrip(os.sep) + os.sep)


class _LinkCheck:
    """Snapshot entries must link into their repository's ``blobs/`` (or the cache).

    The first hop is checked from the real path of the entry's folder (cached per
    folder); a blob that is itself a link (a shared store) must resolve inside
    the cache root. Anything else is refused, never followed.
    """

    def __init__(self, cache_root: Path) -> None:
        self.root = os.path.realpath(cache_root)
        self.folders: dict[str, str] = {}

    def _real_folder(self, folder: str) -> str:
        real = self.folders.get(folder)
        if real is None:
            real = self.folders[folder] = os.path.realpath(folder)
        return real

    def link(self, entry: str, folder: str, blobs: str) -> bool:
        """True for a link to a file in ``blobs`` (or the cache), False for a linked folder.

        Anything else raises: it is refused, never followed.
        """
        hop = os.path.normpath(os.path.join(self._real_folder(folder), os.readlink(entry)))
        try:
            mode = os.lstat(hop).st_mode
        except OSError:
            mode = 0
        if os.path.dirname(hop) == blobs and stat.S_ISREG(mode):
            return True  # the common case: one readlink and one lstat
        if stat.S_ISDIR(mode) or (stat.S_ISLNK(mode) and os.path.isdir(hop)):
            return False  # a linked folder is not entered
        final = os.path.realpath(hop)
        if os.path.dirname(hop) == blobs and _inside(final, self.root) and os.path.isfile(final):
            return True
        raise ScanError(f"{entry} links outside the cache's blobs ({final}): refusing to follow it")


_TYPES = {"models": "model", "datasets": "dataset", "spaces": "space"}


def _repo_of(folder_name: str) -> tuple[str, str] | None:
    """``models--org--name`` -> ("model", "org/name") (huggingface_hub's repo_folder_name)."""
    kind, sep, rest = folder_name.partition("--")
    if not sep or kind not in _TYPES or not rest:
        return None
    return _TYPES[kind], rest.replace("--", "/")


def _refs(repo: Path) -> dict[str, list[str]]:
    """commit -> the refs (branches, tags) naming it."""
    named: dict[str, list[str]] = {}
    refs = repo / "refs"
    if refs.is_dir() and not refs.is_symlink():
        for folder, _, names in os.walk(refs):
            for name in names:
                ref = os.path.relpath(os.path.join(folder, name), refs)
                commit = Path(folder, name).read_text(encoding="utf-8").strip()
                named.setdefault(commit, []).append(ref)
    return named


def _snapshot_files(
    repo_type: str, repo_id: str, repo: Path, snapshot: Path, refs: list[str], check: _LinkCheck
) -> list[HubFile]:
    blobs = os.path.realpath(repo / "blobs")
    named = tuple(sorted(refs))
    found: list[HubFile] = []

    def walk(folder: str, prefix: str) -> None:
        with os.scandir(folder) as listing:
            entries = sorted(listing, key=lambda e: e.name)
        for entry in entries:
            if entry.is_dir(follow_symlinks=False):
                walk(entry.path, f"{prefix}{entry.name}/")
                continue
            if entry.is_symlink() and not check.link(entry.path, folder, blobs):
                continue  # a linked folder is not entered
            found.append(
                HubFile(repo_id, repo_type, snapshot.name, named, prefix + entry.name, entry.path)
            )

    walk(str(snapshot), "")
    return found


def _repo_files(folder: Path, check: _LinkCheck, commit: str | None = None) -> list[HubFile]:
    parsed = _repo_of(folder.name)
    snapshots = folder / "snapshots"
    if parsed is None or not snapshots.is_dir() or snapshots.is_symlink():
        return []
    repo_type, repo_id = parsed
    refs = _refs(folder)
    files: list[HubFile] = []
    for snapshot in sorted(snapshots.iterdir()):
        if (commit is None or snapshot.name == commit) and not snapshot.is_symlink():
            files.extend(
                _snapshot_files(
                    repo_type, repo_id, folder, snapshot, refs.get(snapshot.name, []), check
                )
            )
    return files


def cache_files(cache_dir: str | os.PathLike[str] | None = None) -> list[HubFile]:
    """Every file of every snapshot in a cache (the default one: huggingface_hub's)."""
    root = Path(cache_dir) if cache_dir is not None else Path(_hub().constants.HF_HUB_CACHE)
    if not root.is_dir():
        raise ScanError(f"no Hugging Face cache at {root}")
    check = _LinkCheck(root)
    files: list[HubFile] = []
    for folder in sorted(root.iterdir()):
        if folder.is_dir() and not folder.is_symlink():
            files.extend(_repo_files(folder, check))
    return files


def _snapshot_folder(
    hub: ModuleType, repo_id: str, revision: str | None, cache: str | os.PathLike[str] | None
) -> Path | None:
    try:
        return Path(
            hub.snapshot_download(
                repo_id, revision=revision, cache_dir=cache, local_files_only=True
            )
        )
    except hub.errors.LocalEntryNotFoundError:
        return None


def _files_in(snapshot: Path) -> list[HubFile]:
    repo = snapshot.parent.parent
    return _repo_files(repo, _LinkCheck(repo.parent), commit=snapshot.name)


def cached_files(
    repo_id: str, revision: str | None = None, cache_dir: str | os.PathLike[str] | None = None
) -> list[HubFile]:
    """The files of a repository snapshot already in the cache; [] when it is not there."""
    hub = _hub()
    cache = cache_dir or os.environ.get("HF_HUB_CACHE") or None
    snapshot = _snapshot_folder(hub, repo_id, revision, cache)
    return [] if snapshot is None else _files_in(snapshot)


def repo_files(spec: str, cache_dir: str | os.PathLike[str] | None = None) -> list[HubFile]:
    """The files of one repository snapshot: from the cache, or the hub when online."""
    return repo_snapshot(spec, cache_dir)[1]


def repo_snapshot(
    spec: str, cache_dir: str | os.PathLike[str] | None = None
) -> tuple[Path, list[HubFile]]:
    """One repository snapshot's folder and its files, every link checked."""
    repo_id, revision = parse_spec(spec)
    hub = _hub()
    cache = cache_dir or os.environ.get("HF_HUB_CACHE") or None
    snapshot = _snapshot_folder(hub, repo_id, revision, cache)
    if snapshot is None:
        if hub.constants.HF_HUB_OFFLINE:
            raise ScanError(f"{spec} is not in the Hugging Face cache (offline)")
        try:
            snapshot = Path(hub.snapshot_download(repo_id, revision=revision, cache_dir=cache))
        except (OSError, ValueError) as e:  # network, authentication, not found on the hub
            raise ScanError(f"cannot fetch {spec}: {e}") from e
    chosen = _files_in(snapshot)
    if not chosen:
        raise ScanError(f"{spec} resolved to {snapshot}, which holds no file")
    return snapshot, chosen
