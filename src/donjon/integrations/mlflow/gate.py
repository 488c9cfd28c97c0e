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

A protected alias set on a version this process already failed is removed at
once, without a second review (a failing version never passes unreviewed).
Deliveries run on :class:`~donjon.integrations.mlflow.worker.GateWorker`'s
threads, in order per version. Each review's stages (received, started,
fetched, reviewed, published, tagged) are timed in its evidence document and
log line.
"""

from __future__ import annotations

import itertools
import json
import logging
import os
import re
import tempfile
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

from donjon.core.bus import EventBus
from donjon.core.events import SecurityEvent
from donjon.errors import DonjonError
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
    def warm_up(self) -> None: ...


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
        self._failed: dict[tuple[str, str], str] = {}  # version -> its failing verdict's evidence
        self._lock = threading.Lock()

    def handle(self, delivery: Delivery) -> str:
        """Act on one delivery; a short description of what was done."""
        event = delivery.event
        if not event.startswith("model_version"):
            return f"ignored {event}"
        name, version = delivery.field("name"), delivery.field("version")
        if event == "model_version.created":
            return self.review(name, version, received=delivery.received).summary()
        if event in ("model_version_tag.set", "model_version_tag.deleted"):
            if not delivery.field("key").startswith(TAG_PREFIX):
                return f"ignored {event} on a tag that is not Donjon's"
            return self._check_tags(name, version)
        if event == "model_version_alias.created":
            alias = delivery.field("alias")
            if alias not in self.settings.protected_aliases:
                return f"ignored alias {alias!r} (not protected)"
            with self._lock:
                failed = self._failed.get((name, version))
            if failed is not None:  # already failed here: no second review to lose it
                self._remove_alias(name, version, alias, failed)
                return f"protected alias {alias!r} on a version that failed: removed"
            verdict = self.review(name, version, received=delivery.received)
            return f"protected alias {alias!r}: {verdict.summary()}"  # removed there if failed
        return f"ignored {event}"

    def review(self, name: str, version: str, *, received: float | None = None) -> Verdict:
        """Fetch, review, publish, tag; remove protected aliases from a failing version.

        ``received`` is when the delivery that asked for it arrived (epoch seconds).
        """
        model = f"models:/{name}/{version}"
        stages = {"received": received or time.time(), "started": time.time()}
        with tempfile.TemporaryDirectory(prefix="donjon-mlflow-") as tmp:
            review: Review | None = None
            try:
                folder = self.registry.download(name, version, Path(tmp))
                stages["fetched"] = time.time()
                review = review_folder(folder, model, self.settings.policy)
                verdict = review.verdict
            except (DonjonError, OSError) as e:  # fail closed: unreviewed is failed
                verdict = failed_to_review(model, e)
        stages["reviewed"] = time.time()
        url = self.evidence.url(verdict.uid)
        if review is not None:
            document = review.evidence(url)
        else:
            document = {"uid": verdict.uid, **verdict.to_dict()}
        self.evidence.write(verdict.uid, {**document, "timings": stages})
        events = [verdict.event(url)]
        if review is not None:
            events += [
                SecurityEvent.of_finding(f, SOURCE, model=model, evidence=url)
                for f in review.report.findings
            ]
        self.bus.publish_all(events)  # stored before the registry hears of it
        stages["published"] = time.time()
        if not verdict.passed:  # what an alias serves is cut first, then the tags tell why
            aliases = self.registry.version(name, version).aliases
            for alias in sorted(self.settings.protected_aliases & set(aliases)):
                self._remove_alias(name, version, alias, url)
            stages["aliases_checked"] = time.time()
        tags = verdict.tags(url)
        with self._lock:
            self._written[(name, version)] = tags
            if verdict.passed:
                self._failed.pop((name, version), None)
            else:
                self._failed[(name, version)] = url
        self.registry.set_tags(name, version, tags)
        stages["tagged"] = time.time()
        self.evidence.write(verdict.uid, {**document, "timings": stages})
        log.info("reviewed %s: %s (%s)", model, verdict.summary(), _durations(stages))
        return verdict

    def warm_up(self) -> None:
        """Load what a review loads before the first delivery (the first verdict then is
        not the slowest): every scanner, on a sample corpus, the verification policy, and
        MLflow's artifact client. Nothing is published or tagged."""
        from donjon.scan.samples import write_samples

        try:
            self.registry.warm_up()
        except DonjonError as e:  # MLflow not up yet: the first delivery will find it
            log.warning("warm-up could not reach MLflow: %s", e)
        with tempfile.TemporaryDirectory(prefix="donjon-mlflow-warm-") as tmp:
            write_samples(Path(tmp) / "samples")
            try:
                review_folder(Path(tmp) / "samples", "models:/warm-up/0", self.settings.policy)
            except DonjonError as e:  # a warm-up only: the real reviews report their errors
                log.warning("warm-up review failed: %s", e)

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


def _durations(stages: dict[str, float]) -> str:
    """``started +0.01 s, fetched +0.40 s, ...``: each stage after the one before."""
    names = list(stages)
    return ", ".join(
        f"{after} +{stages[after] - stages[before]:.2f} s"
        for before, after in itertools.pairwise(names)
    )
