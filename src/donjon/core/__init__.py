"""Donjon's pure core: domain values, the rule registry, the taxonomy, ports and the bus.

Standard library only, no I/O (enforced by import-linter). The names below are
imported from their modules on first use (PEP 562), so a scan that publishes
nothing loads neither the bus nor the events (nor ``uuid``).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from donjon.core.lazy import lazy_exports

if TYPE_CHECKING:
    from donjon.core.artifacts import ArtifactRef, Digest
    from donjon.core.bus import Delivery, EventBus, JournalChain, MemorySink
    from donjon.core.clock import ManualClock, SystemClock
    from donjon.core.decision import Decision, Effect
    from donjon.core.events import EventKind, Outcome, SecurityEvent
    from donjon.core.findings import Finding, Location, Subject
    from donjon.core.identity import Principal, PrincipalKind
    from donjon.core.ports import (
        Authenticator,
        Authorizer,
        BlobStore,
        Clock,
        EventJournal,
        EventSink,
        KeyProvider,
        MetadataStore,
    )
    from donjon.core.rules import Rule, RuleRegistry
    from donjon.core.severity import Severity

# name -> the module that defines it
_MODULES = {
    "ArtifactRef": "artifacts",
    "Digest": "artifacts",
    "Delivery": "bus",
    "EventBus": "bus",
    "JournalChain": "bus",
    "MemorySink": "bus",
    "ManualClock": "clock",
    "SystemClock": "clock",
    "Decision": "decision",
    "Effect": "decision",
    "EventKind": "events",
    "Outcome": "events",
    "SecurityEvent": "events",
    "Finding": "findings",
    "Location": "findings",
    "Subject": "findings",
    "Principal": "identity",
    "PrincipalKind": "identity",
    "Authenticator": "ports",
    "Authorizer": "ports",
    "BlobStore": "ports",
    "Clock": "ports",
    "EventJournal": "ports",
    "EventSink": "ports",
    "KeyProvider": "ports",
    "MetadataStore": "ports",
    "Rule": "rules",
    "RuleRegistry": "rules",
    "Severity": "severity",
}

__all__ = [
    "ArtifactRef",
    "Authenticator",
    "Authorizer",
    "BlobStore",
    "Clock",
    "Decision",
    "Delivery",
    "Digest",
    "Effect",
    "EventBus",
    "EventJournal",
    "EventKind",
    "EventSink",
    "Finding",
    "JournalChain",
    "KeyProvider",
    "Location",
    "ManualClock",
    "MemorySink",
    "MetadataStore",
    "Outcome",
    "Principal",
    "PrincipalKind",
    "Rule",
    "RuleRegistry",
    "SecurityEvent",
    "Severity",
    "Subject",
    "SystemClock",
]


__getattr__ = lazy_exports(__name__, _MODULES, globals())


def __dir__() -> list[str]:
    return sorted([*globals(), *__all__])
