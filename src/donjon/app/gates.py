"""Admission gates of the vault, wired to the capabilities that answer them.

The registry declares the ports (``donjon.registry.ports``); this module
implements them with the scanner, so the registry never imports it.
"""

from __future__ import annotations

import re
import shutil
import tempfile
from collections.abc import Callable, Iterable
from pathlib import Path

from donjon.core.artifacts import Digest
from donjon.core.events import SecurityEvent
from donjon.core.severity import Severity
from donjon.registry.gates import SCAN_GATE
from donjon.registry.ports import BlobReader, ScanVerdict
from donjon.scan import ScanPolicy, scan_file

_UNSAFE_NAME = re.compile(r"[^A-Za-z0-9._+-]")


def safe_file_name(filename: str | None) -> str:
    """The base name of a pushed file, reduced to a harmless local name ("model" if none)."""
    base = (filename or "").replace("\\", "/").rsplit("/", 1)[-1]
    base = _UNSAFE_NAME.sub("_", base)[:128].lstrip(".")
    return base or "model"


class ModelScanGate:
    """Scans every pushed model with ``donjon.scan``; never loads it.

    A finding at or above ``fail_on``, or a file the scanner could not read,
    makes the version not clean (fail closed): the registry quarantines it.
    With ``publish``, every finding also goes on the bus, naming the model.
    """

    name = SCAN_GATE

    def __init__(
        self,
        policy: ScanPolicy,
        fail_on: Severity = Severity.MEDIUM,
        publish: Callable[[Iterable[SecurityEvent]], object] | None = None,
    ) -> None:
        self.policy = policy
        self.fail_on = fail_on
        self.publish = publish

    def scan(
        self, name: str, digest: Digest, open_blob: BlobReader, filename: str | None = None
    ) -> ScanVerdict:
        with tempfile.TemporaryDirectory(prefix="donjon-gate-") as folder:
            # The verdict never depends on the name; keeping it keeps the hints
            # (an extension that lies about the content) and the report readable.
            path = Path(folder) / safe_file_name(filename)
            with open_blob() as source, path.open("wb") as target:
                shutil.copyfileobj(source, target, 1 << 20)
            report = scan_file(str(path), self.policy)
        if self.publish is not None:
            self.publish(SecurityEvent.of_finding(f, "scan", model=name) for f in report.findings)
        blocking = tuple(f for f in report.findings if f.level >= self.fail_on)
        if report.error:
            return ScanVerdict(False, report.findings, f"scanner error: {report.error}")
        if blocking:
            worst = max(f.level for f in blocking)
            rules = ", ".join(sorted({f.rule.id for f in blocking}))
            summary = (
                f"{len(blocking)} finding(s) at or above {self.fail_on.label} "
                f"({worst.label}: {rules})"
            )
            return ScanVerdict(False, report.findings, summary, {"format": report.format})
        return ScanVerdict(
            True, report.findings, f"clean {report.format}", {"format": report.format}
        )
