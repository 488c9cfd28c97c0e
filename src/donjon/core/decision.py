"""The outcome of an authorisation or gate check."""

from __future__ import annotations

import enum
from dataclasses import dataclass

from donjon.core.identity import Principal


class Effect(enum.StrEnum):
    ALLOW = "allow"
    DENY = "deny"


@dataclass(frozen=True, slots=True)
class Decision:
    """Allow or deny ``principal`` doing ``action`` on ``resource``, and why.

    ``policy_ids`` names the policies that decided; an empty tuple with
    ``DENY`` means nothing granted the request (deny by default).
    """

    effect: Effect
    principal: Principal
    action: str
    resource: str
    reasons: tuple[str, ...] = ()
    policy_ids: tuple[str, ...] = ()

    @property
    def allowed(self) -> bool:
        return self.effect is Effect.ALLOW

    @classmethod
    def deny(cls, principal: Principal, action: str, resource: str, *reasons: str) -> Decision:
        return cls(Effect.DENY, principal, action, resource, reasons)
