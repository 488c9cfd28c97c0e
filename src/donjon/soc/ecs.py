"""Elastic Common Schema (ECS 8.x) documents from one SecurityEvent."""

from __future__ import annotations

from typing import Any

from donjon.core.events import EventKind, Outcome, SecurityEvent
from donjon.soc.common import PRODUCT_VERSION, attacks_of, attr, resource_of

ECS_VERSION = "8.11.0"

# category -> type pairs from ECS's allowed values (tests/soc/test_ecs_categories.py);
# an access decision is iam/info with event.outcome saying whether it was allowed
_CATEGORY: dict[EventKind, tuple[list[str], list[str]]] = {
    EventKind.FINDING: (["intrusion_detection"], ["info"]),
    EventKind.ALERT: (["intrusion_detection"], ["info"]),
    EventKind.ACCESS: (["iam"], ["info"]),
    EventKind.AUTHENTICATION: (["authentication"], ["start"]),
    EventKind.ACCOUNT: (["iam"], ["user", "change"]),
    EventKind.PERMISSION: (["iam"], ["admin", "change"]),
    EventKind.DATA_ACCESS: (["database"], ["access"]),
    EventKind.AUDIT: (["configuration"], ["info"]),
    EventKind.ACTIVITY: (["configuration"], ["info"]),
}


def to_ecs(event: SecurityEvent) -> dict[str, Any]:
    """The ECS document of ``event``; ATLAS goes in ``threat.*`` with its framework name."""
    category, types = _CATEGORY[event.kind]
    types = list(types)
    if event.kind in (EventKind.ACCOUNT, EventKind.PERMISSION) and attr(event, "group"):
        types = ["group", "change"]  # a group created, or its membership changed
    alert = event.kind in (EventKind.FINDING, EventKind.ALERT) or (
        event.kind is EventKind.AUDIT and event.outcome is Outcome.FAILURE
    )
    doc: dict[str, Any] = {
        "@timestamp": event.time.isoformat().replace("+00:00", "Z"),
        "ecs": {"version": ECS_VERSION},
        "message": event.message,
        "event": {
            "id": event.uid,
            "kind": "alert" if alert else "event",
            "category": category,
            "type": types,
            "outcome": event.outcome.value,
            "action": event.action,
            "severity": int(event.severity),
            "provider": event.source,
            "module": "donjon",
            "dataset": f"donjon.{event.source}",
        },
        "observer": {"vendor": "Donjon", "product": "Donjon", "version": PRODUCT_VERSION},
        "labels": {"donjon_kind": event.kind.value},
    }
    principal = event.principal or (event.decision.principal if event.decision else None)
    if principal is not None:
        user: dict[str, Any] = {"id": principal.id, "name": principal.display_name or principal.id}
        if principal.groups:
            user["roles"] = list(principal.groups)
        doc["user"] = user
    target = attr(event, "target_user") or attr(event, "account")  # the changed account
    if target:
        doc.setdefault("user", {})["target"] = {"name": str(target)}
    if attr(event, "group"):
        doc.setdefault("group", {})["name"] = str(attr(event, "group"))
    if attr(event, "src_ip"):
        doc["source"] = {"ip": str(attr(event, "src_ip"))}
        if isinstance(attr(event, "src_port"), int):
            doc["source"]["port"] = attr(event, "src_port")
    resource = resource_of(event)
    if resource:
        doc["donjon"] = {"resource": resource}
    if isinstance(attr(event, "failures"), int):  # refusals one event sums up (the vault's)
        doc.setdefault("donjon", {})["failures"] = attr(event, "failures")
    if event.finding is not None:
        f = event.finding
        doc["rule"] = {
            "id": f.rule.id,
            "name": f.rule.title,
            "description": f.rule.description,
            "ruleset": "donjon",
        }
        doc.setdefault("donjon", {})["fingerprint"] = f.fingerprint
        attacks = attacks_of(event)
        if attacks:
            doc["threat"] = _threat(attacks)
    elif event.kind is EventKind.ALERT:
        doc["rule"] = {"id": str(attr(event, "metric") or event.action), "name": event.message}
    if event.decision is not None:  # ECS has no allowed / denied type for iam events
        doc.setdefault("donjon", {})["decision"] = "allowed" if event.decision.allowed else "denied"
    if event.decision is not None and event.decision.policy_ids:
        doc.setdefault("donjon", {})["policy_ids"] = list(event.decision.policy_ids)
    return doc


def _threat(attacks: list[Any]) -> dict[str, Any]:
    technique: dict[str, Any] = {
        "id": [a.technique_id for a in attacks],
        "name": [a.technique_name for a in attacks],
    }
    subs = [a for a in attacks if a.sub_id]
    if subs:
        technique["subtechnique"] = {
            "id": [a.sub_id for a in subs],
            "name": [a.sub_name for a in subs],
        }
    tactics = list(dict.fromkeys((a.tactic_id, a.tactic_name) for a in attacks))
    return {
        "framework": "MITRE ATLAS",
        "tactic": {"id": [t[0] for t in tactics], "name": [t[1] for t in tactics]},
        "technique": technique,
    }
