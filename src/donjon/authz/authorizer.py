"""The ``Authorizer`` port on Cedar: deny by default, forbid wins, every decision published.

A request is checked in this order, each step able only to deny:

1. the resource path and the context are well formed;
2. a scoped credential (an API token's scopes) covers the action;
3. Cedar evaluates the policies: ``Allow`` only when some ``permit`` matches
   and no ``forbid`` does; no matching policy is a deny (deny by default).

Any policy that errors during evaluation, and any unexpected error, denies.
Each decision is published as ``SecurityEvent.of_decision``; if that event
cannot be recorded, the request is denied (nothing allowed goes unrecorded).
"""

from __future__ import annotations

import json
import logging
import threading
from collections import OrderedDict
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

import cedarpy

from donjon.authz.batch import decide_many, named_entities
from donjon.authz.cedar import (
    ACTIONS,
    Policies,
    Resource,
    check_context,
    principal_entities,
    principal_uid,
)
from donjon.authz.identity import Publish
from donjon.authz.tokens import scope_allows
from donjon.core.decision import Decision, Effect
from donjon.core.events import SecurityEvent
from donjon.core.identity import Principal
from donjon.errors import DonjonError, InputError

log = logging.getLogger(__name__)
SOURCE = "authz"


class CedarAuthorizer:
    """Cedar policy decisions for Donjon's principals, actions and resource paths."""

    def __init__(
        self, policies: Policies, *, publish: Publish | None = None, cache_size: int = 4096
    ) -> None:
        self._policies = policies
        self._publish = publish
        self._cache: OrderedDict[tuple[Any, ...], tuple[Resource, cedarpy.Entities]] = OrderedDict()
        self._cache_size = cache_size
        self._lock = threading.Lock()
        self._named = named_entities(policies.text)

    @property
    def policies(self) -> Policies:
        return self._policies

    def authorize(
        self,
        principal: Principal,
        action: str,
        resource: str,
        context: Mapping[str, Any] | None = None,
    ) -> Decision:
        decision = self.decide(principal, action, resource, context)
        if self._publish is None:
            return decision
        facts = dict(context or {})
        try:
            self._publish(SecurityEvent.of_decision(decision, SOURCE, context=facts))
        except DonjonError:
            log.exception("could not record the decision on %s; denying", resource)
            if decision.allowed:
                return Decision.deny(
                    principal, action, resource, "the decision could not be recorded"
                )
        return decision

    def decide(
        self,
        principal: Principal,
        action: str,
        resource: str,
        context: Mapping[str, Any] | None = None,
    ) -> Decision:
        """The decision, without publishing it (``explain`` and ``who-can`` use this)."""
        try:
            return self._decide(principal, action, resource, dict(context or {}))
        except InputError as e:
            return Decision.deny(principal, action, resource, f"bad request: {e}")
        except Exception:  # fail closed on anything unexpected
            log.exception("authorisation error for %s %s %s; denying", principal, action, resource)
            return Decision.deny(principal, action, resource, "internal error: denied")

    def decide_many(
        self, principal: Principal, action: str, resources: Sequence[str]
    ) -> list[Decision]:
        """One decision per resource (not published), evaluated once per group of alike ones."""
        return decide_many(
            lambda p, a, r: self.decide(p, a, r), self._named, principal, action, resources
        )

    def _decide(
        self, principal: Principal, action: str, resource: str, context: dict[str, Any]
    ) -> Decision:
        if action not in ACTIONS:
            raise InputError(f"unknown action {action!r}")
        target, entities = self._entities(principal, resource)
        check_context(context)
        if not scope_allows(principal.scopes, action):
            scopes = ", ".join(sorted(principal.scopes or ())) or "none"
            return Decision.deny(
                principal, action, resource, f"the credential's scopes ({scopes}) exclude {action}"
            )
        request = {
            "principal": principal_uid(principal),
            "action": {"type": "Action", "id": action},
            "resource": {"type": target.type, "id": target.path},
            "context": context,
        }
        result = cedarpy.is_authorized(request, self._policies.policy_set, entities)
        diagnostics = result.diagnostics
        matched = tuple(self._policies.name(p) for p in diagnostics.reasons)
        described = [self._policies.describe(p) for p in diagnostics.reasons]
        if diagnostics.errors:
            return Decision(
                Effect.DENY,
                principal,
                action,
                resource,
                tuple(f"policy error (denied): {e}" for e in diagnostics.errors),
                matched,
            )
        if result.allowed:
            reasons = tuple(f"permitted by {d}" for d in described)
            return Decision(Effect.ALLOW, principal, action, resource, reasons, matched)
        if matched:
            reasons = tuple(f"forbidden by {d}" for d in described)
            return Decision(Effect.DENY, principal, action, resource, reasons, matched)
        return Decision.deny(
            principal, action, resource, "no policy permits this request (deny by default)"
        )

    def _entities(self, principal: Principal, resource: str) -> tuple[Resource, cedarpy.Entities]:
        """The parsed resource and the request's entities, from an LRU cache when seen before."""
        key = (principal.kind, principal.id, principal.groups, resource)
        with self._lock:
            found = self._cache.get(key)
            if found is not None:
                self._cache.move_to_end(key)
                return found
        target = Resource.parse(resource)
        entities = {
            e["uid"]["type"] + "::" + e["uid"]["id"]: e
            for e in (*principal_entities(principal), *target.entities())
        }
        handle = cedarpy.Entities.from_json_str(json.dumps(list(entities.values())))
        with self._lock:
            self._cache[key] = (target, handle)
            while len(self._cache) > self._cache_size:
                self._cache.popitem(last=False)
        return target, handle

    def who_can(
        self,
        principals: Iterable[Principal],
        action: str,
        resource: str,
        context: Mapping[str, Any] | None = None,
    ) -> list[Decision]:
        """The allowing decisions among ``principals`` (not published: a query, not a request)."""
        decisions = (self.decide(p, action, resource, context) for p in principals)
        return [d for d in decisions if d.allowed]
