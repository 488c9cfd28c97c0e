"""Stateful detectors of the inference firewall.

Each detector looks at one query (one input row) from one principal against
that principal's recent history (:mod:`.state`) and the reference profile, and
returns a :class:`Signal` when its documented threshold is crossed. What the
gateway does with a signal is the detector's :class:`Action`.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass, field
from typing import Any

from donjon.core.rules import Rule


class Action(enum.StrEnum):
    """What the gateway does when a detector fires."""

    LOG = "log"  # record an informational event, answer normally
    ALERT = "alert"  # record an event at the rule's severity, answer normally
    THROTTLE = "throttle"  # refuse the principal with 429 for the cooldown
    BLOCK = "block"  # refuse the principal with 403 for the cooldown

    @property
    def refuses(self) -> bool:
        return self in (Action.THROTTLE, Action.BLOCK)


@dataclass(frozen=True)
class Signal:
    """One detector firing on one query."""

    detector: str
    rule: Rule
    action: Action
    score: float
    threshold: float
    message: str
    evidence: dict[str, Any] = field(default_factory=dict)


__all__ = ["Action", "Signal"]
