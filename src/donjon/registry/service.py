"""The vault: every call authorised, every action recorded, nothing overwritten.

:class:`Registry` takes a principal with each call (authentication happened at
the edge), asks the :class:`~donjon.core.ports.Authorizer` (deny by default; an
authorizer error denies) and publishes each decision and each action as a
:class:`~donjon.core.events.SecurityEvent` on the bus. Bytes go to a
content-addressed :class:`~donjon.core.ports.BlobStore`, the catalogue to a
:class:`~donjon.registry.ports.RegistryStore`.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Mapping, Sequence
from typing import Any, BinaryIO

from donjon.core.artifacts import Digest
from donjon.core.bus import EventBus
from donjon.core.clock import SystemClock
from donjon.core.decision import Decision
from donjon.core.events import Outcome, SecurityEvent
from donjon.core.identity import Principal
from donjon.core.ports import Authorizer, BlobStore, Clock
from donjon.errors import AccessDenied, InputError, NotFound
from donjon.registry import guard
from donjon.registry.attachments import AttachmentInspector
from donjon.registry.checks import check_metadata, check_reason, must_be_active
from donjon.registry.errors import GateFailed, Gone
from donjon.registry.events import SOURCE, action_event, gate_event
from donjon.registry.gates import SCAN_GATE, passed, scan_clean
from donjon.registry.model import GateResult, Stage, Status, Version, VersionRef
from donjon.registry.names import Kind, action, check_name, resource
from donjon.registry.ports import (
    BlobReader,
    GateContext,
    PromotionGate,
    RegistryStore,
    ScanGate,
)
from donjon.registry.referrers import OnAttached, Referrers
from donjon.registry.streams import LimitedReader

log = logging.getLogger(__name__)

SIGNATURE_GATE = "signature"
_NAME_LOCKS = 64


class Registry(Referrers):
    """Datasets and models under guard. Thread-safe; one per process."""

    def __init__(
        self,
        store: RegistryStore,
        blobs: BlobStore,
        authorizer: Authorizer,
        bus: EventBus,
        *,
        scan_gate: ScanGate | None = None,
        promotion_gates: Mapping[Stage, Sequence[PromotionGate]] | None = None,
        clock: Clock | None = None,
        max_blob_size: int | None = None,
        inspector: AttachmentInspector | None = None,
    ) -> None:
        self.store = store
        self.blobs = blobs
        self.authorizer = authorizer
        self.bus = bus
        self.scan_gate = scan_gate
        self.promotion_gates = dict(promotion_gates or {})
        self.clock = clock or SystemClock()
        self.max_blob_size = max_blob_size
        self.inspector = inspector  # checks attached documents are well formed
        self.on_attached: list[OnAttached] = []  # told of each attachment once it is stored
        # Catalogue changes and their events happen under a lock of their name, so the
        # events of one name come out in version order while other names go on (a
        # store that journals the events with the write orders them by its commits).
        self._lock = threading.Lock()
        self._name_locks = tuple(threading.Lock() for _ in range(_NAME_LOCKS))

    def _lock_of(self, kind: Kind, name: str) -> threading.Lock:
        return self._name_locks[hash((kind.value, name)) % _NAME_LOCKS]

    # -- authorisation -------------------------------------------------------

    def authorize(
        self,
        principal: Principal,
        act: str,
        res: str,
        context: Mapping[str, Any] | None = None,
    ) -> Decision:
        """Ask the authorizer, publish the decision (once), raise AccessDenied on deny.

        Callers ask before they look anything up, on the resource as requested,
        so a refused caller learns nothing about what exists.
        """
        decision = guard.decide(self.authorizer, principal, act, res, context)
        self.bus.publish(SecurityEvent.of_decision(decision, SOURCE, **dict(context or {})))
        if not decision.allowed:
            raise AccessDenied(f"{principal} may not {act} {res}")
        return decision

    # -- writing ---------------------------------------------------------------

    def push(
        self,
        principal: Principal,
        kind: Kind,
        name: str,
        stream: BinaryIO,
        *,
        expected: Digest | None = None,
        media_type: str = "application/octet-stream",
        metadata: Mapping[str, Any] | None = None,
        lineage: Sequence[VersionRef] = (),
        filename: str | None = None,
    ) -> Version:
        """Store a new version (the next number) of a dataset or model.

        ``filename`` (the pushed file's name) is handed to the scan gate only.
        """
        name = check_name(name)
        meta = check_metadata(metadata)
        refs = tuple(lineage)
        if refs and kind is not Kind.MODEL:
            raise InputError("only models have lineage")
        if len(media_type) > 200 or not media_type.isprintable():
            raise InputError("invalid media type")
        act = action(kind, "write")
        self.authorize(principal, act, resource(kind, name))
        for ref in refs:  # naming training data needs the right to read it: no probing
            data = resource(Kind.DATASET, ref.name, ref.number)
            # context holds only the keys the Authorizer port defines (stage, signed, scan_clean)
            self.authorize(principal, action(Kind.DATASET, "read"), data)
            if self.store.get_version(Kind.DATASET.value, ref.name, ref.number) is None:
                raise NotFound(f"lineage dataset {ref} does not exist")
        reader = LimitedReader(stream, self.max_blob_size)
        try:
            digest = self.blobs.put(reader, expected)  # type: ignore[arg-type]
        except Exception as e:
            self._action_event(principal, act, resource(kind, name), Outcome.FAILURE, str(e))
            raise
        size = reader.count
        gates: list[GateResult] = []
        status, reason = Status.ACTIVE, None
        if kind is Kind.MODEL and self.scan_gate is not None:
            result = self._scan(self.scan_gate, name, digest, filename)
            gates.append(result)
            if not result.passed:
                status, reason = Status.QUARANTINED, "; ".join(result.reasons) or "scan not clean"
        now = self.clock.now()
        row = {
            "kind": kind.value,
            "name": name,
            "digest": str(digest),
            "size": size,
            "media_type": media_type,
            "metadata": meta,
            "stage": Stage.DEV.value if kind is Kind.MODEL else None,
            "status": status.value,
            "status_reason": reason,
            "status_by": str(principal) if reason else None,
            "status_at": now if reason else None,
            "created_by": str(principal),
            "created_at": now,
            "lineage": [[ref.name, ref.number] for ref in refs],
        }

        def record(stored: Mapping[str, Any]) -> list[SecurityEvent]:
            version = Version.from_row(stored)
            return [
                *(gate_event(principal, version, result) for result in gates),
                action_event(
                    principal, act, version.resource, Outcome.SUCCESS, "stored", version=version
                ),
            ]

        with self._lock_of(kind, name):
            recorder = _Recorder(self.bus, record)
            stored = self.store.add_version(row, [g.to_row() for g in gates], events=recorder)
            self._publish_recorded(recorder, stored)
        return Version.from_row(stored)

    def _scan(
        self, gate: ScanGate, name: str, digest: Digest, filename: str | None = None
    ) -> GateResult:
        now = self.clock.now()
        try:
            verdict = gate.scan(name, digest, lambda: self.blobs.open(digest), filename)
        except Exception as e:  # noqa: BLE001 - fail closed: a scanner error is no pass
            log.warning("scan gate failed on %s: %s", name, type(e).__name__)
            return GateResult(SCAN_GATE, False, "push", (f"scanner error: {e}",), time=now)
        reasons = tuple(f.message for f in verdict.findings) or (
            (verdict.summary,) if verdict.summary else ()
        )
        details = {
            "scanner": gate.name,
            "findings": [
                {"rule": f.rule.id, "severity": f.level.label, "message": f.message}
                for f in verdict.findings
            ],
            **dict(verdict.details or {}),
        }
        return GateResult(SCAN_GATE, verdict.clean, "push", reasons, details, now)

    def promote(self, principal: Principal, name: str, number: int, stage: Stage) -> Version:
        """Run the target stage's gates, then move the model version; a failed gate raises."""
        name = check_name(name)
        # The facts come from the gate history, empty for a version that does not
        # exist: the decision, asked before the lookup, cannot tell the two apart.
        history = tuple(
            GateResult.from_row(r) for r in self.store.gate_results(Kind.MODEL.value, name, number)
        )
        context = {
            "stage": stage.value,
            "scan_clean": scan_clean(history),
            "signed": passed(history, SIGNATURE_GATE),
        }
        target = resource(Kind.MODEL, name, number)
        self.authorize(principal, action(Kind.MODEL, "promote"), target, context)
        version = self._version(Kind.MODEL, name, number)
        must_be_active(version)
        lineage = tuple(self._find(Kind.DATASET, ref.name, ref.number) for ref in version.lineage)
        gate_context = GateContext(
            history,
            lineage,
            attachments=tuple(self._attachments(name, number)),
            read_attachment=self._read_attachment,
            datasets=self._dataset_versions,
            principal=principal,
        )
        gates = self.promotion_gates.get(stage, ())
        checks = [g for g in gates if not getattr(g, "after_others", False)]
        results = [self._run_gate(gate, version, stage, gate_context) for gate in checks]
        for gate in (g for g in gates if g not in checks):
            if all(r.passed for r in results):
                results.append(self._run_gate(gate, version, stage, gate_context))
            else:
                why = "not run: another gate failed"
                results.append(
                    GateResult(gate.name, False, stage.value, (why,), time=self.clock.now())
                )
        with self._lock_of(Kind.MODEL, name):
            if results:
                checked = _Recorder(
                    self.bus, lambda _row: [gate_event(principal, version, r) for r in results]
                )
                self.store.add_gate_results(
                    Kind.MODEL.value, name, number, [r.to_row() for r in results], events=checked
                )
                self._publish_recorded(checked, {})
            failed = [r for r in results if not r.passed]
            if failed:
                why = "; ".join(f"{r.gate}: {', '.join(r.reasons)}" for r in failed)
                self._action_event(
                    principal, "model.promote", version.resource, Outcome.FAILURE, why, stage=stage
                )
                raise GateFailed(f"{version.ref} stays in {version.stage}: {why}", results)
            recorder = self._success(
                principal, "model.promote", version.resource, f"{version.stage} -> {stage}", stage
            )
            stored = self.store.set_stage(
                Kind.MODEL.value, name, number, stage.value, str(principal), self.clock.now(),
                events=recorder,
            )  # fmt: skip
            self._publish_recorded(recorder, stored)
        return Version.from_row(stored)

    def _run_gate(
        self, gate: PromotionGate, version: Version, stage: Stage, context: GateContext
    ) -> GateResult:
        opener: BlobReader = lambda: self.blobs.open(version.digest)  # noqa: E731
        try:
            result = gate.check(version, stage, opener, context)
        except Exception as e:  # noqa: BLE001 - fail closed: a gate error fails the gate
            log.warning("gate %s failed on %s: %s", gate.name, version.ref, type(e).__name__)
            result = GateResult(gate.name, False, stage.value, (f"gate error: {e}",))
        if result.time is None:
            result = GateResult(
                result.gate, result.passed, result.target, result.reasons, result.details,
                self.clock.now(),
            )  # fmt: skip
        return result

    def quarantine(
        self, principal: Principal, kind: Kind, name: str, number: int, reason: str
    ) -> Version:
        return self._set_status(principal, kind, name, number, Status.QUARANTINED, reason)

    def release(
        self, principal: Principal, kind: Kind, name: str, number: int, reason: str
    ) -> Version:
        return self._set_status(principal, kind, name, number, Status.ACTIVE, reason)

    def delete(
        self, principal: Principal, kind: Kind, name: str, number: int, reason: str
    ) -> Version:
        """Tombstone a version: its record and events stay, its bytes are no longer served."""
        return self._set_status(principal, kind, name, number, Status.TOMBSTONED, reason)

    def _set_status(
        self, principal: Principal, kind: Kind, name: str, number: int, status: Status, reason: str
    ) -> Version:
        reason = check_reason(reason)
        name = check_name(name)
        act = action(kind, "delete") if status is Status.TOMBSTONED else "admin"
        self.authorize(principal, act, resource(kind, name, number))
        version = self._version(kind, name, number)
        if version.status is Status.TOMBSTONED:
            raise Gone(f"{kind.value} {version.ref} was deleted")
        with self._lock_of(kind, name):
            detail = f"{version.status} -> {status}: {reason}"
            recorder = self._success(principal, act, version.resource, detail)
            stored = self.store.set_status(
                kind.value, name, number, status.value, reason, str(principal), self.clock.now(),
                events=recorder,
            )  # fmt: skip
            self._publish_recorded(recorder, stored)
        return Version.from_row(stored)

    # -- reading ---------------------------------------------------------------

    def get(
        self, principal: Principal, kind: Kind, name: str, number: int | None = None
    ) -> Version:
        """A version's record (the latest when ``number`` is None)."""
        name = check_name(name)
        if number is None:
            self.authorize(principal, action(kind, "read"), resource(kind, name))
            latest = self.store.latest_version(kind.value, name)
            if latest is None:
                raise NotFound(f"no {kind.value} named {name!r}")
            return Version.from_row(latest)
        self.authorize(principal, action(kind, "read"), resource(kind, name, number))
        return self._version(kind, name, number)

    def open(
        self, principal: Principal, kind: Kind, name: str, number: int | None = None
    ) -> tuple[Version, BinaryIO]:
        """A version's record and its bytes; only active versions are served."""
        version = self.get(principal, kind, name, number)
        must_be_active(version)
        stream = self.blobs.open(version.digest)
        try:
            self._action_event(
                principal, action(kind, "read"), version.resource, Outcome.SUCCESS, "served",
                version=version,
            )  # fmt: skip
            self.bus.flush()  # recorded before a byte is handed out
        except BaseException:
            stream.close()
            raise
        return version, stream

    def names(self, principal: Principal, kind: Kind, prefix: str = "") -> list[str]:
        """Names under ``prefix`` (a name or a folder of names); needs list on it."""
        prefix = prefix.strip("/")
        if prefix:
            check_name(prefix)
        act = action(kind, "list")
        listed = resource(kind, prefix or None)
        self.authorize(principal, act, listed)
        found = [
            n
            for n in self.store.names(kind.value, prefix)
            if not prefix or n == prefix or n.startswith(prefix + "/")
        ]
        # Each name is decided too: a forbid on a subtree hides the names under it.
        verdicts = guard.allowed_items(
            self.authorizer, principal, act, [resource(kind, n) for n in found]
        )
        hidden = [n for n, ok in zip(found, verdicts, strict=True) if not ok]
        if hidden:
            self.bus.publish(guard.hidden_event(principal, act, listed, len(found), hidden))
        return [n for n, ok in zip(found, verdicts, strict=True) if ok]

    def versions(self, principal: Principal, kind: Kind, name: str) -> list[Version]:
        name = check_name(name)
        self.authorize(principal, action(kind, "list"), resource(kind, name))
        return [Version.from_row(row) for row in self.store.versions(kind.value, name)]

    def gate_results(
        self, principal: Principal, kind: Kind, name: str, number: int
    ) -> list[GateResult]:
        name = check_name(name)
        self.authorize(principal, action(kind, "read"), resource(kind, name, number))
        self._version(kind, name, number)
        return [GateResult.from_row(r) for r in self.store.gate_results(kind.value, name, number)]

    # -- helpers ---------------------------------------------------------------

    def _find(self, kind: Kind, name: str, number: int) -> Version | None:
        row = self.store.get_version(kind.value, name, number)
        return None if row is None else Version.from_row(row)

    def _version(self, kind: Kind, name: str, number: int) -> Version:
        version = self._find(kind, check_name(name), number)
        if version is None:
            raise NotFound(f"no {kind.value} version {name}@{number}")
        return version

    def _success(
        self, principal: Principal, act: str, res: str, detail: str, stage: Stage | None = None
    ) -> _Recorder:
        """The event of a successful stage or status change, made from the stored row."""

        def make(row: Mapping[str, Any]) -> list[SecurityEvent]:
            version = Version.from_row(row)
            event = action_event(
                principal, act, res, Outcome.SUCCESS, detail, version=version, stage=stage
            )
            return [event]

        return _Recorder(self.bus, make)

    def _publish_recorded(self, recorder: _Recorder, stored: Mapping[str, Any]) -> None:
        """Fan out what the store journalled with the write, or publish it now if it could not."""
        if recorder.events is not None:
            self.bus.settle(recorder.earlier)
            self.bus.fan_out_journaled(recorder.events)
        else:  # journalled now, under the name's lock: a name's events in version order
            self.bus.publish_all(recorder.make(stored))
            self.bus.flush()

    def _action_event(self, *args: Any, **kwargs: Any) -> None:
        self.bus.publish(action_event(*args, **kwargs))


class _Recorder:
    """The events of one write, as the store journalled them (the last attempt's).

    The events the bus holds for the request (its authentication and decisions,
    a scan's findings: :meth:`EventBus.pending`) go first, in the same
    transaction: one commit stores the change and everything that led to it.
    """

    def __init__(
        self, bus: EventBus, make: Callable[[Mapping[str, Any]], list[SecurityEvent]]
    ) -> None:
        self.bus = bus
        self.make = make
        self.earlier: tuple[SecurityEvent, ...] = ()
        self.events: list[SecurityEvent] | None = None

    def __call__(self, stored: dict[str, Any]) -> list[SecurityEvent]:
        self.earlier = self.bus.pending()
        self.events = [*self.earlier, *self.make(stored)]
        return self.events
