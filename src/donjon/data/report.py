"""Rendering data reports: text (for people), JSON (for machines), HTML (for review)."""

from __future__ import annotations

from html import escape

from donjon.data.checks import CheckReport
from donjon.data.diffs import DiffReport


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


def render_check_text(report: CheckReport, limit: int = 25) -> str:
    risk = report.risk()
    lines = [
        f"{report.source}: {report.records} records, {len(report.classes)} classes",
        f"risk: {risk['level']}  flagged: {risk['flagged']} ({risk['flagged_rate']:.2%})  "
        f"suspects: {risk['suspects']}",
    ]
    for result in report.results:
        state = f"error: {result.error}" if result.error else f"{len(result.flags)} record(s)"
        lines.append(f"  {result.detector:<22} {state}")
    for trigger in next(
        (r.summary.get("triggers", []) for r in report.results if r.detector == "trigger_search"),
        [],
    ):
        box = trigger.get("box")
        where = (
            f"{box['height']}x{box['width']} patch at ({box['top']}, {box['left']})"
            if box
            else "fixed values in " + ", ".join(trigger.get("features", []))
        )
        lines.append(
            f"  backdoor trigger: {where} -> {trigger['target']!r} on {trigger['records']} records"
        )
    if report.shift is not None:
        lines.append(
            f"shift: {len(report.shift.features)} of {report.shift.tested} feature(s); "
            f"class balance {'changed' if report.shift.class_shift else 'stable'}"
        )
    flagged = sorted(report.flagged, key=lambda v: -v.score)
    if flagged:
        lines.append(f"flagged records (top {min(limit, len(flagged))} by score):")
    for verdict in flagged[:limit]:
        lines.append(
            f"  row {verdict.row:>7}  {verdict.score:.2f}  {'+'.join(verdict.detectors)}: "
            f"{verdict.reasons[0]}"
        )
    for finding in report.findings:
        lines.append(f"[{finding.level.label}] {finding.rule.id} {finding.message}")
    lines += [f"note: {note}" for note in report.notes]
    return "\n".join(lines)


def render_check_html(report: CheckReport) -> str:
    """A self-contained HTML page for reviewers (every value escaped)."""
    risk = report.risk()
    rows = "\n".join(
        "<tr><td>{}</td><td>{}</td><td>{:.3f}</td><td>{}</td><td>{}</td></tr>".format(
            v.row,
            escape(str(v.label)),
            v.score,
            escape(", ".join(v.detectors)),
            "<br>".join(escape(r) for r in v.reasons),
        )
        for v in sorted(report.flagged, key=lambda v: -v.score)
    )
    detectors = "\n".join(
        f"<tr><td>{escape(r.detector)}</td><td>{escape(r.rule.id)}</td><td>{len(r.flags)}</td>"
        f"<td>{escape(r.error or '')}</td></tr>"
        for r in report.results
    )
    findings = "\n".join(
        f"<li><b>{escape(f.level.label)}</b> {escape(f.rule.id)} {escape(f.message)} "
        f"(ATLAS {escape(', '.join(f.rule.atlas))}; OWASP {escape(', '.join(f.rule.owasp))})</li>"
        for f in report.findings
    )
    title = f"Donjon data check: {escape(report.source)}"
    return f"""<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>{title}</title>
<style>body{{font-family:sans-serif;margin:2em}}table{{border-collapse:collapse}}
td,th{{border:1px solid #ccc;padding:4px 8px;vertical-align:top}}th{{background:#eee}}</style>
</head><body>
<h1>Data check: {escape(report.source)}</h1>
<p>{report.records} records, {len(report.classes)} classes. Risk <b>{escape(risk["level"])}</b>:
{risk["flagged"]} flagged ({risk["flagged_rate"]:.2%}), {risk["suspects"]} suspects.</p>
<h2>Findings</h2><ul>{findings}</ul>
<h2>Detectors</h2>
<table><tr><th>detector</th><th>rule</th><th>records</th><th>error</th></tr>{detectors}</table>
<h2>Flagged records</h2>
<table><tr><th>row</th><th>label</th><th>score</th><th>detectors</th><th>reasons</th></tr>
{rows}</table>
</body></html>
"""
