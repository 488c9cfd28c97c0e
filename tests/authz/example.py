"""The example policy of docs/access.md and an independent oracle for it."""

from __future__ import annotations

from typing import Any

EXAMPLE_POLICY = """\
// alice may read datasets under fraud/ except fraud/pii,
// and may deploy fraud-clf only to prod and only when it is signed.
@id("alice-reads-fraud")
permit (
  principal == User::"alice",
  action in [Action::"dataset.read", Action::"dataset.list"],
  resource in Collection::"datasets/fraud"
);

@id("no-fraud-pii-for-alice")
forbid (principal == User::"alice", action, resource in Collection::"datasets/fraud/pii");

@id("alice-deploys-signed-fraud-clf-to-prod")
permit (
  principal == User::"alice",
  action == Action::"model.deploy",
  resource in Collection::"models/fraud-clf"
) when { context has stage && context.stage == "prod" && context has signed && context.signed };

// ML engineers read every model; contractors never touch PII, whatever else says.
@id("engineers-read-models")
permit (principal in Group::"ml-engineers", action == Action::"model.read",
        resource in Collection::"models");

@id("engineers-read-datasets")
permit (principal in Group::"ml-engineers", action == Action::"dataset.read",
        resource in Collection::"datasets");

@id("contractors-no-pii")
forbid (principal in Group::"contractors", action, resource in Collection::"datasets/fraud/pii");

@id("ci-pushes-models")
permit (principal == ServiceAccount::"ci-bot", action == Action::"model.write",
        resource in Collection::"models");
"""


def under(resource: str, prefix: str) -> bool:
    base = resource.split("@", 1)[0]
    return base == prefix or base.startswith(prefix + "/")


def expected(
    principal: str, groups: tuple[str, ...], action: str, resource: str, context: dict[str, Any]
) -> bool:
    """What the example policy means, written without Cedar: the test oracle."""
    pii = under(resource, "datasets/fraud/pii")
    if principal == "user:alice" and pii:
        return False
    if "contractors" in groups and pii:
        return False
    if principal == "user:alice":
        if action in ("dataset.read", "dataset.list") and under(resource, "datasets/fraud"):
            return True
        if (
            action == "model.deploy"
            and under(resource, "models/fraud-clf")
            and context.get("stage") == "prod"
            and context.get("signed") is True
        ):
            return True
    if "ml-engineers" in groups:
        if action == "model.read" and under(resource, "models"):
            return True
        if action == "dataset.read" and under(resource, "datasets"):
            return True
    return principal == "service:ci-bot" and action == "model.write" and under(resource, "models")
