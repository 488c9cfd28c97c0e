"""The advisory corpus: every case flagged, every harmless twin proven to run under its loader."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

from donjon.core.severity import Severity
from donjon.scan import scan_file
from tests.scan.advisories.cases import CASES, MARKER, Case, Effect, run_twins, write_corpus

_ID = re.compile(r"^(CVE-\d{4}-\d{4,}|GHSA(-[0-9a-z]{4}){3})")


def _flagged(path: Path) -> bool:
    report = scan_file(str(path))
    worst = report.max_severity
    return report.error is None and worst is not None and worst >= Severity.MEDIUM


def test_every_case_names_its_advisory() -> None:
    names = [case.name for case in CASES]
    assert len(set(names)) == len(names)
    for case in CASES:
        assert case.refs
        assert _ID.match(case.name) or any(r.startswith("https://") for r in case.refs), case.name
        assert case.twin is not None or case.note, f"{case.name}: say why no twin runs"


def test_every_malicious_case_is_flagged(tmp_path: Path) -> None:
    written = write_corpus(tmp_path, Effect.attacker())
    assert (tmp_path / "manifest.json").exists()
    missed = sorted(case.name for path, case in written.items() if not _flagged(path))
    assert missed == []


def test_every_harmless_twin_runs_under_its_real_loader_and_is_flagged(tmp_path: Path) -> None:
    """A case cannot be wrong about being dangerous: its twin does what the advisory says."""
    twins: list[tuple[Case, Path]] = []
    for case in CASES:
        path = case.write(tmp_path, Effect.harmless())
        assert _flagged(path), f"{case.name}: twin not flagged"
        if case.twin is not None:
            twins.append((case, path))
    assert len(twins) >= 10
    script = run_twins([(case.twin or "", path) for case, path in twins])
    done = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, timeout=300
    )
    did_not_run = [c.name for c, p in twins if not (p.parent / MARKER).exists()]
    assert did_not_run == [], done.stderr[-3000:]
