"""The BlobStore port on a folder: content-addressed, streamed, checked, atomic.

Layout: ``<root>/sha256/<2 hex>/<64 hex>``; uploads are written to
``<root>/tmp/`` (same file system), hashed as they stream, fsynced, compared
with the expected digest when one was given and only then renamed into place
(``os.replace`` is atomic); large uploads are flushed to disk in the
background as they arrive (:class:`Writeback`), so the final fsync is short.
Keys are digests, validated by :class:`~donjon.core.artifacts.Digest`, so no
name from a user ever becomes a path. Each ``.part`` file is locked
(``flock``) by its writer while it lives: at start-up the store removes every
part no live process holds, the leftovers of a killed upload, and never
another replica's upload in flight. Reads are checked too:
:meth:`FileBlobStore.open` returns a stream that hashes what it serves and
raises at the end if the bytes on disk changed.
"""

from __future__ import annotations

import fcntl
import hashlib
import io
import logging
import os
import threading
import uuid
from pathlib import Path
from typing import BinaryIO

from donjon.core.artifacts import Digest
from donjon.errors import InputError, NotFound, StorageError

log = logging.getLogger(__name__)

CHUNK_SIZE = 1 << 20
WRITEBACK_BYTES = 64 << 20  # start writing an upload to disk every 64 MiB
ALGORITHM = "sha256"


class DigestMismatch(InputError):
    """The uploaded bytes do not have the digest the client announced; nothing was stored."""


class CorruptBlob(StorageError):
    """Stored bytes no longer match their digest (disk corruption or tampering)."""


class VerifyingReader(io.RawIOBase):
    """Serves ``raw`` while hashing it; CorruptBlob at the end if the digest differs."""

    def __init__(self, raw: BinaryIO, digest: Digest) -> None:
        super().__init__()
        self._raw = raw
        self._digest = digest
        self._hash = hashlib.new(digest.algorithm)
        self._done = False

    def readable(self) -> bool:
        return True

    def read(self, size: int = -1) -> bytes:
        read_all = size is None or size < 0
        data = self._raw.read(-1 if read_all else size)
        if data:
            self._hash.update(data)
        if (read_all or (not data and size != 0)) and not self._done:
            self._done = True  # at the end: the bytes served must be the bytes stored
            if self._hash.hexdigest() != self._digest.hex:
                raise CorruptBlob(f"blob {self._digest} does not match its digest")
        return data

    def readinto(self, buffer: bytearray | memoryview) -> int:  # type: ignore[override]
        data = self.read(len(buffer))
        buffer[: len(data)] = data
        return len(data)

    def close(self) -> None:
        self._raw.close()
        super().close()


class Writeback:
    """Flushes a file being written to disk in the background, every ``every`` bytes.

    Without it a large upload piles up dirty pages and the final ``fsync``
    waits for all of them at once; with it the disk writes while the network
    reads and the final ``fsync`` has little left. A background flush that
    failed fails the upload (an fsync error is reported once: it must not be
    swallowed here).
    """

    def __init__(self, fd: int, every: int | None = None) -> None:
        self._fd = fd
        self._every = every or WRITEBACK_BYTES
        self._pending = 0
        self._thread: threading.Thread | None = None
        self._error: OSError | None = None

    def wrote(self, count: int) -> None:
        self._pending += count
        if self._pending < self._every or (self._thread is not None and self._thread.is_alive()):
            return
        self._pending = 0
        self._thread = threading.Thread(target=self._sync, name="donjon-writeback", daemon=True)
        self._thread.start()

    def _sync(self) -> None:
        try:
            os.fdatasync(self._fd)
        except OSError as e:
            self._error = e

    def close(self, *, check: bool = True) -> None:
        """Wait for the flush in flight; raise its error if it failed (and ``check``)."""
        if self._thread is not None:
            self._thread.join()
        if check and self._error is not None:
            raise self._error


