"""pySigma processing pipelines for Donjon's rules (``rules/sigma``), per wire format.

The rules are written over Donjon's OCSF fields. Where Donjon writes OCSF (HEC
with ``format = "ocsf"``, syslog, NATS, webhook, the event file) use
:func:`ocsf_pipeline`; where it writes ECS (the Elasticsearch sink, HEC with
``format = "ecs"``) use :func:`ecs_pipeline`, which renames the fields and
translates the values that ECS spells differently::

    from sigma.backends.elasticsearch import LuceneBackend
    LuceneBackend(processing_pipeline=ecs_pipeline()).convert(rules)

Needs ``pip install 'donjon[sigma]'``.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from sigma.processing.pipeline import ProcessingPipeline

# OCSF field -> ECS field, as donjon.soc.ocsf and donjon.soc.ecs write them.
ECS_FIELDS: dict[str | None, str | list[str]] = {
    "class_uid": "labels.donjon_kind",
    "status_id": "event.outcome",
    "severity_id": "event.severity",
    "api.operation": "event.action",
    "actor.authorizations.decision": "donjon.decision",
    "actor.user.uid": "user.id",
    "evidences.actor.user.uid": "user.id",
    "user.uid": "user.target.name",
    "src_endpoint.ip": "source.ip",
    "evidences.src_endpoint.ip": "source.ip",
    "finding_info.analytic.uid": "rule.id",
    "finding_info.attacks.technique.uid": "threat.technique.id",
    "finding_info.attacks.sub_technique.uid": "threat.technique.subtechnique.id",
    "finding_info.attacks.tactic.uid": "threat.tactic.id",
    "finding_info.types": "event.dataset",
    "metadata.log_name": "event.provider",
    "unmapped.failures": "donjon.failures",
}

# Values ECS spells differently, per OCSF field (OCSF value -> ECS value or values).
ECS_VALUES: dict[str, dict[str, str | list[str]]] = {
    "class_uid": {
        "2004": ["finding", "alert", "audit"],  # Detection Finding
        "6003": ["access", "activity", "audit"],  # API Activity
        "6005": "data_access",
        "3001": "account",
        "3002": "authentication",
        "3005": "permission",
        "3006": ["account", "permission"],  # Group Management
    },
    "status_id": {"1": "success", "2": "failure"},
    "finding_info.types": {"donjon.monitor": "donjon.monitor"},
}


def ecs_pipeline() -> ProcessingPipeline:
    """Rules over OCSF fields -> queries over the ECS documents Donjon writes."""
    from sigma.processing.conditions import IncludeFieldCondition
    from sigma.processing.pipeline import ProcessingItem, ProcessingPipeline
    from sigma.processing.transformations import (
        ConvertTypeTransformation,
        FieldMappingTransformation,
        MapStringTransformation,
    )

    items = []
    for field, values in ECS_VALUES.items():
        items.append(
            ProcessingItem(
                ConvertTypeTransformation("str"),
                identifier=f"donjon_ecs_{field}_as_text",
                field_name_conditions=[IncludeFieldCondition([field])],
            )
        )
        items.append(
            ProcessingItem(
                MapStringTransformation(values),
                identifier=f"donjon_ecs_{field}_values",
                field_name_conditions=[IncludeFieldCondition([field])],
            )
        )
    items.append(
        ProcessingItem(
            FieldMappingTransformation(dict(ECS_FIELDS)),
            identifier="donjon_ecs",
        )
    )
    return ProcessingPipeline(
        name="Donjon OCSF rules on Donjon's ECS documents",
        priority=20,
        items=items,
        allowed_backends=frozenset(),
    )


def ocsf_pipeline() -> ProcessingPipeline:
    """Rules over OCSF fields -> queries over Donjon's OCSF events (the names are kept)."""
    from sigma.processing.pipeline import ProcessingPipeline

    return ProcessingPipeline(
        name="Donjon OCSF rules on Donjon's OCSF events", priority=20, items=[]
    )
