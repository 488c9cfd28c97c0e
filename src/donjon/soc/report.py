"""The HTML posture report for auditors, built from recorded security events.

Sections: findings by severity and ATLAS tactic, models without a signature or
provenance, access anomalies (denials, refused credentials, monitor alerts),
the audit ledger's integrity, and SOC delivery (outbox lag, dead letters).
Self-contained HTML: no script, no external resource; every value escaped.

Models are recognised from finding subjects, ``models/<name>[@version]``
resources and ``model`` attributes. The report reads the facts the gates and
``audit verify`` recorded: a model counts as signed after a successful
``*.sign`` or ``provenance.verify`` event or a passed ``signature`` promotion
gate, and as having provenance after a successful ``provenance`` / ``attest``
event or a passed ``provenance`` gate. The ledger's verifications are the
``audit.verify`` events and the ledger-tampered findings (``DJ-LED-001``).
An empty section says "none"; findings, denials and alerts per hour are drawn
as inline SVG bar charts (no script, no dependency), and each watched model's
robustness and drift over time as SVG line charts (:mod:`.watch_report`).
"""

from __future__ import annotations

import html
from collections import Counter
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from donjon import __version__
from donjon.core.events import EventKind, Outcome, SecurityEvent
from donjon.core.severity import Severity
from donjon.core.taxonomy import ATLAS_TACTICS, technique
from donjon.soc.watch_report import CHECK_RULES, ModelTrend, watch_section, watch_trends

LEDGER_TAMPERED = "DJ-LED-001"  # donjon.audit's rule: the soc capability cannot import it
SIGNED_ACTIONS = frozenset({"provenance.sign", "provenance.verify", "registry.gate.signature"})

CSS = (
    "body{font-family:system-ui,sans-serif;margin:2em;color:#222}"
    "table{border-collapse:collapse;margin:1em 0}td,th{border:1px solid #bbb;padding:4px 8px}"
    "th{background:#eee}.bad{color:#b00;font-weight:bold}.ok{color:#070;font-weight:bold}"
)


def _model_name(text: str) -> str:
    name = text.removeprefix("models/")
    return name.split("@", 1)[0]


@dataclass
class Posture:
    """What the report says, computed from events (useful without HTML too)."""

    events: int = 0
    by_kind: Counter[str] = field(default_factory=Counter)
    findings: Counter[tuple[str, str]] = field(default_factory=Counter)  # severity, tactic
    rules: Counter[tuple[str, str, str]] = field(default_factory=Counter)  # id, title, severity
    models: set[str] = field(default_factory=set)
    signed: set[str] = field(default_factory=set)
    provenance: set[str] = field(default_factory=set)
    denials: Counter[str] = field(default_factory=Counter)
    auth_failures: Counter[str] = field(default_factory=Counter)
    alerts: list[SecurityEvent] = field(default_factory=list)
    ledger: list[SecurityEvent] = field(default_factory=list)
    hourly: dict[str, Counter[datetime]] = field(
        default_factory=lambda: {"findings": Counter(), "denials": Counter(), "alerts": Counter()}
    )
    first: datetime | None = None
    last: datetime | None = None
    watch: dict[str, ModelTrend] = field(default_factory=dict)  # deployed models over time

    @property
    def unsigned(self) -> list[str]:
        return sorted(self.models - self.signed)

    @property
    def without_provenance(self) -> list[str]:
        return sorted(self.models - self.provenance)

    @property
    def ledger_ok(self) -> bool | None:
        """The last ledger verification passed (None: never verified)."""
        return None if not self.ledger else self.ledger[-1].outcome is Outcome.SUCCESS


def assess(events: Iterable[SecurityEvent]) -> Posture:
    p = Posture()
    watched: list[SecurityEvent] = []
    for e in events:
        if e.action.startswith("watch.") or (e.finding and e.finding.rule.id in CHECK_RULES):
            watched.append(e)
        p.events += 1
        p.by_kind[e.kind.value] += 1
        p.first = e.time if p.first is None or e.time < p.first else p.first
        p.last = e.time if p.last is None or e.time > p.last else p.last
        models = _models_of(e)
        p.models |= models
        if e.finding is not None:
            rule = e.finding.rule
            tactics = {t for tid in rule.atlas for t in technique(tid).tactics} or {"(none)"}
            for tactic in tactics:
                p.findings[(e.severity.label, tactic)] += 1
            p.rules[(rule.id, rule.title, e.severity.label)] += 1
        ok = e.outcome is Outcome.SUCCESS
        hour = e.time.replace(minute=0, second=0, microsecond=0)
        if e.finding is not None:
            p.hourly["findings"][hour] += 1
        if ok and (e.action in SIGNED_ACTIONS or e.action.rsplit(".", 1)[-1] == "sign"):
            p.signed |= models
        if (
            ok
            and ("provenance" in e.action or "attest" in e.action)
            and e.action != ("provenance.verify")
        ):
            p.provenance |= models
        if e.decision is not None and not e.decision.allowed:
            p.denials[e.decision.principal.id] += 1
            p.hourly["denials"][hour] += 1
        if e.kind is EventKind.AUTHENTICATION and e.outcome is Outcome.FAILURE:
            p.auth_failures[e.principal.id if e.principal else "unknown"] += 1
        if e.kind is EventKind.ALERT:
            p.alerts.append(e)
            p.hourly["alerts"][hour] += 1
        if e.kind is EventKind.AUDIT and "verify" in e.action:
            p.ledger.append(e)
        elif e.finding is not None and e.finding.rule.id == LEDGER_TAMPERED:
            p.ledger.append(e)  # a verification that found tampering
    p.ledger.sort(key=lambda e: e.time)
    p.watch = watch_trends(watched)
    return p


