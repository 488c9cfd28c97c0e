"""The embedded default sink: one JSON object per line, appended to a file.

With ``max_bytes`` set, the file rotates like ``logging``'s
``RotatingFileHandler``: ``events.jsonl`` becomes ``events.jsonl.1``, the
older ``.1`` becomes ``.2`` ..., and at most ``backups`` old files are kept.
"""

from __future__ import annotations

import json
import os
import threading
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import IO

from donjon.core.events import SecurityEvent
from donjon.errors import ExportError
from donjon.soc import jsonfast


class JsonLinesSink:
    """Appends each event as one line of JSON; safe to share between threads.

    With ``fsync=True`` every write is forced to disk before ``emit`` returns.
    """

    def __init__(
        self,
        path: Path,
        *,
        fsync: bool = False,
        name: str = "jsonl",
        max_bytes: int | None = None,
        backups: int = 5,
    ) -> None:
        if max_bytes is not None and max_bytes <= 0:
            raise ExportError("max_bytes must be positive")
        self.name = name
        self.path = path
        self._fsync = fsync
        self._max_bytes = max_bytes
        self._backups = max(backups, 1)
        self._lock = threading.Lock()
        self._file: IO[str] | None = None
        self._size = 0

    def emit(self, event: SecurityEvent) -> None:
        self.emit_batch([event])

    def emit_batch(self, events: Sequence[SecurityEvent]) -> None:
        self.emit_payloads([jsonfast.dumps(e.to_dict()) for e in events])

    def emit_payloads(self, payloads: Sequence[str]) -> None:
        """Append events already in their JSON form (the outbox's stored payloads)."""
        lines = [p + "\n" for p in payloads]
        with self._lock:
            try:
                for line in lines:
                    if (
                        self._max_bytes is not None
                        and self._size
                        and (self._size + len(line) > self._max_bytes)
                    ):
                        self._rotate()
                    self._open().write(line)
                    self._size += len(line.encode("utf-8"))
                file = self._open()
                file.flush()
                if self._fsync:
                    os.fsync(file.fileno())
            except OSError as e:
                raise ExportError(f"cannot write events to {self.path}: {e.strerror}") from e

    def _open(self) -> IO[str]:
        if self._file is None:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            # private like the keys: events name principals, resources and reasons
            fd = os.open(self.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)
            self._file = os.fdopen(fd, "a", encoding="utf-8")
            self._size = self._file.tell()
        return self._file

    def _rotate(self) -> None:
        if self._file is not None:
            self._file.flush()
            if self._fsync:
                os.fsync(self._file.fileno())
            self._file.close()
            self._file = None
        for index in range(self._backups - 1, 0, -1):
            older = self.path.with_name(f"{self.path.name}.{index}")
            if older.exists():
                older.replace(self.path.with_name(f"{self.path.name}.{index + 1}"))
        if self.path.exists():
            self.path.replace(self.path.with_name(f"{self.path.name}.1"))
        self._size = 0

    def close(self) -> None:
        with self._lock:
            if self._file is not None:
                self._file.close()
                self._file = None


def event_files(path: Path) -> list[Path]:
    """``path`` and its rotated backups, oldest first."""
    backups = []
    index = 1
    while (candidate := path.with_name(f"{path.name}.{index}")).exists():
        backups.append(candidate)
        index += 1
    files = list(reversed(backups))
    if path.exists():
        files.append(path)
    return files


def read_events(path: Path) -> Iterator[SecurityEvent]:
    """Read back a JSON-lines event file; a malformed line raises ExportError naming it."""
    with path.open(encoding="utf-8") as f:
        for number, line in enumerate(f, 1):
            if not line.strip():
                continue
            try:
                yield SecurityEvent.from_dict(json.loads(line))
            except ValueError as e:
                raise ExportError(f"{path}:{number}: not a Donjon event: {e}{_hint(line)}") from e


def _hint(line: str) -> str:
    """What to read instead when ``line`` is an export for a SIEM, not Donjon's own event."""
    try:
        document = json.loads(line)
    except ValueError:
        return ""
    if isinstance(document, dict) and ("class_uid" in document or "ecs" in document):
        form = "OCSF" if "class_uid" in document else "ECS"
        return (
            f" (this is the {form} form a SIEM receives; read Donjon's own event file, "
            f"events.jsonl in DONJON_HOME, which keeps every field)"
        )
    return ""


def read_all_events(path: Path) -> Iterator[SecurityEvent]:
    """Every event of ``path`` and its backups, oldest first, each uid once."""
    seen: set[str] = set()
    for file in event_files(path):
        for event in read_events(file):
            if event.uid not in seen:
                seen.add(event.uid)
                yield event
