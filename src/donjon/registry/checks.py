"""Checks of what callers hand the registry: states, metadata, reasons."""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

from donjon.errors import InputError
from donjon.registry.errors import Gone, Quarantined
from donjon.registry.model import Status, Version

MAX_METADATA_BYTES = 64 * 1024


def must_be_active(version: Version) -> None:
    if version.status is Status.TOMBSTONED:
        raise Gone(f"{version.kind.value} {version.ref} was deleted: {version.status_reason}")
    if version.status is Status.QUARANTINED:
        raise Quarantined(
            f"{version.kind.value} {version.ref} is quarantined: {version.status_reason}"
        )


def check_metadata(metadata: Mapping[str, Any] | None) -> dict[str, Any]:
    if metadata is None:
        return {}
    if not isinstance(metadata, Mapping) or not all(isinstance(k, str) for k in metadata):
        raise InputError("metadata must be a JSON object with string keys")
    try:
        encoded = json.dumps(dict(metadata), allow_nan=False)
    except (TypeError, ValueError) as e:
        raise InputError(f"metadata is not plain JSON: {e}") from e
    if len(encoded.encode()) > MAX_METADATA_BYTES:
        raise InputError(f"metadata is larger than {MAX_METADATA_BYTES} bytes")
    loaded: dict[str, Any] = json.loads(encoded)
    return loaded


def check_reason(reason: str) -> str:
    reason = (reason or "").strip()
    if not reason or len(reason) > 1000:
        raise InputError("a reason of 1 to 1000 characters is required")
    return reason
