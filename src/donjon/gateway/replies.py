"""The gateway's own answers: refusals as JSON errors, and request ids."""

from __future__ import annotations

import json
import random
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from donjon.gateway.detectors import Action

# any printable ASCII id up to 128 characters is kept (correlation ids carry ':' and '/');
# no spaces, so that it cannot forge fields of the key=value request log
_REQUEST_ID = re.compile(r"^[\x21-\x7e]{1,128}$")
REQUEST_ID_HEADER = "x-request-id"
_ids = random.Random()  # noqa: S311 - request ids are not secrets


@dataclass(frozen=True)
class Reply:
    """An answer the gateway gives itself (a refusal), JSON-encoded by the caller."""

    status: int
    code: str
    message: str
    request_id: str
    headers: Mapping[str, str] = field(default_factory=dict)
    rule: str | None = None

    def body(self) -> dict[str, Any]:
        error: dict[str, Any] = {
            "code": self.code,
            "message": self.message,
            "request_id": self.request_id,
        }
        if self.rule:
            error["rule"] = self.rule
        return {"error": error}


def detector_reply(rule_id: str, action: Action, request_id: str) -> Reply:
    if action is Action.THROTTLE:
        return Reply(
            429,
            "throttled",
            "requests from this principal are throttled",
            request_id,
            {"retry-after": "60"},
            rule_id,
        )
    return Reply(
        403, "blocked", "request refused by the inference firewall", request_id, rule=rule_id
    )


def request_id_of(headers: Mapping[str, str]) -> str:
    given = headers.get(REQUEST_ID_HEADER)
    if given and _REQUEST_ID.match(given := given.strip()):
        return given
    # a correlation id, not a secret: no system call per request
    return f"{_ids.getrandbits(128):032x}"


def encode(doc: dict[str, Any]) -> bytes:

    return json.dumps(doc, separators=(",", ":")).encode()
