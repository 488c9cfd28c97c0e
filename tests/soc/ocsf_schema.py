"""Validate OCSF events against the 1.8.0 schema bundled in ``ocsf-json-schema``."""

from __future__ import annotations

from functools import cache
from typing import Any

import jsonschema
from ocsf_json_schema import OcsfJsonSchemaEmbedded, get_ocsf_schema


@cache
def _embedded() -> OcsfJsonSchemaEmbedded:
    return OcsfJsonSchemaEmbedded(get_ocsf_schema(version="1.8.0"))


@cache
def _validator(class_uid: int) -> jsonschema.protocols.Validator:
    embedded = _embedded()
    schema = embedded.get_class_schema(embedded.lookup_class_name_from_uid(class_uid), [])
    cls = jsonschema.validators.validator_for(schema)
    return cls(schema)  # type: ignore[no-any-return]


def ocsf_errors(event: dict[str, Any]) -> list[str]:
    """Every schema violation of ``event``, as ``path: message`` lines."""
    validator = _validator(int(event["class_uid"]))
    return [
        f"{'/'.join(str(p) for p in e.absolute_path)}: {e.message}"
        for e in validator.iter_errors(event)
    ]


def assert_valid_ocsf(event: dict[str, Any]) -> None:
    errors = ocsf_errors(event)
    assert not errors, "\n".join(errors)
