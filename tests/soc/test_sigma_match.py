"""The in-process Sigma evaluator: single rules and event_count correlations over time."""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path

from sigma.collection import SigmaCollection

from donjon.core import Decision, SecurityEvent
from donjon.soc.ocsf import to_ocsf
from donjon.soc.sigma_match import SigmaTally, shipped_rules
from tests.soc.samples import SCRAPER, T0, extraction_finding

STORM = "Donjon - Storm of Denials From One Principal"
DENIED = "Donjon - Access Denied"
REPEATED = "Donjon - Repeated Model Extraction Findings From One Principal"


def _denial(who: str = "k-42") -> SecurityEvent:
    decision = Decision.deny(SCRAPER, "model.read", f"models/m-{who}", "no grant")
    event = SecurityEvent.of_decision(decision, "registry")
    return SecurityEvent.from_dict({**event.to_dict(), "principal": {"id": who, "kind": "user"}})


def _tally(events: list[tuple[SecurityEvent, timedelta]]) -> dict[str, int]:
    tally = SigmaTally(shipped_rules())
    for seq, (event, offset) in enumerate(events, 1):
        tally.feed(seq, T0 + offset, to_ocsf(event))
    return {s.title: s.hits for s in tally.states}


def test_the_denial_storm_needs_twenty_from_one_principal_within_five_minutes() -> None:
    nineteen = [(_denial(), timedelta(seconds=10 * i)) for i in range(19)]
    hits = _tally(nineteen)
    assert hits[DENIED] == 19
    assert hits[STORM] == 0
    twenty = [*nineteen, (_denial(), timedelta(seconds=190))]
    assert _tally(twenty)[STORM] == 1
    spread = [(_denial(), timedelta(seconds=20 * i)) for i in range(20)]  # 380 s: too slow
    assert _tally(spread)[STORM] == 0
    mixed = [(_denial(f"p{i % 2}"), timedelta(seconds=i)) for i in range(30)]  # 15 each
    assert _tally(mixed)[STORM] == 0


def test_repeated_extraction_fires_once_per_three_findings_of_a_principal() -> None:
    finding = SecurityEvent.of_finding(extraction_finding(), "gateway", principal=SCRAPER)
    events = [(finding, timedelta(minutes=10 * i)) for i in range(6)]
    hits = _tally(events)
    assert hits["Donjon - Model Extraction Finding"] == 6
    assert hits[REPEATED] == 2


def _one_rule(folder: Path, title: str, selection: str) -> SigmaTally:
    (folder / "rule.yml").write_text(
        f"title: {title}\nid: 0b6ad2f5-6c10-4b9e-9a6f-6f0e2d1d7a12\nstatus: test\n"
        "logsource: {product: donjon}\n"
        f"detection:\n  selection: {{{selection}}}\n  condition: selection\nlevel: low\n"
    )
    return SigmaTally(SigmaCollection.load_ruleset([folder]))


def test_a_rule_with_an_unsupported_modifier_is_listed_not_passed(tmp_path: Path) -> None:
    tally = _one_rule(tmp_path, "Placeholder", "actor.user.uid|expand: '%Admins%'")
    (state,) = tally.states
    assert "not evaluated here" in state.error  # from the start, before any event
    assert "%Admins%" in state.error
    tally.feed(1, T0, to_ocsf(_denial()))
    assert state.hits == 0


def test_contains_is_evaluated(tmp_path: Path) -> None:
    tally = _one_rule(tmp_path, "Contains", "api.operation|contains: READ")
    assert to_ocsf(_denial())["api"]["operation"] == "model.read"
    assert tally.feed(1, T0, to_ocsf(_denial())) == ["Contains"]
    (state,) = tally.states
    assert (state.hits, state.error) == (1, "")
