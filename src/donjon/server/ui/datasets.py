"""The Datasets pages: versions with their manifests and check reports, diffs, the queue.

A dataset version's manifest and ``donjon data check`` reports are documents
attached to it (``donjon datasets push`` attaches the manifest, ``donjon data
check --push`` the report). The overview shows each document's summary (read in
one query per kind); the dataset's page reads the documents themselves through
the registry (``dataset.read``, recorded): the newest check report of the chosen
version with its flagged rows, and the diff of two versions computed from their
manifests' record digests by :func:`donjon.data.diffs.diff_records`, the code
``donjon data diff`` runs, so the page and the CLI agree.
"""

from __future__ import annotations

import json
import threading
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from donjon.core.identity import Principal
from donjon.errors import InputError
from donjon.registry import Attachment, AttachmentKind, Kind, Registry, Status, Version
from donjon.server.ui.views import Catalogue, attachments_of, visible_names

SHOWN_ROWS = 100  # flagged rows and diff rows listed on the page
CACHED_DIFFS = 32


def _documents(registry: Registry) -> dict[tuple[str, int], list[Attachment]]:
    store: Any = registry.store
    if not hasattr(store, "kind_attachments"):
        return {}
    rows = store.kind_attachments(Kind.DATASET.value)
    return {key: [Attachment.from_row(r) for r in found] for key, found in rows.items()}


def _newest(found: list[Attachment], kind: AttachmentKind) -> Attachment | None:
    return next((a for a in reversed(found) if a.kind is kind), None)


@dataclass
class VersionRow:
    version: Version
    manifest: Attachment | None
    check: Attachment | None


def overview(registry: Registry, principal: Principal) -> dict[str, Any]:
    """Each dataset's versions (newest first) with their documents' summaries; the queue."""
    data = Catalogue(registry, Kind.DATASET, visible_names(registry, principal, Kind.DATASET))
    models = Catalogue(registry, Kind.MODEL, visible_names(registry, principal, Kind.MODEL))
    documents = _documents(registry)
    listing = {
        name: [_row(v, documents.get((name, v.number), [])) for v in reversed(versions)]
        for name, versions in data.versions.items()
    }
    queue = data.with_status(Status.QUARANTINED) + models.with_status(Status.QUARANTINED)
    return {"datasets": listing, "queue": queue}


def _row(version: Version, found: list[Attachment]) -> VersionRow:
    return VersionRow(
        version, _newest(found, AttachmentKind.MANIFEST), _newest(found, AttachmentKind.CHECK)
    )


@dataclass
class DiffCache:
    """Diffs by the pair of manifest documents' digests (documents never change)."""

    entries: OrderedDict[tuple[str, str], dict[str, Any]] = field(default_factory=OrderedDict)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def get(self, key: tuple[str, str]) -> dict[str, Any] | None:
        with self.lock:
            found = self.entries.get(key)
            if found is not None:
                self.entries.move_to_end(key)
            return found

    def put(self, key: tuple[str, str], value: dict[str, Any]) -> None:
        with self.lock:
            self.entries[key] = value
            while len(self.entries) > CACHED_DIFFS:
                self.entries.popitem(last=False)


def detail(
    registry: Registry,
    principal: Principal,
    name: str,
    query: dict[str, str],
    cache: DiffCache,
) -> dict[str, Any]:
    """One dataset: versions, the chosen version's check report, a diff of two versions."""
    versions = registry.versions(principal, Kind.DATASET, name)  # authorised: dataset.list
    documents = attachments_of(registry, principal, Kind.DATASET, versions)
    rows = [_row(v, documents.get(v.number, [])) for v in reversed(versions)]
    numbers = [v.number for v in versions]
    newest = numbers[-1] if numbers else 0
    chosen = _number(query.get("version"), numbers, newest)
    old = _number(query.get("old"), numbers, numbers[-2] if len(numbers) > 1 else newest)
    new = _number(query.get("new"), numbers, newest)
    by_number = {r.version.number: r for r in rows}

    def read(number: int, found: Attachment) -> dict[str, Any]:
        """One document's JSON, through the attachments API (``dataset.read``, recorded)."""
        _, data = registry.attachment_bytes(principal, name, number, found.digest, of=Kind.DATASET)
        document: dict[str, Any] = json.loads(data)
        return document

    report = None
    checked = by_number[chosen].check if chosen else None
    if checked is not None:
        report = _check_report(read(chosen, checked))
    diff = None
    if old and new and old != new:
        diff = _diff((by_number[old], by_number[new]), read, cache)
    return {
        "name": name,
        "rows": rows,
        "numbers": numbers,
        "chosen": chosen,
        "report": report,
        "old": old,
        "new": new,
        "diff": diff,
    }


def _number(text: str | None, numbers: list[int], default: int) -> int:
    if not text:
        return default
    if not text.isascii() or not text.isdigit() or int(text) not in numbers:
        raise InputError(f"no version {text[:20]!r} of this dataset")
    return int(text)


def _check_report(document: dict[str, Any]) -> dict[str, Any]:
    report = document["report"]
    flagged = sorted(report.get("flagged") or (), key=lambda v: -float(v["score"]))
    return {
        "source": report.get("source", ""),
        "records": report.get("records", 0),
        "risk": report.get("risk") or {},
        "detectors": report.get("detectors") or {},
        "findings": report.get("findings") or [],
        "flagged_total": len(flagged),
        "flagged": flagged[:SHOWN_ROWS],
        "notes": report.get("notes") or [],
    }


def _diff(
    pair: tuple[VersionRow, VersionRow],
    read: Callable[[int, Attachment], dict[str, Any]],
    cache: DiffCache,
) -> dict[str, Any]:
    """The diff of two versions from their manifests' record digests (cached by digests)."""
    old, new = pair
    if old.manifest is None or new.manifest is None:
        missing = [r.version.number for r in pair if r.manifest is None]
        return {"error": f"no manifest attached to version(s) {missing}"}
    key = (str(old.manifest.digest), str(new.manifest.digest))
    cached = cache.get(key)
    if cached is not None:
        return cached
    try:
        from donjon.data.diffs import diff_records
        from donjon.data.documents import records_table
    except ImportError:
        return {"error": "diffs need the data extra on the server: pip install 'donjon[data]'"}
    documents = [read(r.version.number, r.manifest) for r in pair if r.manifest is not None]
    before, after = (records_table(d) for d in documents)
    if before is None or after is None:
        result: dict[str, Any] = {"error": "a manifest was attached without its record digests"}
    else:
        by_id = all(d["manifest"].get("id_column") for d in documents)
        found = diff_records(before, after, by_id=by_id)
        keys_old = before.column("key").to_pylist()
        keys_new = after.column("key").to_pylist()
        result = {
            "keyed_by": found.keyed_by,
            "old_count": found.old_count,
            "new_count": found.new_count,
            "unchanged": found.unchanged,
            "added": len(found.added),
            "removed": len(found.removed),
            "changed": len(found.changed),
            "relabelled": len(found.relabelled),
            "label_changes": dict(found.label_changes.most_common(20)),
            "added_rows": [(i, keys_new[i]) for i in found.added[:SHOWN_ROWS]],
            "removed_rows": [(i, keys_old[i]) for i in found.removed[:SHOWN_ROWS]],
            "changed_rows": [list(p) for p in found.changed[:SHOWN_ROWS]],
            "relabelled_rows": [list(p) for p in found.relabelled[:SHOWN_ROWS]],
        }
    cache.put(key, result)
    return result
