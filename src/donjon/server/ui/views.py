"""What each console page shows, gathered from the registry and the ledger's events.

Listings go through :meth:`Registry.names` (authorised, recorded, and filtered
item by item by the policies), so a page shows only the datasets and models its
viewer may list; the records behind them are read from the registry's store.
"""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from donjon.core.events import SecurityEvent
from donjon.core.identity import Principal
from donjon.errors import AuditError, NotFound
from donjon.registry import Attachment, GateResult, Kind, Registry, Stage, Status, Version
from donjon.server.ui.events import Entry, EventIndex, day_before, summarise_findings
from donjon.server.ui.sigma import SigmaBoard

GATE_COLUMNS = ("scan", "lineage", "signature", "provenance", "evaluation")
_GATE_OF = {
    "scan": "scan",
    "clean-scan": "scan",
    "admitted-lineage": "lineage",
    "signature": "signature",
    "provenance": "provenance",
}
_BOUNDS_FAILED = ("is below", "is above", "was not recorded")
MAX_MODEL_ROWS = 500
SEVERITY_CHOICES = ("", "low", "medium", "high", "critical")


@dataclass(frozen=True)
class Sources:
    """What the console reads besides the registry (each may be missing)."""

    index: EventIndex | None = None
    ledger_head: Callable[[], tuple[int, str]] | None = None
    checkpoints: Callable[[], list[Mapping[str, Any]]] | None = None
    outbox_lag: Callable[[], dict[str, int]] | None = None
    entries: Callable[[int], Iterable[tuple[int, str, str, str]]] | None = None
    sigma: SigmaBoard | None = None


def event_detail(sources: Sources, seq: int) -> dict[str, Any]:
    """One ledger entry: its event as stored and in OCSF (what the SOC sinks receive)."""
    from donjon.soc.ocsf import to_ocsf

    for found, _prev, digest, body in sources.entries(seq) if sources.entries else ():
        if found != seq:
            break
        event = json.loads(body)["event"]
        ocsf = to_ocsf(SecurityEvent.from_dict(event))
        return {
            "seq": seq,
            "hash": digest,
            "event": json.dumps(event, indent=2, sort_keys=True),
            "ocsf": json.dumps(ocsf, indent=2, sort_keys=True),
        }
    raise NotFound(f"no ledger entry {seq}")


def gate_states(results: list[GateResult]) -> dict[str, str]:
    """Each gate column's latest verdict: ``pass``, ``fail`` or ``-`` (never run)."""
    states = dict.fromkeys(GATE_COLUMNS, "-")
    for result in sorted(results, key=lambda r: r.time.isoformat() if r.time else ""):
        column = _GATE_OF.get(result.gate)
        if column is None:
            continue
        states[column] = "pass" if result.passed else "fail"
        if column == "provenance":
            reasons = " ".join(result.reasons)
            if any(word in reasons for word in _BOUNDS_FAILED):
                states["evaluation"] = "fail"
            elif "within bounds" in reasons:
                states["evaluation"] = "pass"
    return states


@dataclass
class ModelRow:
    version: Version
    gates: dict[str, str]


def visible_names(registry: Registry, principal: Principal, kind: Kind) -> list[str]:
    return registry.names(principal, kind)


class Catalogue:
    """The versions and gate results of the names a viewer may list, read in bulk.

    A store with whole-kind reads (``kind_versions``, ``kind_gate_results``: the SQL
    store) answers in two queries; any other store is asked name by name.
    """

    def __init__(
        self,
        registry: Registry,
        kind: Kind,
        names: list[str],
        known: list[Version] | None = None,
    ) -> None:
        self.registry, self.kind, self.names = registry, kind, names
        store: Any = registry.store
        if known is None:
            if hasattr(store, "kind_versions"):
                wanted = set(names)
                rows = [r for r in store.kind_versions(kind.value) if r["name"] in wanted]
            else:
                rows = [r for n in names for r in store.versions(kind.value, n)]
            known = [Version.from_row(row) for row in rows]
        self.versions: dict[str, list[Version]] = {n: [] for n in names}
        for version in known:
            self.versions[version.name].append(version)
        self._gates: dict[tuple[str, int], list[dict[str, Any]]] | None = None

    def gates(self, version: Version) -> dict[str, str]:
        store: Any = self.registry.store
        if self._gates is None and hasattr(store, "kind_gate_results"):
            self._gates = store.kind_gate_results(self.kind.value)  # once, on first use
        if self._gates is not None:
            rows = self._gates.get((version.name, version.number), [])
        else:
            rows = self.registry.store.gate_results(
                version.kind.value, version.name, version.number
            )
        return gate_states([GateResult.from_row(r) for r in rows])

    def with_status(self, status: Status) -> list[Version]:
        return [v for vs in self.versions.values() for v in vs if v.status is status]


