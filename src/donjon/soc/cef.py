"""ArcSight CEF:0 lines from one SecurityEvent.

``CEF:0|Vendor|Product|Version|Signature ID|Name|Severity|Extension``. Header
fields escape ``\\`` and ``|``; extension values escape ``\\`` and ``=`` and
write new lines as ``\\n`` / ``\\r``. Severity is 0-10.
"""

from __future__ import annotations

from donjon.core.events import SecurityEvent
from donjon.core.severity import Severity
from donjon.soc.common import PRODUCT, PRODUCT_VERSION, VENDOR, attacks_of, attr, epoch_ms
from donjon.soc.common import resource_of as _resource

CEF_SEVERITY = {
    Severity.INFO: 1,
    Severity.LOW: 3,
    Severity.MEDIUM: 5,
    Severity.HIGH: 8,
    Severity.CRITICAL: 10,
}


def escape_header(value: str) -> str:
    flat = value.replace("\r", " ").replace("\n", " ")
    return flat.replace("\\", "\\\\").replace("|", "\\|")


def escape_extension(value: str) -> str:
    return (
        value.replace("\\", "\\\\")
        .replace("=", "\\=")
        .replace("\r\n", "\\n")
        .replace("\n", "\\n")
        .replace("\r", "\\r")
    )


def signature_id(event: SecurityEvent) -> str:
    return event.finding.rule.id if event.finding is not None else event.action


def to_cef(event: SecurityEvent) -> str:
    """One CEF:0 line (no trailing new line)."""
    name = event.finding.rule.title if event.finding is not None else event.message
    header = [
        "CEF:0",
        escape_header(VENDOR),
        escape_header(PRODUCT),
        escape_header(PRODUCT_VERSION),
        escape_header(signature_id(event)),
        escape_header(name),
        str(CEF_SEVERITY[event.severity]),
    ]
    ext: list[tuple[str, str]] = [
        ("rt", str(epoch_ms(event.time))),
        ("externalId", event.uid),
        ("cat", event.kind.value),
        ("act", event.action),
        ("outcome", event.outcome.value),
        ("msg", event.message),
        ("deviceProcessName", event.source),
    ]
    principal = event.principal or (event.decision.principal if event.decision else None)
    if principal is not None:
        ext.append(("suser", principal.id))
    if attr(event, "target_user"):
        ext.append(("duser", str(attr(event, "target_user"))))
    if attr(event, "src_ip"):
        ext.append(("src", str(attr(event, "src_ip"))))
    if isinstance(attr(event, "src_port"), int):
        ext.append(("spt", str(attr(event, "src_port"))))
    resource = _resource(event)
    if resource:
        ext.append(("request", resource))
    if event.decision is not None:
        ext.append(("reason", "; ".join(event.decision.reasons) or event.decision.effect.value))
    if event.finding is not None:
        f = event.finding
        techniques = [a.sub_id or a.technique_id for a in attacks_of(event)]
        ext += [("cs1Label", "atlasTechniques"), ("cs1", ",".join(techniques))]
        ext += [("cs2Label", "owasp"), ("cs2", ",".join(f.rule.owasp))]
        ext += [("cs3Label", "fingerprint"), ("cs3", f.fingerprint)]
        if f.subject.artifact is not None:
            ext.append(("fname", f.subject.artifact.uri))
            if f.subject.artifact.digest is not None:
                ext.append(("fileHash", str(f.subject.artifact.digest)))
    extension = " ".join(f"{key}={escape_extension(value)}" for key, value in ext)
    return "|".join(header) + "|" + extension
