"""CycloneDX 1.6 ML-BOM of a model, filled from its manifest and training provenance.

The model is a ``machine-learning-model`` component (hash = its OMS subject
digest, one property per file digest), each input dataset is a ``data``
component, and the model's ``modelCard`` carries the training parameters,
performance metrics (overall and per group) and fairness assessments.
``cyclonedx-python-lib`` 11 does not model ``modelCard`` nor a component's
``data`` yet, so they are added to its JSON output, which is then checked
against the bundled 1.6 schema before it is returned.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from donjon.errors import InputError
from donjon.provenance.hashing import Manifest
from donjon.provenance.slsa import Provenance

MODEL_REF = "model"


def _metric_rows(provenance: Provenance) -> list[dict[str, str]]:
    rows = [
        {"type": name, "value": f"{value:g}", "slice": "overall"}
        for name, value in sorted(provenance.metrics().items())
    ]
    for record in provenance.byproduct("evaluation.json") or []:
        feature = record.get("sensitive_feature", "group")
        for group, values in sorted((record.get("by_group") or {}).items()):
            rows += [
                {"type": name, "value": f"{float(v):g}", "slice": f"{feature}={group}"}
                for name, v in sorted(values.items())
            ]
    return rows


def _fairness(provenance: Provenance) -> list[dict[str, str]]:
    out = []
    for record in provenance.byproduct("evaluation.json") or []:
        feature = record.get("sensitive_feature", "group")
        groups = ", ".join(sorted(record.get("by_group") or {}))
        harms = (
            f"demographic-parity difference {record.get('demographic_parity_difference')}, "
            f"equalized-odds difference {record.get('equalized_odds_difference', 'n/a')} "
            f"across {feature} groups ({groups}) on {record.get('dataset')}"
        )
        out.append({"groupAtRisk": f"{feature}: {groups}", "harms": harms})
    return out


def build_bom(
    manifest: Manifest,
    provenance: Provenance | None = None,
    *,
    version: str | None = None,
    provenance_verified: bool = False,
) -> dict[str, Any]:
    """The ML-BOM as a JSON-ready dict, validated against the CycloneDX 1.6 schema."""
    try:
        from cyclonedx.model import HashAlgorithm, HashType, Property
        from cyclonedx.model.bom import Bom
        from cyclonedx.model.component import Component, ComponentType
        from cyclonedx.output.json import JsonV1Dot6
    except ImportError as e:
        raise InputError("the ML-BOM needs cyclonedx-python-lib (extra 'provenance')") from e

    properties = [
        Property(name="donjon:oms:serialization", value=json.dumps(manifest.serialization)),
        *(
            Property(name=f"donjon:file:{item.name}", value=f"{item.algorithm}:{item.digest}")
            for item in manifest.items
        ),
    ]
    datasets = provenance.dependencies("dataset") if provenance else []
    if provenance is not None:
        properties += [
            Property(name="donjon:provenance:builder", value=provenance.builder),
            Property(name="donjon:provenance:verified", value=str(provenance_verified).lower()),
        ]
        for source in provenance.dependencies("source"):
            commit = (source.get("digest") or {}).get("gitCommit", "")
            dirty = (source.get("annotations") or {}).get("dirty")
            properties.append(Property(name="donjon:source:git-commit", value=str(commit)))
            properties.append(Property(name="donjon:source:dirty", value=str(dirty).lower()))
    bom = Bom()
    model = Component(
        type=ComponentType.MACHINE_LEARNING_MODEL,
        name=manifest.model_name,
        version=version,
        bom_ref=MODEL_REF,
        hashes=[HashType(alg=HashAlgorithm.SHA_256, content=manifest.subject_digest)],
        properties=properties,
    )
    bom.components.add(model)
    refs = []
    for index, dataset in enumerate(datasets):
        digest = (dataset.get("digest") or {}).get("sha256")
        ref = f"dataset-{index}"
        refs.append(ref)
        bom.components.add(
            Component(
                type=ComponentType.DATA,
                name=str(dataset.get("name") or ref),
                bom_ref=ref,
                hashes=[HashType(alg=HashAlgorithm.SHA_256, content=digest)] if digest else None,
            )
        )
    document: dict[str, Any] = json.loads(JsonV1Dot6(bom).output_as_string())
    for component in document.get("components", []):
        if component.get("bom-ref") == MODEL_REF:
            component["modelCard"] = _model_card(provenance, refs)
        elif component.get("bom-ref") in refs:
            dataset = datasets[refs.index(component["bom-ref"])]
            data: dict[str, Any] = {"type": "dataset", "name": component["name"]}
            if dataset.get("uri"):
                data["contents"] = {"url": str(dataset["uri"])}
            component["data"] = [data]
    validate(document)
    return document


def _model_card(provenance: Provenance | None, dataset_refs: list[str]) -> dict[str, Any]:
    parameters: dict[str, Any] = {"approach": {"type": "supervised"}}
    if dataset_refs:
        parameters["datasets"] = [{"ref": ref} for ref in dataset_refs]
    card: dict[str, Any] = {"modelParameters": parameters}
    if provenance is None:
        return card
    if provenance.name:
        parameters["task"] = provenance.name
    rows = _metric_rows(provenance)
    if rows:
        card["quantitativeAnalysis"] = {"performanceMetrics": rows}
    considerations: dict[str, Any] = {}
    fairness = _fairness(provenance)
    if fairness:
        considerations["fairnessAssessments"] = fairness
    if provenance.parameters:
        considerations["technicalLimitations"] = [
            "trained with parameters " + json.dumps(provenance.parameters, sort_keys=True)
        ]
    if considerations:
        card["considerations"] = considerations
    return card


def validate(document: dict[str, Any]) -> None:
    """Raise InputError when ``document`` is not valid CycloneDX 1.6 JSON."""
    from cyclonedx.schema import SchemaVersion
    from cyclonedx.validation.json import JsonStrictValidator

    error = JsonStrictValidator(SchemaVersion.V1_6).validate_str(json.dumps(document))
    if error is not None:
        raise InputError(f"the ML-BOM is not valid CycloneDX 1.6: {error}")


def write_bom(document: dict[str, Any], path: Path) -> None:
    path.write_text(json.dumps(document, indent=2) + "\n", encoding="utf-8")
