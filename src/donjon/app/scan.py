"""Scanner wiring: the scan policy from the ``[scan]`` settings."""

from __future__ import annotations

from typing import TYPE_CHECKING

from donjon.config import Settings

if TYPE_CHECKING:
    from donjon.scan.policy import ScanPolicy


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