def models_by_stage(registry: Registry, principal: Principal) -> dict[str, list[ModelRow]]:
    """Per stage, the newest version of each model in it, with its gates' states."""
    rows: dict[str, list[ModelRow]] = {s.value: [] for s in reversed(Stage)}
    catalogue = Catalogue(registry, Kind.MODEL, visible_names(registry, principal, Kind.MODEL))
    count = 0
    for versions in catalogue.versions.values():
        newest: dict[str, Version] = {}
        for version in versions:  # numbers ascend: the last of each stage wins
            if version.status is not Status.TOMBSTONED:
                newest[(version.stage or Stage.DEV).value] = version
        for stage, version in newest.items():
            if count < MAX_MODEL_ROWS:
                rows[stage].append(ModelRow(version, catalogue.gates(version)))
                count += 1
    return rows


def posture(
    registry: Registry, principal: Principal, sources: Sources, now: datetime
) -> dict[str, Any]:
    index = sources.index
    findings = index.finding_summary() if index else summarise_findings([])
    alerts = index.since(day_before(now), "alert") if index else []
    return {
        "stages": models_by_stage(registry, principal),
        "gate_columns": GATE_COLUMNS,
        "findings": findings,
        "since_seq": index.first_seq if index else 1,
        "alerts": alerts[:50],
        "alert_count": len(alerts),
        "ledger": ledger_status(sources),
        "lag": sources.outbox_lag() if sources.outbox_lag else None,
    }


def sigma_rules(sources: Sources) -> dict[str, Any] | None:
    """The shipped Sigma rules and how often each fired on the ledger's events."""
    if sources.sigma is None:
        return None
    sources.sigma.refresh()
    return sources.sigma.view()


def ledger_status(sources: Sources) -> dict[str, Any]:
    try:
        head = sources.ledger_head() if sources.ledger_head else None
    except AuditError as e:  # shown, not hidden: a missing head row is what verify reports
        return {"enabled": True, "error": str(e)}
    checkpoints = sources.checkpoints() if sources.checkpoints else []
    verification = sources.index.last_verification if sources.index else None
    return {
        "enabled": head is not None,
        "head": head[0] if head else None,
        "last_checkpoint": checkpoints[-1] if checkpoints else None,
        "checkpoints": len(checkpoints),
        "last_verification": verification,
    }


def attachments_of(
    registry: Registry, principal: Principal, kind: Kind, versions: list[Version]
) -> dict[int, list[Attachment]]:
    """What the attachments API answers for ``versions`` of one name, on ``<kind>.read``."""
    found: dict[int, list[Attachment]] = {}
    if versions:
        name = versions[0].name
        registry.authorize(principal, f"{kind.value}.read", f"{kind.value}s/{name}")
        for v in versions:
            rows = registry.store.attachments(kind.value, name, v.number)
            found[v.number] = [Attachment.from_row(row) for row in rows]
    return found


@dataclass
class ModelDetail:
    name: str
    versions: list[ModelRow]
    attachments: dict[int, list[Attachment]]
    findings: list[Entry]
    promotions: list[Entry]
    lineage: list[tuple[str, str]] = field(default_factory=list)  # (dataset ref, model ref)


def model_detail(
    registry: Registry, principal: Principal, name: str, sources: Sources
) -> ModelDetail:
    versions = registry.versions(principal, Kind.MODEL, name)  # authorised: model.list
    catalogue = Catalogue(registry, Kind.MODEL, [name], versions)
    rows = [ModelRow(v, catalogue.gates(v)) for v in reversed(versions)]
    attachments = attachments_of(registry, principal, Kind.MODEL, versions[-5:])
    findings: list[Entry] = []
    promotions: list[Entry] = []
    resource = f"models/{name}"
    if sources.index is not None:
        for entry in sources.index.entries():
            if entry.kind == "finding":
                if entry.model == name:
                    findings.append(entry)
            elif entry.action == "model.promote":
                subject = entry.subject()
                if subject == resource or subject.startswith(resource + "@"):
                    promotions.append(entry)
    lineage = [(str(ref), f"{name}@{v.number}") for v in versions for ref in v.lineage]
    return ModelDetail(name, rows, attachments, findings[:200], promotions[:200], lineage)


def gateway(sources: Sources, now: datetime) -> dict[str, Any]:
    """Events, blocks and detections per model, detections per hour of the last day, and
    the principals with most detections."""
    start = day_before(now).replace(minute=0, second=0, microsecond=0)
    hourly: dict[str, int] = {
        (start + timedelta(hours=h)).strftime("%H:00"): 0 for h in range(1, 25)
    }
    per_model: dict[str, Counter[str]] = {}
    principals: Counter[str] = Counter()
    rules: dict[str, Counter[str]] = {}
    if sources.index is not None:
        for entry in sources.index.entries():
            if entry.source != "gateway":
                continue
            counts = per_model.setdefault(entry.model or "(no model)", Counter())
            counts["events"] += 1
            if entry.refused:
                counts["blocked"] += 1
            if entry.kind == "finding":
                counts["detections"] += 1
                if entry.time > start:
                    hour = entry.time.astimezone(now.tzinfo).strftime("%H:00")
                    hourly[hour] = hourly.get(hour, 0) + 1
                principals[entry.principal or "(anonymous)"] += 1
                rules.setdefault(entry.principal or "(anonymous)", Counter())[entry.rule] += 1
    return {
        "per_model": dict(sorted(per_model.items())),
        "hourly": hourly,
        "principals": principals.most_common(20),
        "rules": rules,
    }
