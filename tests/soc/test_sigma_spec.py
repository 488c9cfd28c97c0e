"""The evaluator follows the Sigma specification's examples: a list of maps is OR, the keys
of a map AND, a field's values OR (AND under ``|all``), ``1 of`` / ``all of`` a pattern or
``them``, ``not`` and brackets with their precedence, and the modifiers it lists. Each case
runs on the flattened event and through the tally with and without its pre-filter.

Constructs it does not implement are refused when the rule is read, with the rule and the
construct named, never a crash and never a rule that silently matches nothing."""

from __future__ import annotations

from typing import Any

import pytest
from sigma.collection import SigmaCollection

from donjon.soc.sigma_compile import Unsupported, compile_rule
from donjon.soc.sigma_match import SigmaTally, flatten, rule_matches, shipped_rules
from tests.soc.samples import T0
from tests.soc.sigma_spec import UNSUPPORTED, spec_collection, spec_rule, unsupported_collection

IP = "src_endpoint.ip"
DENIED = {"actor": {"authorizations": [{"decision": "denied"}]}}

# (rule title, event, expected)
CASES: list[tuple[str, dict[str, Any], bool]] = [
    # a list of maps: either map is enough (the old evaluator ANDed them)
    ("list of maps", {"api": {"operation": "registry.promote"}}, True),
    ("list of maps", {"message": "a TEST EXECUTABLE here"}, True),
    ("list of maps", {"api": {"operation": "x"}, "message": "y"}, False),
    ("list of maps", {}, False),
    # a map: every key; a value list: any value
    ("map with a value list", {"metadata": {"log_name": "security"}, "class_uid": 1102}, True),
    ("map with a value list", {"metadata": {"log_name": "Security"}, "class_uid": 4}, False),
    ("map with a value list", {"metadata": {"log_name": "System"}, "class_uid": 517}, False),
    ("map with a value list", {"metadata": {"log_name": "Security"}, "class_uid": "517"}, True),
    ("map with a value list", {"metadata": {"log_name": "Security"}, "class_uid": [4, 517]}, True),
    (
        "map of four keys",
        {
            "metadata": {"log_name": "Security"},
            "class_uid": 4769,
            "ticket": {"options": "0x40810000", "encryption": "0x17"},
        },
        True,
    ),
    (
        "map of four keys",
        {
            "metadata": {"log_name": "Security"},
            "class_uid": 4769,
            "ticket": {"options": "0x40810000", "encryption": "0x12"},
        },
        False,
    ),
    ("list of multi-key maps", {"class_uid": 6003, **DENIED}, True),
    ("list of multi-key maps", {"class_uid": 3002, "severity_id": 4}, True),
    ("list of multi-key maps", {"class_uid": 6003, "severity_id": 5}, False),
    ("list of multi-key maps", {"class_uid": 2004, "severity_id": 3}, False),
    # |all: every value, possibly in different elements of an array
    ("all modifier", {"message": "Set-OabVirtualDirectory -ExternalUrl http://x"}, True),
    ("all modifier", {"message": "Set-OabVirtualDirectory"}, False),
    ("all modifier", {"message": ["OabVirtualDirectory", "a -ExternalUrl b"]}, True),
    # 1 of selection_* and not 1 of filter_*
    ("one of a pattern, and not one of another", {**DENIED, IP: "203.0.113.5"}, True),
    ("one of a pattern, and not one of another", {"status_id": 2}, True),
    ("one of a pattern, and not one of another", {**DENIED, IP: "10.1.2.3"}, False),
    ("one of a pattern, and not one of another", {**DENIED, IP: "192.168.1.5"}, True),
    ("one of a pattern, and not one of another", {**DENIED, IP: "192.168.0.9"}, False),
    (
        "one of a pattern, and not one of another",
        {**DENIED, "actor": {**DENIED["actor"], "user": {"uid": "Probe-7"}}},
        False,
    ),
    ("one of a pattern, and not one of another", {"status_id": 1}, False),
    ("all of a pattern", {"class_uid": 2004, "severity_id": 4}, True),
    ("all of a pattern", {"class_uid": 2004, "severity_id": 3}, False),
    (
        "all of them, underscore excluded",
        {"class_uid": 2004, "finding_info": {"types": ["donjon.monitor"]}},
        True,
    ),
    ("all of them, underscore excluded", {"class_uid": 2004}, False),
    ("one of them", {"class_uid": 2004}, True),
    ("one of them", {"status_id": 2}, True),
    ("one of them", {"class_uid": 6003, "status_id": 1}, False),
    # brackets, and a case-sensitive regular expression
    (
        "brackets and precedence",
        {"class_uid": 6003, "api": {"operation": "Registry.gate.scan"}, "status_id": 2},
        True,
    ),
    ("brackets and precedence", {"class_uid": 6003, "message": "gate failed"}, True),
    ("brackets and precedence", {"class_uid": 6003, "message": "Gate failed"}, False),
    (
        "brackets and precedence",
        {"class_uid": 6003, "message": "gate failed", "status_id": 1},
        False,
    ),
    # not a and b or c == ((not a) and b) or c
    ("not binds tighter than and, and than or", {"class_uid": 3002, "status_id": 2}, True),
    ("not binds tighter than and, and than or", {"class_uid": 6003, "status_id": 2}, False),
    ("not binds tighter than and, and than or", {"class_uid": 6003, "severity_id": 1}, True),
    # null: missing or null; exists: present, even null
    ("null and not null", {"class_uid": 2004, "finding_info": {"analytic": {"uid": "X"}}}, True),
    ("null and not null", {"class_uid": 2004}, False),
    ("null and not null", {"class_uid": 2004, "finding_info": {"analytic": {"uid": None}}}, False),
    ("exists", {"class_uid": 3002, IP: "198.51.100.1"}, True),
    ("exists", {"class_uid": 3002, IP: None}, True),
    ("exists", {"class_uid": 3002}, False),
    ("does not exist", {"class_uid": 3002, IP: "x", "unmapped": {"failures": 3}}, False),
    ("does not exist", {"class_uid": 3002, "unmapped": {"failures": None}}, False),
    ("does not exist", {"class_uid": 3002, "unmapped": {}}, True),
    # wildcards * and ?, an escaped \*, case-insensitive
    *[
        (
            "wildcards and escapes",
            {"api": {"operation": op}, "actor": {"user": {"uid": uid}}, "message": message},
            expected,
        )
        for op, uid, message, expected in [
            ("REGISTRY.gate.signature", "K-42", "a*bcd", True),
            ("registry.gate.", "k-x2", "a*b", True),
            ("registry.gate.x", "k-42", "axbcd", False),
            ("registry.gate.x", "k-422", "a*b", False),
            ("registry.gate", "k-42", "a*b", False),
        ]
    ],
    # |cased; |re|i
    (
        "case-sensitive and regex flags",
        {"actor": {"user": {"uid": "Alice"}}, "message": "Denied  BY x"},
        True,
    ),
    (
        "case-sensitive and regex flags",
        {"actor": {"user": {"uid": "alice"}}, "message": "denied by"},
        False,
    ),
    # comparisons take numbers (a text is not compared)
    ("comparisons", {"severity_id": 3, "unmapped": {"failures": 10}}, True),
    ("comparisons", {"severity_id": 5, "unmapped": {"failures": 10}}, False),
    ("comparisons", {"severity_id": 3, "unmapped": {"failures": "10"}}, False),
    ("comparisons", {"severity_id": 3, "unmapped": {"failures": [3, 50]}}, True),
    # |fieldref: another field of the same event
    ("field references", {"actor": {"user": {"uid": "Bob"}}, "user": {"uid": "bob"}}, True),
    ("field references", {"actor": {"user": {"uid": "bob"}}, "user": {"uid": "eve"}}, False),
    ("field references", {"actor": {"user": {"uid": "bob"}}}, False),
    # |neq: not that value (a missing field is not that value)
    ("negated values", {"class_uid": 6003, "status_id": 2}, True),
    ("negated values", {"class_uid": 6003, "status_id": 1}, False),
    ("negated values", {"class_uid": 6003}, True),
    # |windash: - or / or dashes; |base64 of the value
    ("windash and base64", {"message": "tool.exe /FORCE"}, True),
    ("windash and base64", {"message": "tool.exe \u2013force"}, True),
    ("windash and base64", {"message": "tool.exe force"}, False),
    ("windash and base64", {"unmapped": {"payload": "ZG9uam9u"}}, True),
    ("windash and base64", {"unmapped": {"payload": "donjon"}}, False),
    # a list of conditions is ORed
    ("several conditions", {"class_uid": 3002}, True),
    ("several conditions", {"class_uid": 2004}, True),
    ("several conditions", {"class_uid": 6003}, False),
]


