"""The models the vault watches, and the last results of each: rows behind a port.

The fingerprints themselves live in the vault (signed); the watch list only says
which versions to check and remembers how the last checks and probes went. Its
rows live in the vault's database (``WatchRows``, implemented by
``donjon.storage.watchlist``), so every replica sees what any one enrolled.
Older versions kept it in a JSON file per home folder: :func:`read_json_file`
reads one for a one-off import (:meth:`WatchList.import_entries`).
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Protocol

from donjon.errors import InputError

MAX_HISTORY = 50


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


class WatchRows(Protocol):
    """Where the watch list is kept: entries as the JSON-able dicts of :class:`Watched`."""

    def rows(self) -> list[dict[str, Any]]:
        """Every entry in enrolment order, ``checks`` and ``probes`` oldest first."""
        ...

    def put(self, row: Mapping[str, Any]) -> None:
        """Add an entry, or replace the one of the same model version (history emptied)."""
        ...

    def append(
        self, model: str, version: int, kind: str, result: Mapping[str, Any], keep: int
    ) -> bool:
        """Add a result to an entry's ``kind`` history, keeping the newest ``keep``."""
        ...

    def add_missing(self, rows: Sequence[Mapping[str, Any]]) -> list[int]:
        """Add the entries not there yet, with their histories; the indices of those added."""
        ...


@dataclass(frozen=True)
class Imported:
    """What an import of an older watch list did."""

    source: str
    added: int
    present: int
    results: int  # checks and probes brought along with the added entries

    def __str__(self) -> str:
        return (
            f"imported {self.added} watched version(s) with {self.results} check/probe result(s) "
            f"from {self.source}; {self.present} already in the database were left as they are"
        )


class WatchList:
    """The watch list over its rows (the vault's database in production)."""

    def __init__(self, rows: WatchRows) -> None:
        self._rows = rows

    def load(self) -> list[Watched]:
        return [Watched(**row) for row in self._rows.rows()]

    def enrolled(self, entry: Watched) -> None:
        """Add (or replace) the watch of one model version."""
        self._rows.put(asdict(entry))

    def checked(self, key: str, result: dict[str, Any], history: str = "checks") -> None:
        """Remember a check's (or, with ``history="probes"``, a probe's) result."""
        model, _, version = key.rpartition("@")
        self._rows.append(model, int(version), history, result, MAX_HISTORY)

    def import_entries(self, entries: Sequence[Watched], source: str) -> Imported:
        """Add the entries that are not watched yet, with their last results; idempotent."""
        added = [entries[i] for i in self._rows.add_missing([asdict(e) for e in entries])]
        results = sum(len(e.checks) + len(e.probes) for e in added)
        return Imported(source, len(added), len(entries) - len(added), results)


def read_json_file(path: Path) -> list[Watched]:
    """The entries of an older watch list file (``{"watched": [entry...]}``)."""
    try:
        doc = json.loads(path.read_text(encoding="utf-8"))
        return [Watched(**entry) for entry in doc["watched"]]
    except (OSError, ValueError, KeyError, TypeError) as e:
        raise InputError(f"cannot read the watch list {path}: {e}") from None
