"""OCSF 1.8.0 events from one SecurityEvent.

| event kind | OCSF class |
|---|---|
| FINDING, ALERT, AUDIT that failed | Detection Finding 2004 (ATLAS in ``finding_info.attacks``) |
| ACCESS | API Activity 6003 with ``actor.authorizations[].decision`` |
| DATA_ACCESS | Datastore Activity 6005 |
| ACCOUNT | Account Change 3001 (``user`` the changed account, ``actor`` who changed it) |
| PERMISSION | User Access Management 3005 |
| ACCOUNT, PERMISSION about a ``group`` | Group Management 3006 (``group``, ``user``) |
| AUTHENTICATION | Authentication 3002 |
| AUDIT (passed), ACTIVITY | API Activity 6003 (``activity_id`` 99 Other) |
"""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

from donjon.core.events import EventKind, Outcome, SecurityEvent
from donjon.core.findings import Finding
from donjon.core.identity import Principal, PrincipalKind
from donjon.soc.common import (
    ATLAS_MATRIX,
    PRODUCT,
    PRODUCT_VERSION,
    VENDOR,
    attacks_of,
    attr,
    epoch_ms,
    resource_of,
    verb_of,
)

OCSF_VERSION = "1.8.0"

DETECTION_FINDING = 2004
API_ACTIVITY = 6003
DATASTORE_ACTIVITY = 6005
ACCOUNT_CHANGE = 3001
AUTHENTICATION = 3002
USER_ACCESS = 3005
GROUP_MANAGEMENT = 3006

_OTHER = 99
_API_VERBS = {"create": 1, "write": 1, "push": 1, "upload": 1, "read": 2, "get": 2, "list": 2,
              "infer": 2, "predict": 2, "download": 2, "update": 3, "promote": 3, "deploy": 3,
              "sign": 3, "delete": 4}  # fmt: skip
_DATASTORE_VERBS = {"read": 1, "get": 1, "download": 1, "update": 2, "write": 2, "connect": 3,
                    "query": 4, "create": 5, "upload": 5, "delete": 6, "list": 8}  # fmt: skip
_ACCOUNT_VERBS = {"create": 1, "enable": 2, "password_change": 3, "password_reset": 4,
                  "disable": 5, "delete": 6, "revoke": 6, "attach_policy": 7,
                  "detach_policy": 8, "lock": 9, "unlock": 12}  # fmt: skip
_AUTH_VERBS = {"logon": 1, "login": 1, "authenticate": 1, "token": 1, "logoff": 2,
               "logout": 2}  # fmt: skip
_ACCESS_VERBS = {"grant": 1, "assign": 1, "revoke": 2, "remove": 2}
_GROUP_VERBS = {"add_member": 3, "remove_member": 4, "delete": 5, "create": 6}


def to_ocsf(event: SecurityEvent) -> dict[str, Any]:
    """The OCSF 1.8.0 form of ``event`` (one class per event kind, see the module doc)."""
    builder = _BUILDERS.get(event.kind, _api_activity)
    if event.kind is EventKind.AUDIT and event.outcome is Outcome.FAILURE:
        builder = _detection_finding
    return builder(event)


def class_of(event: SecurityEvent) -> int:
    return int(to_ocsf(event)["class_uid"])


def _base(event: SecurityEvent, class_uid: int, activity_id: int) -> dict[str, Any]:
    out: dict[str, Any] = {
        "class_uid": class_uid,
        "category_uid": class_uid // 1000,
        "activity_id": activity_id,
        "type_uid": class_uid * 100 + activity_id,
        "severity_id": event.severity.ocsf_id,
        "severity": event.severity.ocsf_name,
        "time": epoch_ms(event.time),
        "message": event.message,
        "metadata": {
            "version": OCSF_VERSION,
            "uid": event.uid,
            "log_name": event.source,
            "product": {"name": PRODUCT, "vendor_name": VENDOR, "version": PRODUCT_VERSION},
            "labels": [f"donjon.kind:{event.kind.value}", f"donjon.action:{event.action}"],
        },
    }
    if event.outcome is not Outcome.UNKNOWN:
        out["status_id"] = 1 if event.outcome is Outcome.SUCCESS else 2
        out["status"] = event.outcome.value.capitalize()
    if event.attributes:  # Donjon's own facts (``signed``, ``latency_ms``...) stay searchable
        out["unmapped"] = json.loads(json.dumps(dict(event.attributes), default=str))
    return out


