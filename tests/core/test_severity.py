import pytest

from donjon.core import Severity


def test_severities_are_ordered_from_info_to_critical() -> None:
    assert sorted(Severity, reverse=True)[0] is Severity.CRITICAL
    assert Severity.INFO < Severity.LOW < Severity.MEDIUM < Severity.HIGH < Severity.CRITICAL


@pytest.mark.parametrize(
    ("severity", "ocsf_id", "ocsf_name"),
    [
        (Severity.INFO, 1, "Informational"),
        (Severity.LOW, 2, "Low"),
        (Severity.MEDIUM, 3, "Medium"),
        (Severity.HIGH, 4, "High"),
        (Severity.CRITICAL, 5, "Critical"),
    ],
)
def test_ocsf_severity_ids(severity: Severity, ocsf_id: int, ocsf_name: str) -> None:
    assert severity.ocsf_id == ocsf_id
    assert severity.ocsf_name == ocsf_name


@pytest.mark.parametrize("text", ["high", "HIGH", " High "])
def test_parse_is_case_insensitive(text: str) -> None:
    assert Severity.parse(text) is Severity.HIGH


def test_parse_accepts_the_ocsf_word_for_info() -> None:
    assert Severity.parse("informational") is Severity.INFO


def test_parse_rejects_unknown_words_and_lists_choices() -> None:
    with pytest.raises(ValueError, match="info, low, medium, high, critical"):
        Severity.parse("severe")
