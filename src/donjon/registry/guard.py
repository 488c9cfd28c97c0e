"""The registry's questions to the authorizer: one decision, or one per listed item.

The registry records each decision itself, with its context, so that every
decision is on the bus exactly once. An authorizer that can answer without
recording (``decide``, as :class:`donjon.authz.CedarAuthorizer` can) is asked
that way; one that only has ``authorize`` (the core port) is asked that way and
must then not record the decision itself. A list is filtered item by item,
in one batch when the authorizer has ``decide_many``. Any error denies.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from typing import Any, Protocol, runtime_checkable

from donjon.core.decision import Decision
from donjon.core.events import EventKind, Outcome, SecurityEvent
from donjon.core.identity import Principal
from donjon.core.ports import Authorizer
from donjon.core.severity import Severity

log = logging.getLogger(__name__)

HIDDEN_SAMPLE = 20  # names of hidden items kept in the event, at most


@runtime_checkable
class Deciding(Protocol):
    """An authorizer that answers without recording the decision."""

    def decide(
        self,
        principal: Principal,
        action: str,
        resource: str,
        context: Mapping[str, Any] | None = None,
    ) -> Decision: ...


@runtime_checkable
class BatchDeciding(Protocol):
    """An authorizer that answers many same-action questions at once, without recording."""

    def decide_many(
        self, principal: Principal, action: str, resources: Sequence[str]
    ) -> list[Decision]: ...


def decide(
    authorizer: Authorizer,
    principal: Principal,
    act: str,
    res: str,
    context: Mapping[str, Any] | None = None,
) -> Decision:
    """The authorizer's decision; an error, or an answer to another question, denies."""
    facts = dict(context or {})
    try:
        if isinstance(authorizer, Deciding):
            decision = authorizer.decide(principal, act, res, facts)
        else:
            decision = authorizer.authorize(principal, act, res, facts)
    except Exception as e:  # noqa: BLE001 - fail closed: an authorizer error denies
        log.warning("authorizer failed on %s %s: %s", act, res, type(e).__name__)
        return Decision.deny(principal, act, res, f"authorizer error: {type(e).__name__}")
    if not isinstance(decision, Decision) or (decision.action, decision.resource) != (act, res):
        return Decision.deny(principal, act, res, "authorizer answered another question")
    return decision


def allowed_items(
    authorizer: Authorizer, principal: Principal, act: str, resources: Sequence[str]
) -> list[bool]:
    """For each resource, whether ``act`` on it is allowed; any error denies the lot."""
    if not resources:
        return []
    if isinstance(authorizer, BatchDeciding):
        try:
            decisions = authorizer.decide_many(principal, act, resources)
        except Exception as e:  # noqa: BLE001 - fail closed: an authorizer error hides all
            log.warning("authorizer failed on a batch of %s: %s", act, type(e).__name__)
            return [False] * len(resources)
        if len(decisions) != len(resources):
            return [False] * len(resources)
        return [
            isinstance(d, Decision) and d.allowed and (d.action, d.resource) == (act, res)
            for d, res in zip(decisions, resources, strict=True)
        ]
    return [decide(authorizer, principal, act, res).allowed for res in resources]


def hidden_event(
    principal: Principal, act: str, listed: str, total: int, hidden: Sequence[str]
) -> SecurityEvent:
    """One ``access`` event for the items of a listing that the caller may not see."""
    return SecurityEvent(
        kind=EventKind.ACCESS,
        source="registry",
        action=act,
        message=f"{principal} {act} {listed}: {len(hidden)} of {total} items hidden (denied)",
        severity=Severity.INFO,
        outcome=Outcome.FAILURE,
        principal=principal,
        attributes={
            "resource": listed,
            "items": total,
            "hidden": len(hidden),
            "hidden_sample": list(hidden[:HIDDEN_SAMPLE]),
        },
    )
