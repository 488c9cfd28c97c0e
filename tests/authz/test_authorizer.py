"""Cedar authorisation: the full matrix of the example policy, deny by default, fail closed."""

from __future__ import annotations

import itertools
from typing import Any

import pytest

from donjon.authz import ACTIONS, CedarAuthorizer, PolicyError, load_policies
from donjon.core import Effect, Principal, PrincipalKind, SecurityEvent
from donjon.core.events import EventKind
from donjon.errors import AuditError
from tests.authz.example import EXAMPLE_POLICY, expected

PRINCIPALS = [
    Principal("alice", PrincipalKind.USER, groups=("analysts",)),
    Principal("bob", PrincipalKind.USER, groups=("ml-engineers",)),
    Principal("carol", PrincipalKind.USER, groups=("contractors", "ml-engineers")),
    Principal("dave", PrincipalKind.USER),
    Principal("ci-bot", PrincipalKind.SERVICE),
    Principal("alice", PrincipalKind.SERVICE),  # same id, other type: not alice the user
]
RESOURCES = [
    "datasets/fraud",
    "datasets/fraud/transactions",
    "datasets/fraud/2026/q1",
    "datasets/fraud/pii",
    "datasets/fraud/pii/cards",
    "datasets/fraudulent/x",
    "datasets/marketing/clicks",
    "models/fraud-clf",
    "models/fraud-clf@3",
    "models/fraud-clf-v2",
    "models/churn",
    "system",
]
CONTEXTS: list[dict[str, Any]] = [
    {},
    {"stage": "prod", "signed": True},
    {"stage": "prod", "signed": False},
    {"stage": "dev", "signed": True},
    {"stage": "prod"},
]


@pytest.fixture(scope="module")
def authorizer() -> CedarAuthorizer:
    return CedarAuthorizer(load_policies(EXAMPLE_POLICY, "example.cedar"))


@pytest.mark.parametrize("principal", PRINCIPALS, ids=str)
def test_every_cell_of_the_matrix(authorizer: CedarAuthorizer, principal: Principal) -> None:
    wrong = []
    cells = 0
    for action, resource, context in itertools.product(ACTIONS, RESOURCES, CONTEXTS):
        decision = authorizer.authorize(principal, action, resource, context)
        want = expected(str(principal), principal.groups, action, resource, context)
        cells += 1
        if decision.allowed != want:
            wrong.append((action, resource, context, decision.reasons))
        assert decision.reasons, "every decision says why"
        if decision.allowed:
            assert decision.policy_ids, "an allow names the policy that permitted it"
    assert cells == len(ACTIONS) * len(RESOURCES) * len(CONTEXTS)
    assert not wrong, f"{len(wrong)} wrong cells, e.g. {wrong[:3]}"


def test_matrix_has_both_outcomes(authorizer: CedarAuthorizer) -> None:
    alice = PRINCIPALS[0]
    allowed = authorizer.authorize(alice, "dataset.read", "datasets/fraud/transactions")
    assert allowed.effect is Effect.ALLOW
    assert allowed.policy_ids == ("alice-reads-fraud",)
    assert "example.cedar:3" in allowed.reasons[0]
    pii = authorizer.authorize(alice, "dataset.read", "datasets/fraud/pii/cards")
    assert pii.effect is Effect.DENY
    assert pii.policy_ids == ("no-fraud-pii-for-alice",)
    assert pii.reasons[0].startswith("forbidden by no-fraud-pii-for-alice")


def test_forbid_overrides_permit() -> None:
    policies = load_policies(
        "permit (principal, action, resource);\n"
        '@id("no-writes") forbid (principal, action == Action::"dataset.write", resource);'
    )
    authorizer = CedarAuthorizer(policies)
    who = Principal("x")
    assert authorizer.authorize(who, "dataset.read", "datasets/a").allowed
    denied = authorizer.authorize(who, "dataset.write", "datasets/a")
    assert not denied.allowed
    assert denied.policy_ids == ("no-writes",)


def test_deny_by_default_with_no_policies() -> None:
    authorizer = CedarAuthorizer(load_policies(""))
    for principal, action, resource in itertools.product(PRINCIPALS, ACTIONS, RESOURCES):
        decision = authorizer.authorize(principal, action, resource)
        assert not decision.allowed
        assert decision.policy_ids == ()
        assert decision.reasons == ("no policy permits this request (deny by default)",)


@pytest.mark.parametrize(
    ("principal", "action", "resource", "context", "reason"),
    [
        (Principal.anonymous(), "dataset.read", "datasets/fraud/t", {}, "anonymous"),
        (Principal("g", PrincipalKind.GROUP), "dataset.read", "datasets/fraud/t", {}, "group"),
        (PRINCIPALS[0], "dataset.steal", "datasets/fraud/t", {}, "unknown action"),
        (PRINCIPALS[0], "dataset.read", "datasets/fraud/../pii", {}, "bad resource"),
        (PRINCIPALS[0], "dataset.read", "datasets/fraud/.hidden", {}, "bad resource"),
        (PRINCIPALS[0], "dataset.read", "datasets//fraud", {}, "bad resource"),
        (PRINCIPALS[0], "dataset.read", "datasets@3", {}, "only a named dataset"),
        (PRINCIPALS[0], "dataset.read", "/datasets/fraud/t", {}, "bad resource"),
        (PRINCIPALS[0], "dataset.read", "datasets/fraud/t", {"admin": True}, "unknown context"),
        (PRINCIPALS[0], "model.deploy", "models/fraud-clf", {"signed": "yes"}, "must be a bool"),
    ],
)
def test_bad_requests_are_denied_with_a_reason(
    authorizer: CedarAuthorizer,
    principal: Principal,
    action: str,
    resource: str,
    context: dict[str, Any],
    reason: str,
) -> None:
    decision = authorizer.authorize(principal, action, resource, context)
    assert not decision.allowed
    assert reason in decision.reasons[0]


