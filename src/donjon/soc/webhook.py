"""HMAC-signed webhook sink, and the check a receiver runs.

Body: a JSON object ``{"events": [...]}`` (OCSF, ECS or Donjon's own form).
Headers: ``X-Donjon-Timestamp`` (epoch seconds) and
``X-Donjon-Signature: sha256=<hex HMAC-SHA256(secret, timestamp + "." + body)>``.
A receiver rejects a bad signature or a timestamp outside its tolerance
(replays).
"""

from __future__ import annotations

import hashlib
import hmac
import json
import time
from collections.abc import Sequence
from typing import Any, Literal

from donjon.core.events import SecurityEvent
from donjon.errors import ExportError, VerificationError
from donjon.soc.ecs import to_ecs
from donjon.soc.http import HttpPoster
from donjon.soc.ocsf import to_ocsf

Format = Literal["ocsf", "ecs", "donjon"]
SIGNATURE_HEADER = "X-Donjon-Signature"
TIMESTAMP_HEADER = "X-Donjon-Timestamp"


def sign(secret: bytes, timestamp: str, body: bytes) -> str:
    digest = hmac.new(secret, timestamp.encode() + b"." + body, hashlib.sha256).hexdigest()
    return f"sha256={digest}"


def verify_signature(
    secret: bytes,
    body: bytes,
    timestamp: str,
    signature: str,
    *,
    tolerance: float = 300.0,
    now: float | None = None,
) -> None:
    """Raise VerificationError unless ``signature`` signs ``body`` at a fresh ``timestamp``."""
    try:
        sent = float(timestamp)
    except ValueError:
        raise VerificationError("webhook timestamp is not a number") from None
    if abs((now if now is not None else time.time()) - sent) > tolerance:
        raise VerificationError("webhook timestamp is outside the tolerance (replay?)")
    if not hmac.compare_digest(sign(secret, timestamp, body), signature):
        raise VerificationError("webhook signature does not match")


class WebhookSink:
    def __init__(
        self,
        url: str,
        secret: str,
        *,
        name: str = "webhook",
        fmt: Format = "ocsf",
        verify: bool | str = True,
        timeout: float = 10.0,
    ) -> None:
        if len(secret) < 16:
            raise ExportError("a webhook secret needs at least 16 characters")
        self.name = name
        self._secret = secret.encode()
        self._fmt: Format = fmt
        self._http = HttpPoster(
            url, {"Content-Type": "application/json"}, timeout=timeout, verify=verify
        )

    def _render(self, event: SecurityEvent) -> dict[str, Any]:
        if self._fmt == "ocsf":
            return to_ocsf(event)
        if self._fmt == "ecs":
            return to_ecs(event)
        return event.to_dict()

    def emit(self, event: SecurityEvent) -> None:
        self.emit_batch([event])

    def emit_batch(self, events: Sequence[SecurityEvent]) -> None:
        body = json.dumps(
            {"events": [self._render(e) for e in events]}, separators=(",", ":")
        ).encode("utf-8")
        timestamp = str(int(time.time()))
        headers = {
            TIMESTAMP_HEADER: timestamp,
            SIGNATURE_HEADER: sign(self._secret, timestamp, body),
        }
        self._http.post(body, headers)

    def close(self) -> None:
        self._http.close()
