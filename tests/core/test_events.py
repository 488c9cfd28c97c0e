from datetime import UTC, datetime

import pytest

from donjon.core import (
    Decision,
    Effect,
    EventKind,
    Outcome,
    Principal,
    PrincipalKind,
    SecurityEvent,
    Severity,
)
from tests.factories import finding

ALICE = Principal("alice", PrincipalKind.USER, "Alice", ("data-science",))


def test_finding_event_round_trips_through_json_form() -> None:
    event = SecurityEvent.of_finding(finding(), "scan", principal=ALICE, path="model.pkl")
    again = SecurityEvent.from_dict(event.to_dict())
    assert again == event
    assert again.finding is not None
    assert again.finding.fingerprint == finding().fingerprint
    assert dict(again.finding.evidence) == {"global": "os.system", "args": ["id"]}
    assert again.attributes["path"] == "model.pkl"
    assert again.kind is EventKind.FINDING
    assert again.severity is Severity.HIGH


def test_decision_events_grade_allows_and_denies() -> None:
    deny = Decision(Effect.DENY, ALICE, "model.deploy", "models/fraud-clf", ("no grant",))
    event = SecurityEvent.of_decision(deny, "authz")
    assert event.outcome is Outcome.FAILURE
    assert event.severity is Severity.LOW
    assert "alice denied model.deploy" in event.message
    assert SecurityEvent.from_dict(event.to_dict()) == event
    allow = SecurityEvent.of_decision(Decision(Effect.ALLOW, ALICE, "read", "x"), "authz")
    assert allow.outcome is Outcome.SUCCESS
    assert allow.severity is Severity.INFO


def test_events_have_unique_ids_and_aware_times() -> None:
    a = SecurityEvent(EventKind.ACTIVITY, "test", "test.ran", "ran")
    b = SecurityEvent(EventKind.ACTIVITY, "test", "test.ran", "ran")
    assert a.uid != b.uid
    assert a.time.tzinfo is not None
    with pytest.raises(ValueError, match="timezone-aware"):
        SecurityEvent(EventKind.ACTIVITY, "t", "t", "t", time=datetime(2026, 1, 1))


@pytest.mark.parametrize(
    "damage",
    [
        lambda d: d.pop("uid"),
        lambda d: d.update(kind="nonsense"),
        lambda d: d.update(schema=99),
        lambda d: d.update(severity="severe"),
        lambda d: d["finding"].pop("rule"),
    ],
)
def test_malformed_event_dicts_raise_value_error(damage: object) -> None:
    data = SecurityEvent.of_finding(
        finding(), "scan", time=datetime(2026, 1, 1, tzinfo=UTC)
    ).to_dict()
    damage(data)  # type: ignore[operator]
    with pytest.raises(ValueError):  # noqa: PT011 - any ValueError subclass will do
        SecurityEvent.from_dict(data)