def _user(principal: Principal | None, fallback: str | None = None) -> dict[str, Any]:
    if principal is None:
        return {"name": fallback or "unknown"}
    user: dict[str, Any] = {"uid": principal.id, "name": principal.display_name or principal.id}
    user["type_id"] = {PrincipalKind.USER: 1, PrincipalKind.SERVICE: 99}.get(principal.kind, 0)
    if principal.kind is PrincipalKind.SERVICE:
        user["type"] = "Service"
    if principal.groups:
        user["groups"] = [{"name": g} for g in principal.groups]
    return user


def _actor(event: SecurityEvent) -> dict[str, Any]:
    if event.principal is None and event.decision is None:
        return {"app_name": event.source}
    principal = event.principal or (event.decision.principal if event.decision else None)
    return {"user": _user(principal), "app_name": event.source}


def _endpoint(event: SecurityEvent) -> dict[str, Any]:
    endpoint: dict[str, Any] = {}
    if attr(event, "src_ip"):
        endpoint["ip"] = str(attr(event, "src_ip"))
    if isinstance(attr(event, "src_port"), int):
        endpoint["port"] = attr(event, "src_port")
    endpoint["hostname"] = str(attr(event, "hostname") or "localhost")
    return endpoint


def _activity(verbs: dict[str, int], event: SecurityEvent) -> int:
    explicit = attr(event, "activity")
    return verbs.get(str(explicit or verb_of(event.action)), _OTHER)


def _resources_of_finding(f: Finding) -> list[dict[str, Any]]:
    s = f.subject
    out: list[dict[str, Any]] = []
    if s.artifact is not None:
        a = s.artifact
        item: dict[str, Any] = {"uid": str(a.digest) if a.digest else a.uri, "name": a.uri}
        item["type"] = a.kind
        if a.version:
            item["version"] = a.version
        out.append(item)
    for name, value in (("ml_model", s.model), ("dataset", s.dataset), ("endpoint", s.endpoint)):
        if value:
            out.append({"name": value, "type": name})
    return out


def _detection_finding(event: SecurityEvent) -> dict[str, Any]:
    out = _base(event, DETECTION_FINDING, 1)
    out["status_id"] = 1  # finding lifecycle: New
    out["status"] = "New"
    out["is_alert"] = event.severity >= 4 or event.kind is EventKind.ALERT
    f = event.finding
    info: dict[str, Any] = {"uid": event.uid, "title": event.message}
    if f is not None:
        rule = f.rule
        info.update(
            uid=f.fingerprint,
            title=rule.title,
            desc=rule.description,
            types=[f"donjon.{rule.family.lower()}"],
            analytic={"type_id": 1, "type": "Rule", "name": rule.title, "uid": rule.id},
        )
        attacks = [_attack(a) for a in attacks_of(event)]
        if attacks:
            info["attacks"] = attacks
        out["remediation"] = {"desc": rule.remediation}
        resources = _resources_of_finding(f)
        if resources:
            out["resources"] = resources
        out.setdefault("unmapped", {}).update(
            {
                "location": f.location.key(),
                "evidence": dict(f.evidence),
                "owasp": list(rule.owasp),
                "mitigations": list(rule.mitigations),
            }
        )
    elif event.kind is EventKind.ALERT:
        metric = str(attr(event, "metric") or event.action)
        info.update(
            types=["donjon.monitor"],
            analytic={"type_id": 3, "type": "Statistical", "name": metric, "uid": metric},
        )
        out["unmapped"] = {
            k: event.attributes[k]
            for k in ("value", "low", "high", "trend")
            if k in event.attributes
        }
    else:
        info.update(
            types=[f"donjon.{event.kind.value}"],
            analytic={"type_id": 1, "type": "Rule", "name": event.action, "uid": event.action},
        )
    out["finding_info"] = info
    evidence: dict[str, Any] = {}
    if event.principal is not None:
        evidence["actor"] = _actor(event)
    if attr(event, "src_ip"):  # who sent it, authenticated or not
        evidence["src_endpoint"] = _endpoint(event)
    if evidence:
        out["evidences"] = [evidence]
    return out


