"""``donjon bom``: CycloneDX 1.6 ML-BOM, validated with cyclonedx-python-lib's schema."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from cyclonedx.schema import SchemaVersion
from cyclonedx.validation.json import JsonStrictValidator

from donjon.cli.main import main
from donjon.errors import InputError
from donjon.provenance import FileKeySigner, build_manifest
from donjon.provenance.attest import training_run
from donjon.provenance.bom import build_bom, validate
from tests.provenance.pki import make_model, write_key, write_public


def trained(tmp_path: Path) -> Path:
    write_public(tmp_path / "builder.pub", write_key(tmp_path / "builder.key"))
    data = tmp_path / "loans"
    data.mkdir()
    (data / "rows.csv").write_text("1,2\n3,4\n")
    model = make_model(tmp_path / "model")
    signer = FileKeySigner.from_file(tmp_path / "builder.key")
    with training_run(name="credit-scoring", builder="https://ci.example", signer=signer) as run:
        run.input_dataset(data)
        run.param("depth", 4)
        run.evaluate([1, 0, 1, 0, 1, 1], [1, 0, 0, 0, 1, 1], sensitive_features=list("aabbab"))
        run.output_model(model)
    return model


def test_bom_cli_writes_a_valid_ml_bom(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    model = trained(tmp_path)
    argv = ["bom", str(model), "--builder-key", str(tmp_path / "builder.pub")]
    assert main([*argv, "--model-version", "1.2.0"]) == 0
    text = capsys.readouterr().out
    assert JsonStrictValidator(SchemaVersion.V1_6).validate_str(text) is None
    bom = json.loads(text)
    assert bom["specVersion"] == "1.6"
    by_type = {c["type"]: c for c in bom["components"]}
    model_c, data_c = by_type["machine-learning-model"], by_type["data"]
    assert model_c["type"] == "machine-learning-model"
    assert model_c["version"] == "1.2.0"
    assert model_c["hashes"][0]["content"] == build_manifest(model).subject_digest
    assert data_c["type"] == "data"
    assert data_c["data"][0]["type"] == "dataset"
    card = model_c["modelCard"]
    assert card["modelParameters"]["datasets"] == [{"ref": data_c["bom-ref"]}]
    assert card["modelParameters"]["task"] == "credit-scoring"
    slices = {(m["type"], m["slice"]) for m in card["quantitativeAnalysis"]["performanceMetrics"]}
    assert ("accuracy", "overall") in slices
    assert ("accuracy", "sensitive_feature=a") in slices
    assert "demographic-parity" in card["considerations"]["fairnessAssessments"][0]["harms"]
    props = {p["name"]: p["value"] for p in model_c["properties"]}
    assert props["donjon:provenance:verified"] == "true"


def test_bom_without_provenance_and_to_a_file(tmp_path: Path) -> None:
    model = make_model(tmp_path / "model")
    assert main(["bom", str(model), "-o", str(tmp_path / "bom.json")]) == 0
    bom = json.loads((tmp_path / "bom.json").read_text())
    assert [c["type"] for c in bom["components"]] == ["machine-learning-model"]
    validate(bom)


def test_an_invalid_model_card_is_caught_by_the_schema(tmp_path: Path) -> None:
    bom = build_bom(build_manifest(make_model(tmp_path / "model")))
    bom["components"][0]["modelCard"]["modelParameters"]["approach"]["type"] = "vibes"
    with pytest.raises(InputError, match="not valid CycloneDX"):
        validate(bom)


def test_bom_of_a_missing_model_is_a_usage_error(tmp_path: Path) -> None:
    assert main(["bom", str(tmp_path / "nope")]) == 2
