"""What every SOC format reads off one SecurityEvent: ATLAS attacks, names, times.

Conventions for ``SecurityEvent.attributes`` the formats understand (all
optional): ``src_ip``, ``hostname``, ``user_agent`` (where the call came from),
``resource`` (what was touched when there is no decision), ``target_user`` and
``privileges`` (account and permission events), ``service`` (the service
logged on to), ``metric``, ``value``, ``low``, ``high`` (monitor alerts),
``model`` and ``dataset``.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

from donjon import __version__
from donjon.core.events import SecurityEvent
from donjon.core.taxonomy import ATLAS_TACTICS, ATLAS_VERSION, technique

PRODUCT = "Donjon"
VENDOR = "Donjon"
PRODUCT_VERSION = __version__
ATLAS_MATRIX = f"ATLAS v{ATLAS_VERSION}"


@dataclass(frozen=True, slots=True)
class Attack:
    """One ATLAS technique of a rule, resolved to tactic / technique / sub-technique."""

    tactic_id: str
    tactic_name: str
    technique_id: str
    technique_name: str
    sub_id: str | None = None
    sub_name: str | None = None


def attacks_of(event: SecurityEvent) -> list[Attack]:
    """The ATLAS techniques of the event's finding rule, in rule order."""
    if event.finding is None:
        return []
    out: list[Attack] = []
    for technique_id in event.finding.rule.atlas:
        t = technique(technique_id)
        tactic_id = t.tactics[0]
        if t.parent is not None:
            parent = technique(t.parent)
            out.append(
                Attack(tactic_id, ATLAS_TACTICS[tactic_id], parent.id, parent.name, t.id, t.name)
            )
        else:
            out.append(Attack(tactic_id, ATLAS_TACTICS[tactic_id], t.id, t.name))
    return out


def epoch_ms(time: datetime) -> int:
    return int(time.timestamp() * 1000)


def attr(event: SecurityEvent, key: str) -> Any:
    return event.attributes.get(key)


def resource_of(event: SecurityEvent) -> str | None:
    """What the event touched: the decision's resource, else the ``resource`` attribute."""
    if event.decision is not None:
        return event.decision.resource
    value = attr(event, "resource") or attr(event, "dataset") or attr(event, "model")
    return str(value) if value is not None else None


def verb_of(action: str) -> str:
    """``model.read`` -> ``read``; ``login`` -> ``login``."""
    return action.rsplit(".", 1)[-1].lower()
