"""``donjon scan hf://ORG/NAME[@REV]`` and ``donjon scan --hf-cache [DIR]``: what to scan.

The files are the snapshot entries (links into the cache's blobs, checked by
:mod:`donjon.hub`); reports and events name them ``hf://ORG/NAME@COMMIT/FILE``.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from donjon.scan.report import FileReport, ScanReport


def is_hub_source(path: Path | str) -> bool:
    # Typer hands over a Path, which folds "hf://" into "hf:/"
    return str(path).startswith("hf:/")


def hub_spec(path: Path | str) -> str:
    text = str(path)
    return text if text.startswith("hf://") else "hf://" + text[len("hf:/") :]


@dataclasses.dataclass(frozen=True)
class HubTargets:
    """The files to scan, their hf:// names, and the roots as the user gave them."""

    paths: list[str]  # plain strings: a cache holds thousands of files
    names: dict[str, str]
    roots: tuple[str, ...]

    def rename_file(self, report: FileReport) -> FileReport:
        name = self.names.get(report.path)
        if name is None:
            return report
        return report.renamed(name)

    def rename(self, report: ScanReport) -> ScanReport:
        files = tuple(sorted((self.rename_file(r) for r in report.files), key=lambda r: r.path))
        return dataclasses.replace(report, roots=self.roots, files=files)


def hub_targets(paths: Sequence[Path], hf_cache: bool) -> HubTargets:
    """Resolve hf:// references (and, with ``--hf-cache``, the cache folders given)."""
    from donjon.hub import cache_files, repo_files

    found = []
    roots: list[str] = []
    plain: list[Path] = []
    for path in paths:
        if is_hub_source(path):
            found.extend(repo_files(hub_spec(path)))
            roots.append(hub_spec(path))
        elif hf_cache:
            found.extend(cache_files(path))
            roots.append(str(path))
        else:
            plain.append(path)
            roots.append(str(path))
    if hf_cache and not paths:
        found.extend(cache_files(None))
        roots.append("hf-cache")
    names = {f.entry: f.label for f in found}
    targets = [f.entry for f in found] + [str(p) for p in plain]
    return HubTargets(paths=targets, names=names, roots=tuple(roots))
