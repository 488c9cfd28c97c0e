"""Composition root: Settings in, wired services out.

The only place that knows which adapter serves which port. The CLI and the
server build one :class:`Donjon` and call its services; capabilities never
reach for settings or adapters themselves.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from donjon.catalog import rule_registry
from donjon.config import Settings
from donjon.core.bus import EventBus
from donjon.core.rules import RuleRegistry
from donjon.soc.jsonl import JsonLinesSink

if TYPE_CHECKING:
    from donjon.scan.policy import ScanPolicy


@dataclass
class Donjon:
    """The wired application. Close it to flush and release sinks."""

    settings: Settings
    bus: EventBus
    rules: RuleRegistry
    _closers: list[JsonLinesSink] = field(default_factory=list, repr=False)

    def close(self) -> None:
        for closer in self._closers:
            closer.close()

    def __enter__(self) -> Donjon:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def build(settings: Settings) -> Donjon:
    """Wire the embedded defaults (and, later, the production adapters) from settings."""
    logging.getLogger("donjon").setLevel(settings.log_level.upper())
    jsonl = JsonLinesSink(settings.events_path, fsync=settings.events.fsync)
    bus = EventBus([jsonl])
    return Donjon(settings=settings, bus=bus, rules=rule_registry(), _closers=[jsonl])


def scan_policy(settings: Settings) -> ScanPolicy:
    """The scanner's policy from the ``[scan]`` settings (built-in lists plus the user's)."""
    from donjon.scan.policy import ScanPolicy

    scan = settings.scan
    return ScanPolicy().with_extra(
        allow=scan.allow,
        deny=scan.deny,
        max_seconds=scan.max_seconds,
        max_opcodes=scan.max_opcodes,
        max_nesting=scan.max_nesting,
        max_members=scan.max_members,
        max_member_bytes=scan.max_member_bytes,
        max_total_bytes=scan.max_total_bytes,
        max_ratio=scan.max_ratio,
        workers=scan.workers,
    )
