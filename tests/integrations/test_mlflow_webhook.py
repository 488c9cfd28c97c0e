"""Webhook deliveries are checked against the signature MLflow's own sender computes."""

from __future__ import annotations

import json

import pytest

from donjon.errors import InputError
from donjon.integrations.mlflow.webhook import DeliveryVerifier, WebhookRejected

delivery = pytest.importorskip("mlflow.webhooks.delivery")

SECRET = "s3cret"  # noqa: S105 - test value
NOW = 1_800_000_000


def _signed(body: bytes, delivery_id: str = "d-1", stamp: int = NOW) -> dict[str, str]:
    sig = delivery._generate_hmac_signature(SECRET, delivery_id, str(stamp), body.decode())
    return {
        "X-MLflow-Delivery-Id": delivery_id,
        "X-MLflow-Timestamp": str(stamp),
        "X-MLflow-Signature": sig,
    }


BODY = json.dumps(
    {
        "entity": "model_version",
        "action": "created",
        "timestamp": "2027-01-15T08:00:00+00:00",
        "data": {"name": "fraud", "version": "3", "source": "models:/m-1", "tags": {}},
    }
).encode()


def verifier(now: float = NOW) -> DeliveryVerifier:
    return DeliveryVerifier(SECRET, clock=lambda: now)


def test_a_delivery_signed_by_mlflow_is_accepted_once() -> None:
    check = verifier()
    got = check.verify(_signed(BODY), BODY)
    assert (got.event, got.field("name"), got.field("version")) == (
        "model_version.created",
        "fraud",
        "3",
    )
    with pytest.raises(WebhookRejected, match="replayed"):
        check.verify(_signed(BODY), BODY)
    check.forget("d-1")  # verified but not queued: MLflow's retry is let in
    assert check.verify(_signed(BODY), BODY).delivery_id == "d-1"


@pytest.mark.parametrize(
    ("headers", "body", "reason"),
    [
        ({}, BODY, "unsigned"),
        (_signed(BODY), BODY.replace(b"fraud", b"fraux"), "bad signature"),
        (_signed(BODY) | {"X-MLflow-Delivery-Id": "d-2"}, BODY, "bad signature"),
        (_signed(BODY, stamp=NOW - 301), BODY, "stale"),
        (_signed(BODY, stamp=NOW + 301), BODY, "stale"),
    ],
    ids=["unsigned", "body-altered", "id-swapped", "old", "future"],
)
def test_altered_unsigned_and_stale_deliveries_are_rejected(
    headers: dict[str, str], body: bytes, reason: str
) -> None:
    with pytest.raises(WebhookRejected, match=reason):
        verifier().verify(headers, body)


def test_a_signature_with_another_secret_is_rejected() -> None:
    with pytest.raises(WebhookRejected, match="bad signature"):
        DeliveryVerifier("other", clock=lambda: NOW).verify(_signed(BODY), BODY)


def test_a_signed_body_that_is_not_a_delivery_is_bad_input() -> None:
    with pytest.raises(InputError, match="expected entity"):
        verifier().verify(_signed(b"{}"), b"{}")
    with pytest.raises(InputError, match="not JSON"):
        verifier().verify(_signed(b"{"), b"{")


def test_no_secret_no_service() -> None:
    with pytest.raises(InputError, match="secret is required"):
        DeliveryVerifier("")
