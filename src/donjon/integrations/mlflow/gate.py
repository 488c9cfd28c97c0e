"""The registry gate: what Donjon does for each verified MLflow webhook delivery.

- ``model_version.created``: download the version's artifacts through MLflow's
  client, review them (scan, and verify when the policy asks), publish the
  verdict, write it back as ``donjon.*`` tags, and remove any protected alias
  already pointing at the version if it failed.
- ``model_version_alias.created`` with a protected alias (``champion``,
  ``production``...): review the version again (its artifacts are what the alias
  now serves) and remove the alias when the version fails.
- ``model_version_tag.set`` / ``.deleted`` on a ``donjon.*`` key: when the tags
  in the registry no longer say what Donjon wrote (someone edited them), put
  them back and publish it. Donjon's own writes echo back as such events too;
  they find the registry as written and do nothing, so there is no loop.

Deliveries are handled one at a time, in order, by :class:`GateWorker`.
"""

from __future__ import annotations

import json
import logging
import os
import queue
import re
import tempfile
import threading
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

from donjon.core.bus import EventBus
from donjon.core.events import SecurityEvent
from donjon.errors import DonjonError, InputError
from donjon.integrations.mlflow.registry import VersionInfo
from donjon.integrations.mlflow.review import (
    Review,
    ReviewPolicy,
    failed_to_review,
    review_folder,
)
from donjon.integrations.mlflow.verdict import SOURCE, TAG_PREFIX, Verdict, activity
from donjon.integrations.mlflow.webhook import Delivery

log = logging.getLogger(__name__)
_UID = re.compile(r"^[0-9a-f]{32}$")


class Registry(Protocol):
    """What the gate needs of MLflow's registry (:class:`MlflowRegistry` in production)."""

    def version(self, name: str, version: str) -> VersionInfo: ...
    def download(self, name: str, version: str, destination: Path) -> Path: ...
    def set_tags(self, name: str, version: str, tags: dict[str, str]) -> None: ...
    def alias_target(self, name: str, alias: str) -> str | None: ...
    def delete_alias(self, name: str, alias: str) -> None: ...


class EvidenceStore:
    """Verdict documents, one JSON file per verdict uid, served under ``{base_url}/evidence/``."""

    def __init__(self, folder: Path, base_url: str) -> None:
        self.folder = folder
        self.base_url = base_url.rstrip("/")

    def url(self, uid: str) -> str:
        return f"{self.base_url}/evidence/{uid}"

    def write(self, uid: str, document: dict[str, Any]) -> None:
        self.folder.mkdir(parents=True, exist_ok=True)
        final = self.folder / f"{uid}.json"
        partial = final.with_name(f".{uid}.partial")
        partial.write_text(json.dumps(document, indent=2, default=str) + "\n", encoding="utf-8")
        os.replace(partial, final)

    def read(self, uid: str) -> bytes | None:
        if not _UID.match(uid):
            return None
        try:
            return (self.folder / f"{uid}.json").read_bytes()
        except FileNotFoundError:
            return None


@dataclass(frozen=True)
class GateSettings:
    policy: ReviewPolicy = field(default_factory=ReviewPolicy)
    protected_aliases: frozenset[str] = frozenset({"champion", "production"})


