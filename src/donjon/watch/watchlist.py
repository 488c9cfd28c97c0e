"""The models this host watches, and the last result of each: a small JSON file.

Written atomically; the fingerprints themselves live in the vault (signed), this
file only says which to check and remembers how the last checks went.
"""

from __future__ import annotations

import json
import os
import threading
import uuid
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from donjon.errors import InputError

MAX_HISTORY = 50
_WRITING = threading.Lock()  # the vault's gate and donjon up's scheduler share one file


@dataclass
class Watched:
    model: str
    version: int
    endpoint: str
    fingerprint: str  # the attachment's digest in the vault
    points: int
    enrolled_at: str
    checks: list[dict[str, Any]] = field(default_factory=list)  # newest last
    probes: list[dict[str, Any]] = field(default_factory=list)  # robustness probes, newest last

    @property
    def key(self) -> str:
        return f"{self.model}@{self.version}"

    @property
    def last(self) -> dict[str, Any] | None:
        return self.checks[-1] if self.checks else None


class WatchList:
    def __init__(self, path: Path) -> None:
        self.path = path

    def load(self) -> list[Watched]:
        if not self.path.exists():
            return []
        try:
            doc = json.loads(self.path.read_text(encoding="utf-8"))
            return [Watched(**entry) for entry in doc["watched"]]
        except (OSError, ValueError, KeyError, TypeError) as e:
            raise InputError(f"cannot read the watch list {self.path}: {e}") from None

    def save(self, entries: list[Watched]) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
        tmp = self.path.with_name(f".{self.path.name}.{uuid.uuid4().hex}")
        try:
            tmp.write_text(json.dumps({"watched": [asdict(e) for e in entries]}, indent=1))
            os.replace(tmp, self.path)
        finally:
            tmp.unlink(missing_ok=True)

    def enrolled(self, entry: Watched) -> None:
        """Add (or replace) the watch of one model version."""
        with _WRITING:
            entries = [e for e in self.load() if e.key != entry.key]
            self.save([*entries, entry])

    def checked(self, key: str, result: dict[str, Any], history: str = "checks") -> None:
        """Remember a check's (or, with ``history="probes"``, a probe's) result."""
        with _WRITING:
            entries = self.load()
            for entry in entries:
                if entry.key == key:
                    setattr(entry, history, [*getattr(entry, history), result][-MAX_HISTORY:])
            self.save(entries)