def _ids() -> list[str]:
    return [f"{title}-{i}" for i, (title, _, _) in enumerate(CASES)]


@pytest.mark.parametrize(("title", "event", "expected"), CASES, ids=_ids())
def test_the_specifications_examples(title: str, event: dict[str, Any], expected: bool) -> None:
    rule = spec_rule(title)
    assert rule_matches(rule, flatten(event)) is expected
    for prefilter in (True, False):
        tally = SigmaTally(SigmaCollection([rule]), prefilter=prefilter)
        assert tally.feed(1, T0, event) == ([title] if expected else [])


def test_every_spec_rule_and_every_shipped_rule_compiles() -> None:
    for rule in [*spec_collection().rules, *shipped_rules().rules]:
        if not hasattr(rule, "detection"):
            continue  # a correlation
        compile_rule(rule)  # type: ignore[arg-type]


@pytest.mark.parametrize(("title", "body", "word"), UNSUPPORTED, ids=[u[0] for u in UNSUPPORTED])
def test_an_unsupported_construct_is_named_when_the_rule_is_read(
    title: str, body: str, word: str
) -> None:
    tally = SigmaTally(unsupported_collection())
    (state,) = [s for s in tally.states if s.title == title]
    assert state.error.startswith(f"Sigma rule {title!r} is not evaluated here: ")
    assert word in state.error
    assert tally.feed(1, T0, {"a": 1, "user": {"uid": "x"}, "time": 3}) == []
    assert state.hits == 0
    (rule,) = [r for r in unsupported_collection().rules if r.title == title]
    with pytest.raises(Unsupported, match="is not evaluated here"):
        rule_matches(rule, flatten({"a": 1}))  # type: ignore[arg-type]


def test_a_correlation_over_an_unsupported_rule_says_so() -> None:
    text = (
        "title: Keywords\nname: kw\nstatus: test\nlogsource: {product: donjon}\n"
        "detection:\n  keywords: [EVIL]\n  condition: keywords\nlevel: low\n---\n"
        "title: Many keywords\nstatus: test\ncorrelation:\n  type: event_count\n"
        "  rules: [kw]\n  group-by: [actor.user.uid]\n  timespan: 5m\n"
        "  condition: {gte: 3}\nlevel: high\n"
    )
    tally = SigmaTally(SigmaCollection.from_yaml(text))
    errors = {s.title: s.error for s in tally.states}
    assert "keyword search" in errors["Keywords"]
    assert (
        errors["Many keywords"]
        == "not evaluated here: it counts 'Keywords', which is not evaluated"
    )
