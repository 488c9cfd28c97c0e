from __future__ import annotations

import hashlib
import io
import os
import stat
import threading
from pathlib import Path

import pytest

from donjon.core.artifacts import Digest
from donjon.errors import InputError, NotFound, StorageError
from donjon.storage.blobs import CorruptBlob, DigestMismatch, FileBlobStore


def sha(data: bytes) -> Digest:
    return Digest("sha256", hashlib.sha256(data).hexdigest())


def files(root: Path) -> list[Path]:
    return sorted(p for p in root.rglob("*") if p.is_file())


class Exploding(io.RawIOBase):
    """Gives some bytes, then fails like a dropped connection."""

    def __init__(self) -> None:
        self.sent = 0

    def readable(self) -> bool:
        return True

    def read(self, size: int = -1) -> bytes:
        if self.sent >= 3:
            raise ConnectionResetError("peer went away")
        self.sent += 1
        return b"x" * 1000


def test_round_trip_is_content_addressed(tmp_path: Path) -> None:
    store = FileBlobStore(tmp_path)
    data = b"0123456789" * 300_000  # several chunks
    digest = store.put(io.BytesIO(data), expected=sha(data))
    assert digest == sha(data)
    assert store.exists(digest)
    assert store.size(digest) == len(data)
    path = store.path(digest)
    assert path.relative_to(tmp_path).parts == ("sha256", digest.hex[:2], digest.hex)
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    with store.open(digest) as stream:
        assert stream.read() == data
    assert store.put(io.BytesIO(data)) == digest  # the same bytes are stored once
    assert files(tmp_path) == [path]


def test_a_wrong_digest_stores_nothing(tmp_path: Path) -> None:
    store = FileBlobStore(tmp_path)
    with pytest.raises(DigestMismatch, match="announced"):
        store.put(io.BytesIO(b"abc"), expected=sha(b"abd"))
    with pytest.raises(InputError):
        store.put(io.BytesIO(b"abc"), expected=Digest("sha512", "0" * 128))
    assert files(tmp_path) == []


def test_a_broken_upload_leaves_no_partial_file(tmp_path: Path) -> None:
    store = FileBlobStore(tmp_path)
    with pytest.raises(StorageError, match="peer went away"):
        store.put(Exploding())  # type: ignore[arg-type]
    assert files(tmp_path) == []


def test_reads_detect_bytes_changed_on_disk(tmp_path: Path) -> None:
    store = FileBlobStore(tmp_path)
    digest = store.put(io.BytesIO(b"model weights"))
    store.path(digest).write_bytes(b"model weightz")
    stream = store.open(digest)
    assert stream.read(4) == b"mode"  # bytes flow until the end is reached
    with pytest.raises(CorruptBlob):
        stream.read()
    stream.close()


def test_unknown_blobs_are_not_found(tmp_path: Path) -> None:
    store = FileBlobStore(tmp_path)
    with pytest.raises(NotFound):
        store.open(sha(b"never stored"))
    with pytest.raises(NotFound):
        store.size(sha(b"never stored"))
    assert not store.exists(sha(b"never stored"))


def test_concurrent_puts_of_the_same_bytes(tmp_path: Path) -> None:
    store = FileBlobStore(tmp_path)
    data = b"same" * 100_000
    results: list[Digest] = []
    threads = [
        threading.Thread(target=lambda: results.append(store.put(io.BytesIO(data))))
        for _ in range(8)
    ]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert set(results) == {sha(data)}
    assert files(tmp_path) == [store.path(sha(data))]
    with store.open(sha(data)) as stream:
        assert stream.read() == data


def test_large_uploads_are_flushed_in_the_background(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from donjon.storage import blobs

    synced: list[int] = []
    real = blobs.os.fdatasync

    def counting(fd: int) -> None:
        synced.append(fd)
        real(fd)

    monkeypatch.setattr(blobs.os, "fdatasync", counting)
    monkeypatch.setattr(blobs, "WRITEBACK_BYTES", 1 << 20)
    data = bytes(range(256)) * (4 * 4096 + 7)  # a little over 4 MiB
    store = FileBlobStore(tmp_path)
    digest = store.put(io.BytesIO(data))
    assert digest.hex == hashlib.sha256(data).hexdigest()
    assert store.path(digest).read_bytes() == data
    assert synced  # at least one flush ran beside the writes


def test_a_failed_background_flush_fails_the_upload(tmp_path: Path) -> None:
    from donjon.storage.blobs import Writeback

    read, write = os.pipe()  # a pipe cannot be synced: fdatasync fails with EINVAL
    try:
        flusher = Writeback(write, every=1)
        flusher.wrote(1)
        with pytest.raises(OSError, match="Invalid argument"):
            flusher.close()
    finally:
        os.close(read)
        os.close(write)


def test_bytes_already_stored_are_checked_not_written_again(tmp_path: Path) -> None:
    store = FileBlobStore(tmp_path)
    data = b"the same weights"
    digest = store.put(io.BytesIO(data))
    stored = store.path(digest)
    before = stored.stat().st_mtime_ns
    assert store.put(io.BytesIO(data), digest) == digest
    assert stored.stat().st_mtime_ns == before
    with pytest.raises(DigestMismatch):  # announcing a stored digest proves nothing
        store.put(io.BytesIO(b"other bytes"), digest)
    assert stored.read_bytes() == data
    assert not any((tmp_path / "tmp").iterdir())


def test_start_up_removes_the_parts_of_dead_uploads_only(tmp_path: Path) -> None:
    import fcntl

    store = FileBlobStore(tmp_path)
    dead = tmp_path / "tmp" / "dead.part"
    dead.write_bytes(b"half an upload")
    alive = tmp_path / "tmp" / "alive.part"
    alive.write_bytes(b"an upload in flight")
    with alive.open("rb") as held:  # another writer's lock, as a live upload holds it
        fcntl.flock(held.fileno(), fcntl.LOCK_EX)
        FileBlobStore(tmp_path)
        assert not dead.exists()
        assert alive.exists()
    assert FileBlobStore(tmp_path).remove_stale_parts() == 0  # constructing removed it
    assert not alive.exists()
    digest = store.put(io.BytesIO(b"still works"))
    assert store.open(digest).read() == b"still works"
    assert list((tmp_path / "tmp").iterdir()) == []
