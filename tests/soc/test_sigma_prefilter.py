"""The Sigma pre-filter changes nothing but the cost: on a generated corpus of Donjon's
events (and on rules built to stress it) every event matches exactly the rules it matched
when every rule met every flattened event, and field reads equal ``flatten``'s."""

from __future__ import annotations

import random
from dataclasses import replace
from datetime import timedelta
from pathlib import Path
from typing import Any

from sigma.collection import SigmaCollection

from donjon.catalog import rule_registry
from donjon.core import Decision, SecurityEvent
from donjon.core.decision import Effect
from donjon.core.events import EventKind, Outcome
from donjon.core.findings import Finding, Subject
from donjon.core.identity import Principal
from donjon.core.severity import Severity
from donjon.soc.ocsf import to_ocsf
from donjon.soc.sigma_match import RULES_DIR, SigmaTally, flatten, shipped_rules
from donjon.soc.sigma_prefilter import DocFields
from tests.soc.samples import T0, every_kind, extraction_finding

SEVERITIES = list(Severity)


def _event(rng: random.Random, i: int) -> SecurityEvent:
    """One of Donjon's events: findings of any catalogued rule, decisions, failed logins,
    promotion gates, monitor alerts and the sample of every kind."""
    who = Principal(f"p-{rng.randrange(4)}")
    when = T0 + timedelta(seconds=7 * i)
    pick = rng.randrange(7)
    if pick == 0:
        rule = rng.choice(list(rule_registry()))
        finding = Finding(rule, Subject(model=f"m-{rng.randrange(3)}", principal=who.id),
                          f"finding {i}", severity=rng.choice(SEVERITIES))  # fmt: skip
        return SecurityEvent.of_finding(finding, rng.choice(["scan", "gateway", "audit"]),
                                        principal=who, time=when)  # fmt: skip
    if pick == 1:
        effect = rng.choice(list(Effect))
        decision = Decision(effect, who, rng.choice(["model.read", "model.promote"]), "models/m")
        return SecurityEvent.of_decision(decision, "authz", time=when)
    if pick == 2:
        attributes = {"src_ip": f"203.0.113.{rng.randrange(3)}", "failures": rng.randrange(20)}
        return SecurityEvent(EventKind.AUTHENTICATION, "authz", "token.authenticate", "login",
                             Severity.LOW, rng.choice(list(Outcome)), who, time=when,
                             attributes=attributes)  # fmt: skip
    if pick == 3:
        outcome = rng.choice([Outcome.SUCCESS, Outcome.FAILURE])
        return SecurityEvent(EventKind.ACTIVITY, "registry",
                             rng.choice(["registry.gate.signature", "registry.gate.scan"]),
                             "gate", Severity.MEDIUM, outcome, who, time=when,
                             attributes={"gate": "signature"})  # fmt: skip
    if pick == 4:
        return SecurityEvent(EventKind.ALERT, "monitor", "monitor.alert", f"alert {i}",
                             rng.choice(SEVERITIES), Outcome.FAILURE, time=when)  # fmt: skip
    if pick == 5:
        event = SecurityEvent.of_finding(extraction_finding(who.id), "gateway", principal=who)
        return replace(event, time=when)
    return replace(rng.choice(every_kind()), time=when)


def _compare(collection: SigmaCollection, docs: list[dict[str, Any]]) -> list[list[str]]:
    plain = SigmaTally(collection, prefilter=False)
    filtered = SigmaTally(collection)
    matches = []
    for seq, doc in enumerate(docs, 1):
        when = T0 + timedelta(seconds=7 * seq)
        expected = plain.feed(seq, when, doc)
        assert filtered.feed(seq, when, doc) == expected, (seq, doc)
        matches.append(expected)
    assert filtered.states == plain.states  # hits, last matches and errors of every rule
    return matches


def test_the_shipped_rules_match_exactly_as_without_the_prefilter() -> None:
    rng = random.Random(7)  # noqa: S311 - test data, not secrets
    docs = [to_ocsf(_event(rng, i)) for i in range(1000)]
    matches = _compare(shipped_rules(), docs)
    fired = {title for m in matches for title in m}
    assert len(fired) >= 7  # the corpus reaches every single rule (and both correlations)
    states = {s.title: s.hits for s in SigmaTally(shipped_rules()).states}
    assert len(states) == len(list(RULES_DIR.glob("*.yml"))) + 3  # correlations and bases


STRESS = """\
title: Either class, a list value, a number as text
id: 6c0e8a3e-3b49-4a53-9d2b-0f6f9a2b7a01
status: test
logsource: {product: donjon}
detection:
  deny: {class_uid: '6003', actor.authorizations.decision: denied}
  finding: {class_uid: 2004, finding_info.attacks.sub_technique.uid: [AML.T0024.002, nope]}
  condition: deny or finding
level: low
---
title: No class, a negation
id: 6c0e8a3e-3b49-4a53-9d2b-0f6f9a2b7a02
status: test
logsource: {product: donjon}
detection:
  high: {severity_id|gte: 4}
  alert: {finding_info.types: donjon.monitor}
  condition: high and not alert
level: low
---
title: A class and a wildcard (no constant the filter can use)
id: 6c0e8a3e-3b49-4a53-9d2b-0f6f9a2b7a03
status: test
logsource: {product: donjon}
detection:
  selection: {class_uid: 3002, actor.user.uid|contains: p-}
  condition: selection
level: low
---
title: Two classes, two values one field must both hold
id: 6c0e8a3e-3b49-4a53-9d2b-0f6f9a2b7a04
status: test
logsource: {product: donjon}
detection:
  one: {class_uid: [2004, 6003], finding_info.attacks.technique.uid: AML.T0024}
  two: {finding_info.attacks.technique.uid: AML.T0040}
  condition: one and two
level: low
"""


def test_rules_built_to_stress_it_match_exactly_as_without(tmp_path: Path) -> None:
    (tmp_path / "stress.yml").write_text(STRESS)
    rng = random.Random(11)  # noqa: S311 - test data, not secrets
    docs = [to_ocsf(_event(rng, i)) for i in range(600)]
    docs.append({**docs[0], "class_uid": "6003"})  # a class given as text
    _compare(SigmaCollection.load_ruleset([tmp_path, RULES_DIR]), docs)


def _document(rng: random.Random, depth: int = 0) -> Any:
    """Nested JSON with keys that hold dots, empty keys, lists of lists and scalars."""
    if depth > 3 or rng.random() < 0.3:
        return rng.choice([1, 2.5, "x", True, None, 0])
    if rng.random() < 0.3:
        return [_document(rng, depth + 1) for _ in range(rng.randrange(3))]
    keys = ["a", "b", "a.b", "", "b.a", "c"]
    return {k: _document(rng, depth + 1) for k in rng.sample(keys, rng.randrange(1, 5))}


def test_field_reads_equal_flatten_values_and_order() -> None:
    rng = random.Random(3)  # noqa: S311 - test data, not secrets
    paths = ["a", "b", "a.b", "a.b.a", "", ".a", "a..b", "b.a.b", "c", "a.b.c", "a.a.b"]
    for _ in range(600):
        doc = {"root": _document(rng), **{k: _document(rng) for k in ("a", "a.b")}}
        flat = flatten(doc)
        fields = DocFields(doc)
        for path in paths + [f"root.{p}" for p in paths] + list(flat):
            assert fields.get(path, []) == flat.get(path, []), (path, doc)
