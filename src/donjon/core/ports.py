"""Ports: the interfaces the core and capabilities need from the outside world.

Adapters in ``donjon.storage`` and ``donjon.soc`` implement them; ``donjon.app``
wires them. A test may pass any object of the right shape (a fake), which is
why these are Protocols and not base classes.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping, Sequence
from datetime import datetime
from typing import Any, BinaryIO, Protocol, runtime_checkable

from donjon.core.artifacts import Digest
from donjon.core.decision import Decision
from donjon.core.events import SecurityEvent
from donjon.core.identity import Principal


@runtime_checkable
class EventSink(Protocol):
    """Receives events from the bus. May raise; the bus isolates the failure."""

    name: str

    def emit(self, event: SecurityEvent) -> None: ...


class EventJournal(Protocol):
    """Durable store an event is written to before it is acknowledged."""

    def append(self, event: SecurityEvent) -> None: ...


@runtime_checkable
class BatchJournal(Protocol):
    """A journal that stores many events in one transaction (the bus prefers it)."""

    def append(self, event: SecurityEvent) -> None: ...

    def append_many(self, events: Sequence[SecurityEvent]) -> object: ...


class BlobStore(Protocol):
    """Content-addressed bytes: put returns the digest, which is the only key."""

    def put(self, stream: BinaryIO, expected: Digest | None = None) -> Digest: ...

    def open(self, digest: Digest) -> BinaryIO: ...

    def exists(self, digest: Digest) -> bool: ...


class MetadataStore(Protocol):
    """Small JSON documents by namespace and key."""

    def get(self, namespace: str, key: str) -> dict[str, object] | None: ...

    def put(self, namespace: str, key: str, value: dict[str, object]) -> None: ...

    def keys(self, namespace: str, prefix: str = "") -> Iterator[str]: ...


class KeyProvider(Protocol):
    """Signing keys by id; private material never leaves the provider."""

    def key_ids(self) -> list[str]: ...

    def public_key_pem(self, key_id: str) -> bytes: ...

    def sign(self, key_id: str, data: bytes) -> bytes: ...


class Clock(Protocol):
    def now(self) -> datetime: ...


class Authenticator(Protocol):
    """Turns a presented credential (API token, JWT) into a principal.

    Raises ``donjon.errors.AuthenticationError`` for a missing, malformed,
    expired or revoked credential; never returns an anonymous principal.
    """

    def authenticate(self, credential: str) -> Principal: ...


class Authorizer(Protocol):
    """Decides whether ``principal`` may do ``action`` on ``resource``.

    Resources are paths: ``datasets/fraud/transactions``, ``models/fraud-clf``
    (a version: ``models/fraud-clf@3``). Actions are ``<kind>.<verb>``:
    ``dataset.read|write|list|delete``, ``model.read|write|list|promote|deploy|delete|predict``,
    ``admin``. ``context`` carries facts such as ``stage``, ``signed`` and
    ``scan_clean``. Deny by default; an internal error denies too.
    """

    def authorize(
        self,
        principal: Principal,
        action: str,
        resource: str,
        context: Mapping[str, Any] | None = None,
    ) -> Decision: ...