def test_a_token_scope_narrows_but_never_widens(authorizer: CedarAuthorizer) -> None:
    scoped = Principal("alice", groups=("analysts",), scopes=frozenset({"dataset.list"}))
    denied = authorizer.authorize(scoped, "dataset.read", "datasets/fraud/t")
    assert not denied.allowed
    assert "scopes (dataset.list) exclude dataset.read" in denied.reasons[0]
    assert authorizer.authorize(scoped, "dataset.list", "datasets/fraud/t").allowed
    wide = Principal("dave", scopes=frozenset({"*"}))
    assert not authorizer.authorize(wide, "dataset.read", "datasets/fraud/t").allowed
    family = Principal("alice", scopes=frozenset({"dataset.*"}))
    assert authorizer.authorize(family, "dataset.read", "datasets/fraud/t").allowed


def test_every_decision_is_published(authorizer: CedarAuthorizer) -> None:
    events: list[SecurityEvent] = []
    publishing = CedarAuthorizer(authorizer.policies, publish=events.append)
    publishing.authorize(PRINCIPALS[0], "dataset.read", "datasets/fraud/t")
    publishing.authorize(PRINCIPALS[0], "dataset.read", "datasets/fraud/pii")
    publishing.authorize(PRINCIPALS[0], "dataset.read", "not a path")
    assert [e.kind for e in events] == [EventKind.ACCESS] * 3
    assert [e.decision.allowed for e in events if e.decision] == [True, False, False]
    assert events[1].decision is not None
    assert events[1].decision.policy_ids == ("no-fraud-pii-for-alice",)


def test_an_unrecordable_decision_is_denied(authorizer: CedarAuthorizer) -> None:
    def broken(event: SecurityEvent) -> None:
        raise AuditError("ledger is down")

    failing = CedarAuthorizer(authorizer.policies, publish=broken)
    decision = failing.authorize(PRINCIPALS[0], "dataset.read", "datasets/fraud/t")
    assert not decision.allowed
    assert decision.reasons == ("the decision could not be recorded",)


def test_who_can_lists_exactly_the_allowed(authorizer: CedarAuthorizer) -> None:
    allowed = authorizer.who_can(PRINCIPALS, "dataset.read", "datasets/fraud/pii/cards")
    assert [str(d.principal) for d in allowed] == ["user:bob"]
    deploy = authorizer.who_can(
        PRINCIPALS, "model.deploy", "models/fraud-clf@3", {"stage": "prod", "signed": True}
    )
    assert [str(d.principal) for d in deploy] == ["user:alice"]


def test_malformed_policy_names_the_line() -> None:
    text = EXAMPLE_POLICY + '\n@id("broken")\npermit (principal, action, resource) when { x ;\n'
    with pytest.raises(PolicyError, match=r"p\.cedar:\d+: policy 'broken' does not parse"):
        load_policies(text, "p.cedar")


def test_policy_that_breaks_the_schema_is_refused_with_its_name_and_line() -> None:
    text = (
        "// a typo in an attribute\n"
        '@id("deploy-typo")\n'
        'permit (principal, action == Action::"model.deploy", resource)\n'
        '  when { context.stge == "prod" };\n'
    )
    with pytest.raises(PolicyError) as caught:
        load_policies(text, "typo.cedar")
    assert "typo.cedar:2: policy 'deploy-typo'" in str(caught.value)
    bad_type = 'permit (principal == Dataset::"x", action == Action::"dataset.read", resource);'
    with pytest.raises(PolicyError, match="do not validate"):
        load_policies(bad_type)
    unknown_action = 'permit (principal, action == Action::"dataset.steal", resource);'
    with pytest.raises(PolicyError):
        load_policies(unknown_action)


def test_duplicate_policy_ids_are_refused() -> None:
    rule = "(principal, action, resource);"
    text = f'@id("a") permit {rule}\n@id("a") forbid {rule}'
    with pytest.raises(PolicyError, match="used twice"):
        load_policies(text)


def test_a_forbid_that_errors_still_denies() -> None:
    """Cedar skips a policy whose evaluation errors, which would let the permit win: we deny."""
    policies = load_policies(
        '@id("all") permit (principal, action, resource);\n'
        '@id("overflowing-forbid") forbid (principal, action, resource)\n'
        "  when { 9223372036854775807 + 1 > 0 };\n"
    )
    decision = CedarAuthorizer(policies).authorize(Principal("x"), "dataset.read", "datasets/a")
    assert not decision.allowed
    assert decision.reasons[0].startswith("policy error (denied)")


def test_dataset_versions_sit_in_their_datasets_collection(authorizer: CedarAuthorizer) -> None:
    # the vault versions datasets too: naming one in a model's lineage needs dataset.read on it
    alice = next(p for p in PRINCIPALS if p.id == "alice")
    assert authorizer.authorize(alice, "dataset.read", "datasets/fraud/transactions@3").allowed
    assert not authorizer.authorize(alice, "dataset.read", "datasets/fraud/pii@3").allowed
