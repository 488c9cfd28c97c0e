"""Sigma rules: validated offline with pySigma, converted to Splunk SPL and Elasticsearch,
and evaluated against Donjon's own OCSF output so their field names are real."""

from __future__ import annotations

from pathlib import Path

import pytest
from sigma.backends.elasticsearch import ESQLBackend, LuceneBackend
from sigma.backends.splunk import SplunkBackend
from sigma.collection import SigmaCollection
from sigma.correlations import SigmaCorrelationRule
from sigma.rule import SigmaRule
from sigma.validation import SigmaValidator
from sigma.validators.core import validators

from donjon.audit.rules import LEDGER_TAMPERED
from donjon.core import Decision, Effect, EventKind, Outcome, SecurityEvent, Severity
from donjon.soc.ecs import to_ecs
from donjon.soc.ocsf import to_ocsf
from donjon.soc.sigma import ecs_pipeline, ocsf_pipeline
from donjon.soc.sigma_match import RULES_DIR, flatten, rule_matches
from tests.factories import finding
from tests.soc.samples import ALICE, SCRAPER, every_kind, extraction_finding

# These two download MITRE ATT&CK / D3FEND data at run time: left out offline.
ONLINE_VALIDATORS = {"attacktag", "d3_fendtag"}


@pytest.fixture(scope="module")
def rules() -> SigmaCollection:
    return SigmaCollection.load_ruleset([RULES_DIR])


def test_rules_validate_offline(rules: SigmaCollection) -> None:
    validator = SigmaValidator(
        [cls for name, cls in validators.items() if name not in ONLINE_VALIDATORS]
    )
    assert len(rules.rules) >= 10
    assert list(validator.validate_rules(rules)) == []
    for rule in rules.rules:
        if isinstance(rule, SigmaRule):
            assert rule.logsource.product == "donjon"
            assert rule.level is not None


def test_a_broken_rule_is_caught(tmp_path: Path) -> None:
    (tmp_path / "bad.yml").write_text(
        "title: Dangling\nid: 0b6ad2f5-6c10-4b9e-9a6f-6f0e2d1d7a11\nstatus: test\n"
        "logsource: {product: donjon}\n"
        "detection:\n  selection: {class_uid: 2004}\n  unused: {class_uid: 6003}\n"
        "  condition: selection\nlevel: low\n"
    )
    bad = SigmaCollection.load_ruleset([tmp_path])
    issues = SigmaValidator([validators["dangling_detection"]]).validate_rules(bad)
    assert [type(i).__name__ for i in issues] == ["DanglingDetectionIssue"]


def test_rules_convert_to_splunk_and_elasticsearch(rules: SigmaCollection) -> None:
    spl = SplunkBackend().convert(rules)
    correlations = [r for r in rules.rules if isinstance(r, SigmaCorrelationRule)]
    assert len(correlations) == 2
    assert len(spl) == len(rules.rules) - len(correlations)  # a correlation embeds its base
    joined = "\n".join(map(str, spl))
    assert 'finding_info.attacks.sub_technique.uid="AML.T0024.002"' in joined
    assert "stats count as event_count by _time actor.user.uid" in joined
    assert "event_count >= 20" in joined
    assert 'api.operation="registry.gate.signature"' in joined
    base = SigmaCollection([r for r in rules.rules if isinstance(r, SigmaRule)])
    lucene = "\n".join(map(str, LuceneBackend().convert(base)))
    assert "class_uid:2004" in lucene
    assert "severity_id:>=4" in lucene
    esql = "\n".join(map(str, ESQLBackend().convert(rules)))
    assert "class_uid==6003" in esql
    assert "event_count >= 20" in esql


# -- the rules against Donjon's own events -------------------------------------


def matching_rules(rules: SigmaCollection, event: SecurityEvent) -> set[str]:
    fields = flatten(to_ocsf(event))
    return {r.title for r in rules.rules if isinstance(r, SigmaRule) and rule_matches(r, fields)}


def _gate(outcome: Outcome) -> SecurityEvent:
    """The registry's signature gate event, as ``Registry.promote`` publishes it."""
    return SecurityEvent(
        EventKind.ACTIVITY, "registry", "registry.gate.signature", "signature gate",
        Severity.INFO if outcome is Outcome.SUCCESS else Severity.MEDIUM, outcome, ALICE,
        attributes={"gate": "signature", "passed": outcome is Outcome.SUCCESS,
                    "resource": "models/fraud-clf@4", "target": "prod"},
    )  # fmt: skip


def matching_rules_ecs(event: SecurityEvent) -> set[str]:
    """The same rules through :func:`donjon.soc.sigma.ecs_pipeline`, on the ECS document."""
    fresh = SigmaCollection.load_ruleset([RULES_DIR])  # pipelines change the rules they touch
    fields = flatten(to_ecs(event))
    hits = set()
    for rule in fresh.rules:
        if isinstance(rule, SigmaRule):
            ecs_pipeline().apply(rule)
            if rule_matches(rule, fields):
                hits.add(rule.title)
    return hits


