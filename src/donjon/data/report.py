"""Rendering data reports: text (for people), JSON (for machines), HTML (for review)."""

from __future__ import annotations

from donjon.data.diff import DiffReport


def render_diff_text(report: DiffReport) -> str:
    r = report.records
    lines = [
        f"old: {report.old.source} ({r.old_count}, {report.old.root})",
        f"new: {report.new.source} ({r.new_count}, {report.new.root})",
        f"matched by {r.keyed_by}: {r.unchanged} unchanged, "
        f"{len(r.added) + len(r.added_paths)} added, "
        f"{len(r.removed) + len(r.removed_paths)} removed, "
        f"{len(r.changed) + len(r.changed_paths)} changed, {len(r.relabelled)} relabelled",
    ]
    for change, count in r.label_changes.most_common(20):
        lines.append(f"  label {change}: {count}")
    if report.schema_added or report.schema_removed or report.schema_retyped:
        lines.append(
            f"schema: +{list(report.schema_added)} -{list(report.schema_removed)} "
            f"retyped {[f'{n}: {a} -> {b}' for n, a, b in report.schema_retyped]}"
        )
    for finding in report.findings:
        lines.append(f"[{finding.level.label}] {finding.rule.id} {finding.message}")
    return "\n".join(lines)
