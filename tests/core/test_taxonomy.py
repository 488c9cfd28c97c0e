"""The taxonomy inside the package agrees with the pinned MITRE ATLAS data file."""

from __future__ import annotations

from typing import Any

import pytest
import yaml

from donjon.catalog import rule_registry
from donjon.core import taxonomy
from tests.conftest import SHARED_DIR

ATLAS_FILE = SHARED_DIR / "data" / "ATLAS.yaml"


@pytest.fixture(scope="module")
def atlas() -> dict[str, Any]:
    if not ATLAS_FILE.exists():
        pytest.skip(f"{ATLAS_FILE} is not present")
    data: dict[str, Any] = yaml.safe_load(ATLAS_FILE.read_text(encoding="utf-8"))
    return data


def test_atlas_version_matches_the_data_file(atlas: dict[str, Any]) -> None:
    assert atlas["version"] == taxonomy.ATLAS_VERSION


def test_every_technique_id_name_and_tactic_matches_atlas(atlas: dict[str, Any]) -> None:
    published = {t["id"]: t for t in atlas["matrices"][0]["techniques"]}
    for technique in taxonomy.ATLAS_TECHNIQUES.values():
        entry = published.get(technique.id)
        assert entry is not None, f"{technique.id} is not in ATLAS {atlas['version']}"
        assert technique.name == entry["name"], technique.id
        if "subtechnique-of" in entry:
            assert technique.parent == entry["subtechnique-of"]
            parent = published[entry["subtechnique-of"]]
            assert technique.tactics == tuple(parent["tactics"])
        else:
            assert technique.parent is None
            assert technique.tactics == tuple(entry["tactics"])


def test_every_tactic_and_mitigation_matches_atlas(atlas: dict[str, Any]) -> None:
    matrix = atlas["matrices"][0]
    tactics = {t["id"]: t["name"] for t in matrix["tactics"]}
    mitigations = {m["id"]: m["name"] for m in matrix["mitigations"]}
    assert tactics == taxonomy.ATLAS_TACTICS
    for mitigation_id, name in taxonomy.ATLAS_MITIGATIONS.items():
        assert mitigations.get(mitigation_id) == name


def test_every_rule_uses_published_atlas_ids(atlas: dict[str, Any]) -> None:
    published = {t["id"] for t in atlas["matrices"][0]["techniques"]}
    for rule in rule_registry():
        assert set(rule.atlas) <= published, rule.id


def test_owasp_lists_are_complete() -> None:
    ids = set(taxonomy.OWASP_ENTRIES)
    assert {f"ML{n:02d}" for n in range(1, 11)} <= ids
    assert {f"LLM{n:02d}" for n in range(1, 11)} <= ids


def test_lookups_name_unknown_ids() -> None:
    assert taxonomy.technique("AML.T0011.000").name == "Unsafe AI Artifacts"
    with pytest.raises(KeyError, match=r"AML\.T0000\.999"):
        taxonomy.technique("AML.T0000.999")
    with pytest.raises(KeyError, match="ML99"):
        taxonomy.owasp("ML99")