def _models_of(e: SecurityEvent) -> set[str]:
    found: set[str] = set()
    if e.finding is not None and e.finding.subject.model:
        found.add(_model_name(e.finding.subject.model))
    resource = e.decision.resource if e.decision else e.attributes.get("resource")
    if isinstance(resource, str) and resource.startswith("models/"):
        found.add(_model_name(resource))
    model = e.attributes.get("model")
    if isinstance(model, str) and model:
        found.add(_model_name(model))
    return found


def _table(table_id: str, header: list[str], rows: Iterable[Iterable[Any]]) -> str:
    rows = [list(r) for r in rows]
    if not rows:
        return f'<p id="{table_id}" class="none">none</p>'
    head = "".join(f"<th>{html.escape(h)}</th>" for h in header)
    body = "".join(
        "<tr>" + "".join(f"<td>{html.escape(str(c))}</td>" for c in row) + "</tr>" for row in rows
    )
    return f'<table id="{table_id}"><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>'


def svg_bars(series: Counter[datetime], label: str, width: int = 640, height: int = 120) -> str:
    """A bar chart of counts per hour as inline SVG (every hour from first to last shown)."""
    if not series:
        return f'<p class="none">{html.escape(label)}: none</p>'
    start, end = min(series), max(series)
    hours = int((end - start).total_seconds() // 3600) + 1
    peak = max(series.values())
    step = width / max(hours, 1)
    bars = []
    for hour, count in sorted(series.items()):
        i = int((hour - start).total_seconds() // 3600)
        h = max(1.0, (height - 20) * count / peak)
        bars.append(
            f'<rect x="{i * step:.1f}" y="{height - h:.1f}" width="{max(step - 1, 1):.1f}" '
            f'height="{h:.1f}" fill="#b00"><title>{hour:%Y-%m-%d %H:00}: {count}</title></rect>'
        )
    caption = (
        f"{html.escape(label)} per hour, {start:%Y-%m-%d %H:00} to {end:%Y-%m-%d %H:00} UTC "
        f"(peak {peak})"
    )
    return (
        f'<figure><svg xmlns="http://www.w3.org/2000/svg" role="img" width="{width}" '
        f'height="{height}" viewBox="0 0 {width} {height}" aria-label="{caption}">'
        f"{''.join(bars)}</svg><figcaption>{caption}</figcaption></figure>"
    )


def render_html(
    posture: Posture, *, delivery: Mapping[str, Any] | None = None, title: str = "Donjon posture"
) -> str:
    p = posture
    severities = [s.label for s in sorted(Severity, reverse=True)]
    tactics = sorted({t for _, t in p.findings})
    matrix = [
        [ATLAS_TACTICS.get(t, t), t, *[p.findings[(s, t)] for s in severities]] for t in tactics
    ]
    ledger = p.ledger_ok
    ledger_text = (
        '<p id="ledger-status" class="bad">FAILED: the ledger did not verify</p>'
        if ledger is False
        else '<p id="ledger-status" class="ok">verified</p>'
        if ledger
        else '<p id="ledger-status" class="bad">never verified</p>'
    )
    parts = [
        f"<!DOCTYPE html><html lang=en><head><meta charset=utf-8><title>{html.escape(title)}"
        f"</title><style>{CSS}</style></head><body><h1>{html.escape(title)}</h1>",
        f'<p id="summary">{p.events} events from {p.first or "-"} to {p.last or "-"}; '
        f"generated {datetime.now(UTC).isoformat(timespec='seconds')} by Donjon "
        f"{html.escape(__version__)}</p>",
        _table("events-by-kind", ["kind", "events"], sorted(p.by_kind.items())),
        "<h2>Over time</h2>",
        *(svg_bars(series, name) for name, series in p.hourly.items()),
        "<h2>Findings by severity and ATLAS tactic</h2>",
        _table("findings-by-tactic", ["tactic", "id", *severities], matrix),
        _table(
            "top-rules",
            ["rule", "title", "severity", "findings"],
            [(*k, n) for k, n in p.rules.most_common(20)],
        ),
        "<h2>Models without a signature or provenance</h2>",
        _table(
            "models",
            ["model", "signed", "provenance"],
            [(m, m in p.signed, m in p.provenance) for m in sorted(p.models)],
        ),
        "<h2>Access anomalies</h2>",
        _table("denials", ["principal", "denied calls"], p.denials.most_common(20)),
        _table(
            "auth-failures", ["principal", "refused credentials"], p.auth_failures.most_common(20)
        ),
        _table(
            "alerts",
            ["time", "severity", "metric", "message"],
            [
                (a.time.isoformat(), a.severity.label, a.attributes.get("metric", ""), a.message)
                for a in p.alerts
            ],
        ),
        "<h2>Audit ledger integrity</h2>",
        ledger_text,
        _table(
            "ledger",
            ["time", "outcome", "message"],
            [(e.time.isoformat(), e.outcome.value, e.message) for e in p.ledger],
        ),
        *watch_section(p.watch),
    ]
    if delivery is not None:
        parts += [
            "<h2>SOC delivery</h2>",
            _table("delivery", ["sink", "lag", "dead letters"], delivery.get("sinks", [])),
        ]
    parts.append("</body></html>")
    return "\n".join(parts)
