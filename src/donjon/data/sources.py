"""Provenance filtering: admit records from trusted sources, quarantine the rest.

Each record's source comes from a column of the data or from a sidecar file (CSV with
columns ``row`` or the id column, and ``source``). A policy (TOML) lists trusted and
denied source patterns (shell-style globs)::

    [sources]
    trusted = ["vendor-a", "labelling/team-*"]
    denied = ["scraped/*"]
    allow_unknown = false   # the default: unknown sources are quarantined

Denied patterns win over trusted ones; a record with no source is unknown. Filtering never
deletes anything: it writes an admitted set and a quarantine set (with the row, source and
reason of each record) next to each other, and never overwrites a file.
"""

from __future__ import annotations

import fnmatch
import json
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.csv as pacsv
from pydantic import BaseModel, ConfigDict

from donjon.core.artifacts import ArtifactRef
from donjon.core.findings import Finding, Subject
from donjon.core.tomlfile import read_toml, validate
from donjon.data import rules
from donjon.data.tabular import (
    csv_dialect,
    data_format,
    read_npz,
    read_table,
    read_text_table,
    write_table,
)
from donjon.errors import DataError, InputError

ROW, SOURCE, REASON = "_donjon_row", "_donjon_source", "_donjon_reason"


class SourcesTable(BaseModel):
    """``[sources]`` of a source policy file."""

    model_config = ConfigDict(extra="forbid")
    trusted: list[str] = []
    denied: list[str] = []
    allow_unknown: bool = False


class PolicyFile(BaseModel):
    model_config = ConfigDict(extra="forbid")
    sources: SourcesTable


@dataclass(frozen=True)
class SourcePolicy:
    trusted: tuple[str, ...] = ()
    denied: tuple[str, ...] = ()
    allow_unknown: bool = False

    @classmethod
    def load(cls, path: Path) -> SourcePolicy:
        data = read_toml(path, "source policy")
        if not isinstance(data.get("sources"), dict):
            raise InputError(f"{path}: the policy needs a [sources] table")
        document = validate(PolicyFile, data, f"source policy {path}")
        section = document.sources
        return cls(tuple(section.trusted), tuple(section.denied), section.allow_unknown)

    def judge(self, source: str | None) -> str | None:
        """None when admitted, else the reason for quarantine."""
        if source is None or not source.strip():
            return None if self.allow_unknown else "no source recorded"
        for pattern in self.denied:
            if fnmatch.fnmatchcase(source, pattern):
                return f"source {source!r} is denied by policy ({pattern})"
        if any(fnmatch.fnmatchcase(source, pattern) for pattern in self.trusted):
            return None
        return None if self.allow_unknown else f"source {source!r} is not trusted"


@dataclass(frozen=True)
class FilterResult:
    admitted: tuple[int, ...]
    quarantined: tuple[tuple[int, str | None, str], ...]  # (row, source, reason)
    outputs: dict[str, str] = field(default_factory=dict)
    findings: tuple[Finding, ...] = ()

    def to_dict(self) -> dict[str, Any]:
        reasons = Counter(r for _, _, r in self.quarantined)
        return {
            "admitted": len(self.admitted),
            "quarantined": len(self.quarantined),
            "reasons": dict(reasons.most_common()),
            "outputs": self.outputs,
            "quarantined_rows": [
                {"row": row, "source": source, "reason": reason}
                for row, source, reason in self.quarantined
            ],
        }


def _sidecar_sources(path: Path, n: int, ids: list[str] | None) -> list[str | None]:
    try:
        dialect = csv_dialect(path)
        table = pacsv.read_csv(
            path,
            read_options=dialect.read_options(),
            parse_options=dialect.parse_options(),
            convert_options=pacsv.ConvertOptions(
                # ids are matched as the text the data holds ("007" is not "7")
                column_types={"id": pa.string(), "source": pa.string()},
                strings_can_be_null=False,
            ),
        )
    except (pa.ArrowInvalid, OSError, UnicodeDecodeError) as e:
        raise InputError(f"cannot read sources file {path}: {e}") from e
    if "source" not in table.column_names:
        raise InputError(f"{path}: the sources file needs a 'source' column")
    pairs = table.column("source").to_pylist()
    if ids is not None and "id" in table.column_names:
        by_id = dict(zip(map(str, table.column("id").to_pylist()), pairs, strict=True))
        return [by_id.get(i) for i in ids]
    if "row" not in table.column_names:
        raise InputError(f"{path}: the sources file needs a 'row' (or 'id') column")
    out: list[str | None] = [None] * n
    for row, source in zip(table.column("row").to_pylist(), pairs, strict=True):
        if isinstance(row, int) and 0 <= row < n:
            out[row] = None if source is None else str(source)
    return out


