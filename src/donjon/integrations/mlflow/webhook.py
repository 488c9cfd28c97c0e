"""MLflow webhook deliveries: signed with the shared secret, fresh, and never replayed.

MLflow (OSS, ``mlflow.webhooks.delivery``) sends each delivery with three headers:
``X-MLflow-Delivery-Id`` (a UUID), ``X-MLflow-Timestamp`` (Unix seconds) and
``X-MLflow-Signature: v1,<base64 HMAC-SHA256(secret, "{id}.{timestamp}.{body}")>``.
The body is ``{"entity", "action", "timestamp", "data"}``. A delivery is accepted
only when its signature matches (compared in constant time), its timestamp is
within the tolerance of now, and its id was not accepted before.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import threading
import time
from collections import OrderedDict
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from donjon.errors import AuthenticationError, InputError

SIGNATURE_HEADER = "x-mlflow-signature"
TIMESTAMP_HEADER = "x-mlflow-timestamp"
DELIVERY_HEADER = "x-mlflow-delivery-id"
SIGNATURE_VERSION = "v1"
MAX_BODY = 1 << 20  # MLflow's payloads are a few hundred bytes


class WebhookRejected(AuthenticationError):
    """A delivery without a valid signature, stale, or replayed: it is not processed."""


@dataclass(frozen=True, slots=True)
class Delivery:
    """One verified webhook delivery: ``model_version.created``, ``..._alias.created``..."""

    delivery_id: str
    entity: str
    action: str
    data: Mapping[str, Any]
    received: float = field(default_factory=time.time)  # epoch seconds, when it arrived

    @property
    def event(self) -> str:
        return f"{self.entity}.{self.action}"

    def field(self, name: str) -> str:
        """A string field of ``data`` (``name``, ``version``, ``alias``, ``key``...)."""
        value = self.data.get(name)
        if not isinstance(value, str) or not value:
            raise InputError(f"{self.event} delivery without a {name!r} string")
        return value


def signature(secret: str, delivery_id: str, timestamp: str, body: bytes) -> str:
    """The ``X-MLflow-Signature`` value MLflow computes for a delivery."""
    signed = f"{delivery_id}.{timestamp}.".encode() + body
    digest = hmac.new(secret.encode(), signed, hashlib.sha256).digest()
    return f"{SIGNATURE_VERSION},{base64.b64encode(digest).decode()}"


class DeliveryVerifier:
    """Checks deliveries against one secret; remembers accepted ids while they are fresh."""

    def __init__(
        self,
        secret: str,
        *,
        tolerance: float = 300.0,
        remember: int = 100_000,
        clock: Callable[[], float] = time.time,
    ) -> None:
        if not secret:
            raise InputError("an MLflow webhook secret is required (HMAC verification)")
        self._secret = secret
        self._tolerance = tolerance
        self._remember = remember
        self._clock = clock
        self._seen: OrderedDict[str, float] = OrderedDict()
        self._lock = threading.Lock()

    def __repr__(self) -> str:  # never show the secret
        return f"DeliveryVerifier(tolerance={self._tolerance})"

    def verify(self, headers: Mapping[str, str], body: bytes) -> Delivery:
        """The delivery, or :class:`WebhookRejected` (fail closed on anything missing)."""
        lowered = {k.lower(): v for k, v in headers.items()}
        delivery_id = lowered.get(DELIVERY_HEADER, "")
        stamp = lowered.get(TIMESTAMP_HEADER, "")
        given = lowered.get(SIGNATURE_HEADER, "")
        if not (delivery_id and stamp and given):
            raise WebhookRejected("unsigned delivery: MLflow signature headers missing")
        if len(body) > MAX_BODY:
            raise WebhookRejected(f"delivery body over {MAX_BODY} bytes")
        expected = signature(self._secret, delivery_id, stamp, body)
        if not hmac.compare_digest(given.encode(), expected.encode()):
            raise WebhookRejected("bad signature: not signed with this webhook's secret")
        try:
            sent = int(stamp)
        except ValueError as e:
            raise WebhookRejected(f"bad timestamp {stamp!r}") from e
        now = self._clock()
        if abs(now - sent) > self._tolerance:
            raise WebhookRejected(f"stale delivery: sent {int(now - sent)} s from now")
        delivery = parse(delivery_id, body)
        self._accept_once(delivery_id, now)
        return delivery

    def forget(self, delivery_id: str) -> None:
        """Let a delivery that was verified but not queued be accepted when it is retried."""
        with self._lock:
            self._seen.pop(delivery_id, None)

    def _accept_once(self, delivery_id: str, now: float) -> None:
        with self._lock:
            while self._seen and (
                next(iter(self._seen.values())) < now - 2 * self._tolerance
                or len(self._seen) >= self._remember
            ):
                self._seen.popitem(last=False)
            if delivery_id in self._seen:
                raise WebhookRejected(f"replayed delivery {delivery_id}")
            self._seen[delivery_id] = now


def parse(delivery_id: str, body: bytes) -> Delivery:
    try:
        document = json.loads(body)
    except (UnicodeDecodeError, ValueError) as e:
        raise InputError(f"delivery {delivery_id}: body is not JSON: {e}") from e
    if not isinstance(document, dict):
        raise InputError(f"delivery {delivery_id}: body is not a JSON object")
    entity, action, data = document.get("entity"), document.get("action"), document.get("data")
    if not isinstance(entity, str) or not isinstance(action, str) or not isinstance(data, dict):
        raise InputError(f"delivery {delivery_id}: expected entity, action and data")
    return Delivery(delivery_id, entity, action, data)