class FileBlobStore:
    """Content-addressed blobs in a local folder."""

    def __init__(self, root: Path, *, fsync: bool = True) -> None:
        self.root = Path(root)
        self.fsync = fsync
        self._tmp = self.root / "tmp"
        self._tmp.mkdir(parents=True, exist_ok=True, mode=0o700)
        (self.root / ALGORITHM).mkdir(exist_ok=True, mode=0o700)
        self.remove_stale_parts()

    def remove_stale_parts(self) -> int:
        """Delete the ``tmp/*.part`` files no live writer holds; returns how many.

        A writer holds an exclusive ``flock`` on its part until it is renamed or
        removed, and the kernel drops it when the writer dies (even by SIGKILL):
        a part whose lock can be taken is a dead upload's.
        """
        removed = 0
        for part in self._tmp.glob("*.part"):
            try:
                fd = os.open(part, os.O_RDONLY | os.O_NOFOLLOW)
            except OSError:
                continue  # gone already, or not a plain file we made
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                os.close(fd)  # an upload in flight (this or another process)
                continue
            try:
                part.unlink(missing_ok=True)
                removed += 1
            finally:
                os.close(fd)  # closing releases the lock
        if removed:
            log.warning("removed %d unfinished upload(s) from %s", removed, self._tmp)
        return removed

    def _new_part(self) -> tuple[Path, int]:
        """A fresh part file, open and locked by this writer."""
        while True:
            tmp = self._tmp / f"{uuid.uuid4().hex}.part"
            fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
            fcntl.flock(fd, fcntl.LOCK_EX)
            if os.fstat(fd).st_nlink:
                return tmp, fd
            os.close(fd)  # a start-up clean-up removed it between open and lock: again

    def path(self, digest: Digest) -> Path:
        if digest.algorithm != ALGORITHM:
            raise InputError(f"this store keeps {ALGORITHM} blobs, not {digest.algorithm}")
        return self.root / ALGORITHM / digest.hex[:2] / digest.hex

    def put(self, stream: BinaryIO, expected: Digest | None = None) -> Digest:
        if expected is not None and expected.algorithm != ALGORITHM:
            raise InputError(f"this store checks {ALGORITHM} digests, not {expected.algorithm}")
        if expected is not None and self.exists(expected):
            return self._verify(stream, expected)  # stored already: check the bytes, keep one copy
        hasher = hashlib.sha256()
        tmp: Path | None = None
        try:
            tmp, fd = self._new_part()
            with os.fdopen(fd, "wb", buffering=0) as out:
                flusher = Writeback(fd) if self.fsync else None
                try:
                    while chunk := stream.read(CHUNK_SIZE):
                        hasher.update(chunk)
                        out.write(chunk)
                        if flusher is not None:
                            flusher.wrote(len(chunk))
                except BaseException:
                    if flusher is not None:
                        flusher.close(check=False)  # the upload failed anyway: say why
                    raise
                if flusher is not None:
                    flusher.close()
                if self.fsync:
                    os.fsync(out.fileno())
                digest = Digest(ALGORITHM, hasher.hexdigest())
                if expected is not None and digest != expected:
                    raise DigestMismatch(
                        f"upload has digest {digest}, not the announced {expected}"
                    )
                final = self.path(digest)
                final.parent.mkdir(exist_ok=True, mode=0o700)
                if final.exists():  # same bytes already stored: keep the first copy
                    tmp.unlink()
                else:
                    os.replace(tmp, final)  # still locked: no clean-up can take it first
            return digest
        except OSError as e:
            raise StorageError(f"cannot store blob: {e}") from e
        finally:
            if tmp is not None:
                tmp.unlink(missing_ok=True)

    def _verify(self, stream: BinaryIO, expected: Digest) -> Digest:
        """Hash ``stream`` without writing it: the announced bytes are stored already."""
        hasher = hashlib.sha256()
        while chunk := stream.read(CHUNK_SIZE):
            hasher.update(chunk)
        digest = Digest(ALGORITHM, hasher.hexdigest())
        if digest != expected:
            raise DigestMismatch(f"upload has digest {digest}, not the announced {expected}")
        return digest

    def open(self, digest: Digest) -> BinaryIO:
        try:
            raw = open(self.path(digest), "rb", buffering=0)  # noqa: SIM115 - caller closes
        except FileNotFoundError as e:
            raise NotFound(f"no blob {digest}") from e
        except OSError as e:
            raise StorageError(f"cannot read blob {digest}: {e}") from e
        return VerifyingReader(raw, digest)  # type: ignore[return-value]

    def exists(self, digest: Digest) -> bool:
        return self.path(digest).is_file()

    def size(self, digest: Digest) -> int:
        try:
            return self.path(digest).stat().st_size
        except FileNotFoundError as e:
            raise NotFound(f"no blob {digest}") from e
