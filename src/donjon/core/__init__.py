"""Donjon's pure core: domain values, the rule registry, the taxonomy, ports and the bus.

Standard library only, no I/O (enforced by import-linter).
"""

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
