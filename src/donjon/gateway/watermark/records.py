"""The record of every watermarked input: content-addressed, bounded, per model.

A :class:`MarkRecord` holds one input the gateway answered with a watermark
(``kind = "mark"``) or recorded as a look-alike answered truthfully
(``kind = "control"``), the principal it answered, the true answer and the
keyed label (the one given for a mark, the one a mark would have had for a
control). Its address is SHA-256 over the model, the principal and the
canonical input, so a re-sent input is recorded once. :class:`FolderMarks`
keeps one JSON file per record under ``<folder>/<model>/`` (created
exclusively: a record is never rewritten); past ``max_records`` new records are
dropped (the answers stay watermarked) and the gateway says so once.
:class:`~.redis_records.RedisMarks` keeps them in Redis, for replicas on
several hosts.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import threading
from collections.abc import Iterable
from dataclasses import dataclass, fields
from pathlib import Path
from typing import Any, Protocol

from donjon.errors import GatewayError, InputError

log = logging.getLogger("donjon.gateway")
Label = int | str
_SAFE = frozenset("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789._-")


@dataclass(frozen=True)
class MarkRecord:
    model: str
    principal: str
    kind: str  # "mark" or "control"
    input_sha256: str  # of the canonical input (float64, little-endian)
    row: tuple[float, ...]
    truth: Label  # the model's own answer
    keyed: Label  # the watermark's answer (given for a mark, withheld for a control)
    classes: int
    key: str  # the key's fingerprint
    time: str
    family: str = ""  # a mark carried to a near-copy: its root record's address (.families)

    @property
    def address(self) -> str:
        return record_address(self.model, self.principal, self.input_sha256)

    @property
    def root(self) -> str:
        """The address of its family's root (its own, for a mark the key drew)."""
        return self.family or self.address

    def to_dict(self) -> dict[str, Any]:
        # shallow: asdict deep-copies the row value by value (0.75 ms a record)
        doc = {f.name: getattr(self, f.name) for f in fields(self)}
        doc["row"] = list(self.row)
        return doc

    @classmethod
    def from_dict(cls, doc: Any) -> MarkRecord:
        try:
            record = cls(
                model=str(doc["model"]),
                principal=str(doc["principal"]),
                kind=str(doc["kind"]),
                input_sha256=str(doc["input_sha256"]),
                row=tuple(float(v) for v in doc["row"]),
                truth=_label(doc["truth"]),
                keyed=_label(doc["keyed"]),
                classes=int(doc["classes"]),
                key=str(doc["key"]),
                time=str(doc["time"]),
                family=str(doc.get("family", "")),
            )
        except (KeyError, TypeError, ValueError) as e:
            raise InputError(f"malformed watermark record: {e}") from e
        if record.kind not in ("mark", "control"):
            raise InputError(f"malformed watermark record: kind {record.kind!r}")
        if record.family and record.kind != "mark":
            raise InputError("malformed watermark record: a look-alike in a family")
        return record


def record_address(model: str, principal: str, input_sha256: str) -> str:
    text = f"{model}\0{principal}\0{input_sha256}".encode()
    return hashlib.sha256(text).hexdigest()


def _label(value: Any) -> Label:
    if isinstance(value, bool) or not isinstance(value, int | str):
        raise ValueError(f"label {value!r} is neither an integer nor a string")
    return value


class MarkStore(Protocol):
    async def add(self, record: MarkRecord) -> bool:
        """Keep ``record``; False when it was there already or the store is full."""
        ...

    def records(self, model: str, principals: Iterable[str] | None = None) -> list[MarkRecord]:
        """The records of ``model`` (of these principals only, when given)."""
        ...


class MemoryMarks:
    """Records of one process (tests, the in-process wrapper)."""

    def __init__(self, max_records: int = 200_000) -> None:
        self.max_records = max_records
        self._records: dict[str, MarkRecord] = {}
        self._lock = threading.Lock()

    async def add(self, record: MarkRecord) -> bool:
        with self._lock:
            if record.address in self._records or len(self._records) >= self.max_records:
                return False
            self._records[record.address] = record
            return True

    def records(self, model: str, principals: Iterable[str] | None = None) -> list[MarkRecord]:
        wanted = set(principals) if principals is not None else None
        with self._lock:
            found = list(self._records.values())
        return [r for r in found if r.model == model and (wanted is None or r.principal in wanted)]


class FolderMarks:
    """One JSON file per record under ``<folder>/<model>/``, written once."""

    def __init__(self, folder: Path, max_records: int = 200_000) -> None:
        self.folder = folder
        self.max_records = max_records
        self._counts: dict[str, int] = {}
        self._lock = threading.Lock()
        self._full_said: set[str] = set()

    def _dir(self, model: str) -> Path:
        safe = "".join(c if c in _SAFE else "_" for c in model)
        suffix = hashlib.sha256(model.encode()).hexdigest()[:8]
        return self.folder / f"{safe}-{suffix}"

    async def add(self, record: MarkRecord) -> bool:
        """Never suspends (a small exclusive file write)."""
        where = self._dir(record.model)
        with self._lock:
            count = self._counts.get(record.model)
            if count is None:
                where.mkdir(parents=True, exist_ok=True, mode=0o700)
                count = sum(1 for p in where.iterdir() if p.suffix == ".json")
            if count >= self.max_records:
                self._counts[record.model] = count
                if record.model not in self._full_said:
                    self._full_said.add(record.model)
                    log.warning(
                        "model %s: the watermark record is full (%d); new marks are answered "
                        "but not recorded",
                        record.model,
                        count,
                    )
                return False
            data = json.dumps(record.to_dict(), sort_keys=True).encode()
            try:
                fd = os.open(
                    where / f"{record.address}.json", os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600
                )
            except FileExistsError:
                self._counts[record.model] = count
                return False
            except OSError as e:
                raise GatewayError(f"cannot record a watermarked input: {e.strerror}") from e
            with os.fdopen(fd, "wb") as out:
                out.write(data)
            self._counts[record.model] = count + 1
            return True

    def records(self, model: str, principals: Iterable[str] | None = None) -> list[MarkRecord]:
        wanted = set(principals) if principals is not None else None
        where = self._dir(model)
        if not where.is_dir():
            return []
        found = []
        for path in sorted(where.glob("*.json")):
            try:
                record = MarkRecord.from_dict(json.loads(path.read_bytes()))
            except (OSError, ValueError) as e:
                raise InputError(f"cannot read watermark record {path.name}: {e}") from e
            if record.address != path.stem:
                raise InputError(f"watermark record {path.name} does not match its address")
            if record.model == model and (wanted is None or record.principal in wanted):
                found.append(record)
        return found