def _attack(a: Any) -> dict[str, Any]:
    attack: dict[str, Any] = {
        "version": ATLAS_MATRIX,
        "tactic": {"uid": a.tactic_id, "name": a.tactic_name},
        "technique": {"uid": a.technique_id, "name": a.technique_name},
    }
    if a.sub_id:
        attack["sub_technique"] = {"uid": a.sub_id, "name": a.sub_name}
    return attack


def _api_activity(event: SecurityEvent) -> dict[str, Any]:
    activity = _activity(_API_VERBS, event) if event.kind is EventKind.ACCESS else _OTHER
    out = _base(event, API_ACTIVITY, activity)
    actor = _actor(event)
    d = event.decision
    if d is not None:
        auth: dict[str, Any] = {"decision": "allowed" if d.allowed else "denied"}
        if d.policy_ids:
            auth["policy"] = {"uid": ",".join(d.policy_ids), "name": ",".join(d.policy_ids)}
        if d.reasons:
            auth.setdefault("policy", {"name": "deny-by-default"})["desc"] = "; ".join(d.reasons)
        actor["authorizations"] = [auth]
    out["actor"] = actor
    out["api"] = {"operation": event.action, "service": {"name": event.source}}
    out["src_endpoint"] = _endpoint(event)
    resource = resource_of(event)
    if resource:
        out["resources"] = [{"uid": resource, "name": resource}]
    return out


def _datastore_activity(event: SecurityEvent) -> dict[str, Any]:
    out = _base(event, DATASTORE_ACTIVITY, _activity(_DATASTORE_VERBS, event))
    out["actor"] = _actor(event)
    out["src_endpoint"] = _endpoint(event)
    name = resource_of(event) or "unknown"
    out["type_id"] = 2
    out["type"] = "Databucket"
    out["databucket"] = {"type_id": 99, "type": "dataset", "name": name, "uid": name}
    return out


def _account_change(event: SecurityEvent) -> dict[str, Any]:
    if attr(event, "group"):
        return _group_management(event)
    out = _base(event, ACCOUNT_CHANGE, _activity(_ACCOUNT_VERBS, event))
    out["user"] = _target(event)
    out["actor"] = _actor(event)
    return out


def _group_management(event: SecurityEvent) -> dict[str, Any]:
    """A group created or deleted, or an account added to or removed from it (3006)."""
    out = _base(event, GROUP_MANAGEMENT, _activity(_GROUP_VERBS, event))
    group = str(attr(event, "group"))
    out["group"] = {"uid": group, "name": group}
    if attr(event, "account") or attr(event, "target_user"):
        out["user"] = _target(event)
    out["actor"] = _actor(event)
    return out


def _user_access(event: SecurityEvent) -> dict[str, Any]:
    if attr(event, "group"):
        return _group_management(event)
    out = _base(event, USER_ACCESS, _activity(_ACCESS_VERBS, event))
    out["user"] = _target(event)
    out["actor"] = _actor(event)
    privileges = attr(event, "privileges") or [event.action]
    out["privileges"] = [str(p) for p in privileges]
    resource = resource_of(event)
    if resource:
        out["resources"] = [{"uid": resource, "name": resource}]
    return out


def _authentication(event: SecurityEvent) -> dict[str, Any]:
    out = _base(event, AUTHENTICATION, _activity(_AUTH_VERBS, event))
    out["user"] = _user(event.principal, str(attr(event, "target_user") or "unknown"))
    out["service"] = {"name": str(attr(event, "service") or event.source)}
    out["src_endpoint"] = _endpoint(event)
    return out


def _target(event: SecurityEvent) -> dict[str, Any]:
    """The account the event changed (``target_user``, or ``account`` as the identity
    store writes it); the principal that changed it is the actor."""
    target = attr(event, "target_user") or attr(event, "account")
    if target:
        return {"uid": str(target), "name": str(target)}
    return _user(event.principal)


_BUILDERS: dict[EventKind, Callable[[SecurityEvent], dict[str, Any]]] = {
    EventKind.FINDING: _detection_finding,
    EventKind.ALERT: _detection_finding,
    EventKind.ACCESS: _api_activity,
    EventKind.DATA_ACCESS: _datastore_activity,
    EventKind.ACCOUNT: _account_change,
    EventKind.PERMISSION: _user_access,
    EventKind.AUTHENTICATION: _authentication,
    EventKind.AUDIT: _api_activity,
    EventKind.ACTIVITY: _api_activity,
}
