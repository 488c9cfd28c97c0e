"""The embedded default sink: one JSON object per line, appended to a file."""

from __future__ import annotations

import json
import os
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import IO

from donjon.core.events import SecurityEvent
from donjon.errors import ExportError


class JsonLinesSink:
    """Appends each event as one line of JSON; safe to share between threads.

    With ``fsync=True`` every line is forced to disk before ``emit`` returns.
    """

    def __init__(self, path: Path, *, fsync: bool = False, name: str = "jsonl") -> None:
        self.name = name
        self.path = path
        self._fsync = fsync
        self._lock = threading.Lock()
        self._file: IO[str] | None = None

    def emit(self, event: SecurityEvent) -> None:
        line = json.dumps(event.to_dict(), separators=(",", ":"), sort_keys=True) + "\n"
        with self._lock:
            try:
                if self._file is None:
                    self.path.parent.mkdir(parents=True, exist_ok=True)
                    self._file = self.path.open("a", encoding="utf-8")
                self._file.write(line)
                self._file.flush()
                if self._fsync:
                    os.fsync(self._file.fileno())
            except OSError as e:
                raise ExportError(f"cannot write events to {self.path}: {e.strerror}") from e

    def close(self) -> None:
        with self._lock:
            if self._file is not None:
                self._file.close()
                self._file = None


def read_events(path: Path) -> Iterator[SecurityEvent]:
    """Read back a JSON-lines event file; a malformed line raises ExportError naming it."""
    with path.open(encoding="utf-8") as f:
        for number, line in enumerate(f, 1):
            if not line.strip():
                continue
            try:
                yield SecurityEvent.from_dict(json.loads(line))
            except ValueError as e:
                raise ExportError(f"{path}:{number}: not a Donjon event: {e}") from e
