"""Batched decisions (list filtering) answer exactly as one decision per item would."""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from donjon.authz import CedarAuthorizer, load_policies
from donjon.core.identity import Principal

SEGMENTS = ["fraud", "pii", "cards", "tx", "x"]
PATHS = st.lists(st.sampled_from(SEGMENTS), min_size=1, max_size=3).map("/".join)
TARGETS = st.builds(
    lambda kind, path, scope: (kind, path, scope),
    st.sampled_from(["datasets", "models"]),
    PATHS,
    st.sampled_from(["in-collection", "exact", "any"]),
)


def _policy(effect: str, target: tuple[str, str, str]) -> str:
    kind, path, scope = target
    entity = "Dataset" if kind == "datasets" else "Model"
    resource = {
        "in-collection": f'resource in Collection::"{kind}/{path}"',
        "exact": f'resource == {entity}::"{kind}/{path}"',
        "any": "resource",
    }[scope]
    action = 'Action::"dataset.list"' if kind == "datasets" else 'Action::"model.list"'
    return f'{effect}(principal == User::"alice", action == {action}, {resource});'


@settings(max_examples=120, deadline=None)
@given(
    permits=st.lists(TARGETS, max_size=4),
    forbids=st.lists(TARGETS, max_size=3),
    names=st.lists(PATHS, min_size=1, max_size=30),
)
def test_batched_decisions_equal_single_ones(
    permits: list[tuple[str, str, str]],
    forbids: list[tuple[str, str, str]],
    names: list[str],
) -> None:
    text = "\n".join(
        [_policy("permit", t) for t in permits] + [_policy("forbid", t) for t in forbids]
    )
    authorizer = CedarAuthorizer(load_policies(text))
    alice = Principal("alice")
    resources = [f"datasets/{n}" for n in names] + [f"models/{n}@2" for n in names[:3]]
    for action in ("dataset.list", "model.list"):
        batched = authorizer.decide_many(alice, action, resources)
        single = [authorizer.decide(alice, action, r) for r in resources]
        assert [(d.effect, d.resource) for d in batched] == [(d.effect, d.resource) for d in single]
        assert [set(d.policy_ids) for d in batched] == [set(d.policy_ids) for d in single]


def test_a_malformed_resource_in_a_batch_is_denied_alone() -> None:
    authorizer = CedarAuthorizer(
        load_policies('permit(principal, action, resource in Collection::"datasets");')
    )
    out = authorizer.decide_many(
        Principal("alice"), "dataset.list", ["datasets/a", "datasets/../etc", "datasets/b"]
    )
    assert [d.allowed for d in out] == [True, False, True]
