"""The registry's referrers store: attach documents to model and dataset versions.

Mixed into :class:`~donjon.registry.service.Registry`. Attaching needs
``model.write`` (``dataset.write``) on the version (it adds to what the version
claims), reading needs ``model.read`` (``dataset.read``); each is authorised,
recorded as an event (and so ledgered), and the bytes go to the
content-addressed blob store. The kind is checked against the version's kind
before anything else, and the document before it is stored.
"""

from __future__ import annotations

import io
import threading
from collections.abc import Callable
from dataclasses import replace
from typing import Any

from donjon.core.artifacts import Digest
from donjon.core.bus import EventBus
from donjon.core.events import Outcome
from donjon.core.identity import Principal
from donjon.core.ports import BlobStore, Clock
from donjon.errors import InputError, NotFound
from donjon.registry.attachments import (
    MAX_ATTACHMENT_BYTES,
    Attachment,
    AttachmentInspector,
    AttachmentKind,
    check_document,
    check_subject,
    parse_kind,
)
from donjon.registry.errors import Gone
from donjon.registry.events import action_event
from donjon.registry.model import Status, Version
from donjon.registry.names import Kind, action, check_name, resource
from donjon.registry.ports import RegistryStore


def attach_action(of: Kind) -> str:
    return f"{of.value}.attach"


OnAttached = Callable[[Version, Attachment], None]


class Referrers:
    """Attachments of model versions (a mixin of the registry)."""

    store: RegistryStore
    blobs: BlobStore
    bus: EventBus
    clock: Clock
    inspector: AttachmentInspector | None
    _lock: threading.Lock

    # provided by the registry
    on_attached: list[OnAttached]
    authorize: Callable[..., Any]
    _version: Callable[[Kind, str, int], Version]

    def attach(
        self,
        principal: Principal,
        name: str,
        number: int,
        kind: AttachmentKind,
        data: bytes,
        *,
        of: Kind = Kind.MODEL,
    ) -> Attachment:
        """Attach a document of ``kind`` to version ``name@number`` of a model (signature,
        provenance, fingerprint) or, with ``of=Kind.DATASET``, a dataset (manifest, check).

        The kind must be one the version's kind takes and the version must exist
        and not be deleted; the document must be well formed and, for a dataset,
        describe the version's bytes (InputError otherwise, and nothing is
        stored). Attaching the same document twice is a Conflict. Trust is not
        decided here.
        """
        name = check_name(name)
        kind = parse_kind(kind.value, of.value)  # before anything is asked or stored
        self.authorize(principal, action(of, "write"), resource(of, name, number))
        version = self._version(of, name, number)
        if version.status is Status.TOMBSTONED:
            raise Gone(f"{of.value} {version.ref} was deleted")
        try:
            summary = self._inspect(kind, data, str(version.digest))
        except InputError as e:
            self._publish(principal, version, Outcome.FAILURE, f"{kind} refused: {e}", of=of)
            raise
        digest = self.blobs.put(io.BytesIO(data))
        row = {
            "kind": kind.value,
            "digest": str(digest),
            "size": len(data),
            "media_type": kind.media_type,
            "summary": summary,
            "created_by": str(principal),
            "created_at": self.clock.now(),
        }
        self.bus.flush()  # the decision is stored before the attachment is
        with self._lock:
            stored = Attachment.from_row(self.store.add_attachment(of.value, name, number, row))
            self._publish(
                principal, version, Outcome.SUCCESS, f"{kind} {digest} attached",
                attachment=stored, of=of,
            )  # fmt: skip
        for told in self.on_attached:  # e.g. the watch list, of a fingerprint (app-wired)
            told(version, stored)
        return stored

    def attachments(
        self, principal: Principal, name: str, number: int, *, of: Kind = Kind.MODEL
    ) -> list[Attachment]:
        """The documents attached to version ``name@number`` (of a model), oldest first."""
        name = check_name(name)
        self.authorize(principal, action(of, "read"), resource(of, name, number))
        self._version(of, name, number)
        return self._attachments(name, number, of)

    def attachment_bytes(
        self,
        principal: Principal,
        name: str,
        number: int,
        digest: Digest,
        *,
        of: Kind = Kind.MODEL,
    ) -> tuple[Attachment, bytes]:
        """One attached document and its bytes (checked against its digest)."""
        for found in self.attachments(principal, check_name(name), number, of=of):
            if found.digest == digest:
                return found, self._read_attachment(found)
        raise NotFound(f"no attachment {digest} on {of.value} {name}@{number}")

    def attached_document(self, name: str, number: int, digest: Digest) -> bytes:
        """The bytes of a document attached to ``name@number``, for the vault's own services
        (the watch's scheduler in ``donjon up``), as the promotion gates read them: no
        principal, the digest checked, NotFound when that version has no such attachment."""
        for found in self._attachments(check_name(name), number):
            if found.digest == digest:
                return self._read_attachment(found)
        raise NotFound(f"no attachment {digest} on model {name}@{number}")

    # -- for the registry's promotion ----------------------------------------------

    def _attachments(self, name: str, number: int, of: Kind = Kind.MODEL) -> list[Attachment]:
        rows = self.store.attachments(of.value, name, number)
        return [Attachment.from_row(row) for row in rows]

    def _read_attachment(self, attachment: Attachment) -> bytes:
        if attachment.size > MAX_ATTACHMENT_BYTES:
            raise InputError(f"attachment {attachment.digest} is larger than allowed")
        with self.blobs.open(attachment.digest) as stream:
            data = stream.read()  # to the end: the verifying stream checks the digest there
        return bytes(data)

    def _dataset_versions(self, name: str) -> tuple[Version, ...]:
        try:
            name = check_name(name)
        except InputError:
            return ()
        rows = self.store.versions(Kind.DATASET.value, name)
        return tuple(Version.from_row(row) for row in rows)

    # -- helpers ---------------------------------------------------------------------

    def _inspect(self, kind: AttachmentKind, data: bytes, digest: str) -> dict[str, Any]:
        check_subject(kind, check_document(data), digest)
        if self.inspector is None:
            return {}
        summary = self.inspector.inspect(kind, data)
        return {str(k): v for k, v in (summary or {}).items()}

    def _publish(
        self,
        principal: Principal,
        version: Version,
        outcome: Outcome,
        detail: str,
        *,
        attachment: Attachment | None = None,
        of: Kind = Kind.MODEL,
    ) -> None:
        event = action_event(
            principal, attach_action(of), version.resource, outcome, detail, version=version
        )
        if attachment is not None:
            extra = {
                "attachment_kind": attachment.kind.value,
                "attachment_digest": str(attachment.digest),
                "attachment_media_type": attachment.media_type,
            }
            event = replace(event, attributes={**dict(event.attributes), **extra})
        self.bus.publish(event)
