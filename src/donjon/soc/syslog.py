"""RFC 5424 syslog messages from one SecurityEvent, and their transports' framing.

``<PRI>1 TIMESTAMP HOSTNAME APP-NAME PROCID MSGID STRUCTURED-DATA MSG``. The
structured data is ``[donjon@<PEN> uid="..." kind="..." ...]`` when an IANA
private enterprise number is configured, else the NILVALUE ``-`` (an SD-ID
without ``@`` is reserved to IANA). MSG is the event as OCSF JSON, CEF or
plain text.
"""

from __future__ import annotations

import json
import os
import re
import socket
from typing import Literal

from donjon.core.events import SecurityEvent
from donjon.core.severity import Severity
from donjon.soc.cef import to_cef
from donjon.soc.ocsf import to_ocsf

Payload = Literal["ocsf", "cef", "text"]

NILVALUE = "-"
FACILITIES = {"kern": 0, "user": 1, "auth": 4, "authpriv": 10, "audit": 13, "local0": 16,
              "local1": 17, "local2": 18, "local3": 19, "local4": 20, "local5": 21,
              "local6": 22, "local7": 23}  # fmt: skip
SYSLOG_SEVERITY = {
    Severity.CRITICAL: 2,
    Severity.HIGH: 3,
    Severity.MEDIUM: 4,
    Severity.LOW: 5,
    Severity.INFO: 6,
}
_PRINTUSASCII = re.compile(r"[^\x21-\x7e]")
_SD_NAME = re.compile(r"[^\x21-\x7e]|[= \]\"]")


def _field(value: str, limit: int) -> str:
    cleaned = _PRINTUSASCII.sub("_", value)[:limit]
    return cleaned or NILVALUE


def escape_param(value: str) -> str:
    """PARAM-VALUE escaping: ``\\``, ``"`` and ``]``."""
    return value.replace("\\", "\\\\").replace('"', '\\"').replace("]", "\\]")


def structured_data(event: SecurityEvent, enterprise_number: int | None) -> str:
    if enterprise_number is None:
        return NILVALUE
    params = {
        "uid": event.uid,
        "kind": event.kind.value,
        "action": event.action,
        "severity": event.severity.label,
        "outcome": event.outcome.value,
    }
    principal = event.principal or (event.decision.principal if event.decision else None)
    if principal is not None:
        params["principal"] = principal.id
    if event.finding is not None:
        params["rule"] = event.finding.rule.id
        params["atlas"] = ",".join(event.finding.rule.atlas)
    body = " ".join(f'{_SD_NAME.sub("_", k)[:32]}="{escape_param(v)}"' for k, v in params.items())
    return f"[donjon@{enterprise_number} {body}]"


def message_text(event: SecurityEvent, payload: Payload) -> str:
    if payload == "ocsf":
        return json.dumps(to_ocsf(event), separators=(",", ":"), sort_keys=True)
    if payload == "cef":
        return to_cef(event)
    return f"{event.kind.value} {event.action}: {event.message}"


def format_syslog(
    event: SecurityEvent,
    *,
    payload: Payload = "ocsf",
    facility: str = "authpriv",
    hostname: str | None = None,
    app_name: str = "donjon",
    enterprise_number: int | None = None,
) -> str:
    """One RFC 5424 message (no framing, no trailing new line)."""
    pri = FACILITIES[facility] * 8 + SYSLOG_SEVERITY[event.severity]
    timestamp = event.time.isoformat(timespec="microseconds").replace("+00:00", "Z")
    header = " ".join(
        (
            f"<{pri}>1",
            timestamp,
            _field(hostname or socket.gethostname(), 255),
            _field(app_name, 48),
            _field(str(os.getpid()), 128),
            _field(event.kind.value, 32),
            structured_data(event, enterprise_number),
        )
    )
    text = message_text(event, payload).replace("\r", " ").replace("\n", " ")
    return f"{header} {text}"


def octet_frame(message: str) -> bytes:
    """RFC 6587 / 5425 octet counting: ``LEN SP MSG``."""
    data = message.encode("utf-8")
    return str(len(data)).encode() + b" " + data
