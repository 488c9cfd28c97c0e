import dataclasses

import pytest

from donjon.core import Rule, RuleRegistry
from tests.factories import SAMPLE_RULE


@pytest.mark.parametrize("bad_id", ["PKL-001", "DJ-PKL-1", "dj-pkl-001", "DJ-P-001"])
def test_rule_ids_have_a_stable_shape(bad_id: str) -> None:
    with pytest.raises(ValueError, match="must look like"):
        dataclasses.replace(SAMPLE_RULE, id=bad_id)


@pytest.mark.parametrize(
    ("field", "value", "message"),
    [
        ("atlas", ("AML.T9999",), "unknown ATLAS technique"),
        ("owasp", ("ML11",), "unknown OWASP entry"),
        ("mitigations", ("AML.M9999",), "unknown ATLAS mitigation"),
    ],
)
def test_rules_only_reference_known_taxonomy(field: str, value: tuple[str], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        dataclasses.replace(SAMPLE_RULE, **{field: value})


def test_registry_iterates_in_id_order_and_finds_by_id() -> None:
    later = dataclasses.replace(SAMPLE_RULE, id="DJ-AAA-002")
    registry = RuleRegistry([SAMPLE_RULE, later])
    assert [r.id for r in registry] == ["DJ-AAA-002", "DJ-TST-001"]
    assert registry.get("DJ-TST-001") is SAMPLE_RULE
    assert "DJ-AAA-002" in registry
    assert len(registry) == 2


def test_registry_refuses_two_rules_with_one_id() -> None:
    registry = RuleRegistry([SAMPLE_RULE])
    registry.register(SAMPLE_RULE)  # the same rule again is harmless
    with pytest.raises(ValueError, match="registered twice"):
        registry.register(dataclasses.replace(SAMPLE_RULE, title="Another"))


def test_unknown_rule_lookup_names_the_id() -> None:
    with pytest.raises(KeyError, match="DJ-NOP-001"):
        RuleRegistry().get("DJ-NOP-001")


def test_rule_family() -> None:
    assert Rule("DJ-PKL-001", "t", "d", "r", SAMPLE_RULE.severity).family == "PKL"