def test_each_rule_fires_on_the_event_it_describes_and_not_on_the_others(
    rules: SigmaCollection,
) -> None:
    pickle_rce = finding()  # DJ-TST-001 maps AML.T0011.000, severity high
    promote = Decision(Effect.ALLOW, ALICE, "model.promote", "models/fraud-clf@4")
    tampered = finding(rule=LEDGER_TAMPERED, message="entry 58 was modified")
    cases = {
        "Donjon - Model Extraction Finding": SecurityEvent.of_finding(
            extraction_finding(), "gateway", principal=SCRAPER
        ),
        "Donjon - Access Denied": every_kind()[3],
        "Donjon - Failed Authentication": every_kind()[4],
        "Donjon - Audit Ledger Verification Failed": SecurityEvent.of_finding(tampered, "audit"),
        "Donjon - Malicious Model Artifact Pushed": SecurityEvent.of_finding(pickle_rce, "scan"),
        "Donjon - Promotion Attempted Without a Valid Signature": _gate(Outcome.FAILURE),
        "Donjon - Monitored Metric Left Its Healthy Band": every_kind()[8],
    }
    for title, event in cases.items():
        assert title in matching_rules(rules, event), title
        assert matching_rules_ecs(event) == matching_rules(rules, event), title
    benign = [
        every_kind()[2],  # an allowed read
        every_kind()[9],  # a ledger that verified
        SecurityEvent.of_decision(promote, "registry", signed=False),  # staging, before the gate
        _gate(Outcome.SUCCESS),
        SecurityEvent(EventKind.ACTIVITY, "scan", "scan.run", "scanned 3 files", Severity.INFO,
                      Outcome.SUCCESS),
        SecurityEvent.of_finding(finding(severity=Severity.LOW), "scan"),
    ]  # fmt: skip
    for event in benign:
        assert matching_rules(rules, event) == set(), event.message
        assert matching_rules_ecs(event) == set(), event.message


def test_the_ecs_pipeline_queries_donjons_ecs_fields() -> None:
    fresh = SigmaCollection.load_ruleset([RULES_DIR])
    esql = "\n".join(map(str, ESQLBackend(processing_pipeline=ecs_pipeline()).convert(fresh)))
    assert "class_uid" not in esql
    assert "src_endpoint" not in esql
    assert 'rule.id=="DJ-LED-001"' in esql
    assert 'threat.technique.subtechnique.id=="AML.T0024.002"' in esql
    assert 'labels.donjon_kind=="authentication" and event.outcome=="failure"' in esql
    assert "by timebucket, user.id" in esql  # correlations group by ECS fields too
    assert "donjon.failures>=10" in esql
    assert 'donjon.decision=="denied"' in esql
    base = SigmaCollection(
        [r for r in SigmaCollection.load_ruleset([RULES_DIR]).rules if isinstance(r, SigmaRule)]
    )
    spl = "\n".join(map(str, SplunkBackend(processing_pipeline=ocsf_pipeline()).convert(base)))
    assert 'finding_info.analytic.uid="DJ-LED-001"' in spl


def test_token_guessing_fires_on_a_real_vaults_refusals_from_one_address(
    tmp_path: Path, rules: SigmaCollection
) -> None:
    """Twelve bad tokens against the real vault app from one address: the first refusal
    fires "Failed Authentication" only; the window's summary (all twelve) fires "Token
    Guessing", with the address in src_endpoint.ip, as OCSF and through the ECS pipeline."""
    import asyncio

    import httpx

    from donjon.app import build
    from donjon.config import load_settings
    from donjon.server.factory import vault_app
    from tests.soc.test_mapping import Recorder

    home = tmp_path / "home"
    home.mkdir()
    (home / "policies.cedar").write_text('@id("none")\nforbid (principal, action, resource);\n')
    settings = load_settings(None, home=home)
    published: list[SecurityEvent] = []
    with build(settings) as app:
        app.bus.subscribe(Recorder(published))
        vault = vault_app(settings, app)
        transport = httpx.ASGITransport(app=vault, client=("203.0.113.9", 4242))

        async def guess() -> list[int]:
            async with httpx.AsyncClient(transport=transport, base_url="http://vault") as http:
                return [
                    (
                        await http.get("/v1/whoami", headers={"authorization": f"Bearer djt_{i}"})
                    ).status_code
                    for i in range(12)
                ]

        assert set(asyncio.run(guess())) <= {401, 429}
        vault.state.auth_failures.flush()  # the window closes (at shutdown, or after a minute)
    refused = [e for e in published if e.kind is EventKind.AUTHENTICATION]
    verdicts = [matching_rules(rules, e) for e in refused]
    assert {"Donjon - Failed Authentication"} in verdicts  # the first refusal, at once
    guessing = [
        e
        for e, v in zip(refused, verdicts, strict=True)
        if "Donjon - Token Guessing From One Address" in v
    ]
    assert len(guessing) == 1
    assert to_ocsf(guessing[0])["src_endpoint"]["ip"] == "203.0.113.9"
    assert to_ocsf(guessing[0])["unmapped"]["failures"] == 12
    for event, verdict in zip(refused, verdicts, strict=True):
        assert matching_rules_ecs(event) == verdict