def _record_sources(
    data: Path,
    table: pa.Table | None,
    source_column: str | None,
    sources_file: Path | None,
    id_column: str | None,
) -> tuple[int, list[str | None]]:
    """The number of records and the source of each (None when unknown)."""
    if table is None:
        arrays = read_npz(data)
        if "X" not in arrays:
            raise DataError(f"{data}: an .npz data set needs an array 'X'")
        n = int(np.asarray(arrays["X"]).shape[0])
        if source_column is not None:
            if source_column not in arrays:
                raise InputError(f"{data} has no array {source_column!r}")
            return n, [str(v) or None for v in arrays[source_column].tolist()]
        ids = None
    else:
        n = table.num_rows
        if source_column is not None:
            if source_column not in table.column_names:
                raise InputError(f"source column {source_column!r} is not in {data}")
            values = table.column(source_column).to_pylist()
            return n, [None if v is None else str(v) for v in values]
        ids = [str(v) for v in table.column(id_column).to_pylist()] if id_column else None
    if sources_file is None:
        raise InputError("name the sources with a source column or a sources file")
    return n, _sidecar_sources(sources_file, n, ids)


def judge_records(sources: list[str | None], policy: SourcePolicy) -> FilterResult:
    admitted, quarantined = [], []
    for row, source in enumerate(sources):
        reason = policy.judge(source)
        if reason is None:
            admitted.append(row)
        else:
            quarantined.append((row, source, reason))
    return FilterResult(tuple(admitted), tuple(quarantined))


def filter_dataset(
    data: Path,
    out_dir: Path,
    policy: SourcePolicy,
    *,
    source_column: str | None = None,
    sources_file: Path | None = None,
    id_column: str | None = None,
) -> FilterResult:
    """Split ``data`` into ``out_dir/admitted.*`` and ``out_dir/quarantine.*``."""
    if (source_column is None) == (sources_file is None):
        raise InputError("name the sources with exactly one of a source column or a sources file")
    fmt = data_format(data)
    if fmt == "files":
        raise InputError("filter works on tables (.csv, .parquet, .npz), not folders")
    suffix = ".npz" if fmt == "npz" else data.suffix.lower()
    targets = {name: out_dir / f"{name}{suffix}" for name in ("admitted", "quarantine")} | {
        "report": out_dir / "filter-report.json"
    }
    existing = [str(p) for p in targets.values() if p.exists()]
    if existing:
        raise InputError(f"refusing to overwrite {', '.join(existing)}")
    # CSV cells are kept as the text they hold: the admitted and quarantined records are
    # the input's records, not a re-rendering of inferred types ("007", "1.10", "NA")
    table = None if fmt == "npz" else read_text_table(data) if fmt == "csv" else read_table(data)
    n, sources = _record_sources(data, table, source_column, sources_file, id_column)
    result = judge_records(sources, policy)
    out_dir.mkdir(parents=True, exist_ok=True)
    try:
        return _write_split(data, fmt, table, n, result, targets)
    except BaseException:
        for path in targets.values():  # all or nothing: no half-written split is left
            path.unlink(missing_ok=True)
        raise


def _write_split(
    data: Path,
    fmt: str,
    table: pa.Table | None,
    n: int,
    result: FilterResult,
    targets: dict[str, Path],
) -> FilterResult:
    rows_in = np.array(result.admitted, dtype=np.int64)
    rows_q = np.array([r for r, _, _ in result.quarantined], dtype=np.int64)
    q_sources = [s or "" for _, s, _ in result.quarantined]
    q_reasons = [r for _, _, r in result.quarantined]
    if table is None:
        arrays = read_npz(data)
        for name, rows, extra in (
            ("admitted", rows_in, {}),
            (
                "quarantine",
                rows_q,
                {SOURCE: np.array(q_sources, dtype=str), REASON: np.array(q_reasons, dtype=str)},
            ),
        ):
            picked: dict[str, Any] = {
                k: v[rows] for k, v in arrays.items() if v.ndim and len(v) == n
            }
            picked.update({ROW: rows}, **extra)
            np.savez(targets[name], allow_pickle=False, **picked)
    else:
        admitted = table.take(pa.array(rows_in)).append_column(ROW, pa.array(rows_in))
        quarantine = (
            table.take(pa.array(rows_q))
            .append_column(ROW, pa.array(rows_q))
            .append_column(SOURCE, pa.array(q_sources, pa.string()))
            .append_column(REASON, pa.array(q_reasons, pa.string()))
        )
        delimiter = csv_dialect(data).delimiter if fmt == "csv" else None
        write_table(admitted, targets["admitted"], delimiter)
        write_table(quarantine, targets["quarantine"], delimiter)
    outputs = {k: str(v) for k, v in targets.items()}
    findings: tuple[Finding, ...] = ()
    if result.quarantined:
        reasons = Counter(r for _, _, r in result.quarantined)
        findings = (
            Finding(
                rules.UNTRUSTED_SOURCE,
                Subject(artifact=ArtifactRef(str(data), kind="dataset")),
                f"{len(result.quarantined)} of {n} record(s) quarantined: "
                + "; ".join(f"{r} ({c})" for r, c in reasons.most_common(5)),
                evidence={
                    "quarantined": len(result.quarantined),
                    "admitted": len(result.admitted),
                    "rows": [r for r, _, _ in result.quarantined[:1000]],
                    "quarantine": outputs["quarantine"],
                },
            ),
        )
    final = FilterResult(result.admitted, result.quarantined, outputs, findings)
    targets["report"].write_text(json.dumps(final.to_dict(), indent=2) + "\n", encoding="utf-8")
    return final