class MlflowGate:
    """Reviews model versions and enforces the verdict in the registry."""

    def __init__(
        self, registry: Registry, bus: EventBus, evidence: EvidenceStore, settings: GateSettings
    ) -> None:
        self.registry = registry
        self.bus = bus
        self.evidence = evidence
        self.settings = settings
        self._written: dict[tuple[str, str], dict[str, str]] = {}
        self._lock = threading.Lock()

    def handle(self, delivery: Delivery) -> str:
        """Act on one delivery; a short description of what was done."""
        event = delivery.event
        if not event.startswith("model_version"):
            return f"ignored {event}"
        name, version = delivery.field("name"), delivery.field("version")
        if event == "model_version.created":
            return self.review(name, version).summary()
        if event in ("model_version_tag.set", "model_version_tag.deleted"):
            if not delivery.field("key").startswith(TAG_PREFIX):
                return f"ignored {event} on a tag that is not Donjon's"
            return self._check_tags(name, version)
        if event == "model_version_alias.created":
            alias = delivery.field("alias")
            if alias not in self.settings.protected_aliases:
                return f"ignored alias {alias!r} (not protected)"
            verdict = self.review(name, version)  # the removal, if any, happened there
            return f"protected alias {alias!r}: {verdict.summary()}"
        return f"ignored {event}"

    def review(self, name: str, version: str) -> Verdict:
        """Fetch, review, publish, tag; remove protected aliases from a failing version."""
        model = f"models:/{name}/{version}"
        with tempfile.TemporaryDirectory(prefix="donjon-mlflow-") as tmp:
            review: Review | None = None
            try:
                folder = self.registry.download(name, version, Path(tmp))
                review = review_folder(folder, model, self.settings.policy)
                verdict = review.verdict
            except (DonjonError, OSError) as e:  # fail closed: unreviewed is failed
                verdict = failed_to_review(model, e)
        url = self.evidence.url(verdict.uid)
        if review is not None:
            document = review.evidence(url)
        else:
            document = {"uid": verdict.uid, **verdict.to_dict()}
        self.evidence.write(verdict.uid, document)
        events = [verdict.event(url)]
        if review is not None:
            events += [
                SecurityEvent.of_finding(f, SOURCE, model=model, evidence=url)
                for f in review.report.findings
            ]
        self.bus.publish_all(events)  # stored before the registry hears of it
        tags = verdict.tags(url)
        self.registry.set_tags(name, version, tags)
        with self._lock:
            self._written[(name, version)] = tags
        if not verdict.passed:
            aliases = self.registry.version(name, version).aliases
            for alias in sorted(self.settings.protected_aliases & set(aliases)):
                self._remove_alias(name, version, alias, url)
        return verdict

    def _remove_alias(self, name: str, version: str, alias: str, url: str) -> None:
        if self.registry.alias_target(name, alias) != version:
            return  # moved elsewhere meanwhile: not this version's to lose
        self.registry.delete_alias(name, alias)
        model = f"models:/{name}/{version}"
        self.bus.publish(
            activity(
                "alias_removed",
                f"removed protected alias {alias!r} from failing {model}",
                ok=False,
                model=model,
                alias=alias,
                evidence=url,
            )
        )

    def _check_tags(self, name: str, version: str) -> str:
        with self._lock:
            written = self._written.get((name, version))
        if written is None:  # never reviewed by this process: review it now
            return self.review(name, version).summary()
        found = self.registry.version(name, version).tags
        changed = {k: v for k, v in written.items() if found.get(k) != v}
        if not changed:
            return "tags as written"
        uri = f"models:/{name}/{version}"
        self.bus.publish(
            activity(
                "tags_restored",
                f"Donjon's tags on {uri} were changed or removed: restored",
                ok=False,
                model=uri,
                found={k: found.get(k) for k in changed},
            )
        )
        self.registry.set_tags(name, version, changed)
        return f"restored {', '.join(sorted(changed))}"


class GateWorker:
    """Handles accepted deliveries one at a time, in a thread of its own."""

    def __init__(self, gate: MlflowGate, maxsize: int = 1000) -> None:
        self.gate = gate
        self._queue: queue.Queue[Delivery | None] = queue.Queue(maxsize)
        self._thread: threading.Thread | None = None

    def submit(self, delivery: Delivery) -> bool:
        """Queue a delivery; ``False`` when the queue is full (answer 503: MLflow retries)."""
        try:
            self._queue.put_nowait(delivery)
        except queue.Full:
            return False
        return True

    @property
    def pending(self) -> int:
        return self._queue.qsize()

    def start(self) -> None:
        if self._thread is None:
            self._thread = threading.Thread(target=self._run, name="donjon-mlflow", daemon=True)
            self._thread.start()

    def stop(self) -> None:
        """Finish what is queued, then stop."""
        if self._thread is not None:
            self._queue.put(None)
            self._thread.join()
            self._thread = None

    def _run(self) -> None:
        while (delivery := self._queue.get()) is not None:
            self.process(delivery)

    def process(self, delivery: Delivery) -> None:
        try:
            outcome = self.gate.handle(delivery)
        except InputError as e:
            log.warning("MLflow delivery %s refused: %s", delivery.delivery_id, e)
        except Exception as e:  # the worker must outlive one bad delivery (logged, published)
            log.exception("MLflow delivery %s failed", delivery.delivery_id)
            self.gate.bus.publish(
                activity(
                    "delivery_failed",
                    f"{delivery.event} not handled: {type(e).__name__}: {e}",
                    ok=False,
                    delivery=delivery.delivery_id,
                    data=dict(delivery.data),
                )
            )
        else:
            log.info("MLflow delivery %s (%s): %s", delivery.delivery_id, delivery.event, outcome)
