"""Compact JSON for the hot path: orjson when installed (the ``soc`` extra), else json."""

from __future__ import annotations

import importlib
import json
from typing import Any


def _orjson() -> Any:
    try:
        return importlib.import_module("orjson")
    except ImportError:  # pragma: no cover - the soc extra installs it
        return None


_ORJSON = _orjson()


def dumps(obj: Any) -> str:
    """Compact, key-sorted JSON text; unknown types become strings."""
    if _ORJSON is not None:
        text: bytes = _ORJSON.dumps(obj, option=_ORJSON.OPT_SORT_KEYS, default=str)
        return text.decode("utf-8")
    return json.dumps(obj, separators=(",", ":"), sort_keys=True, default=str)


def loads(text: str | bytes) -> Any:
    if _ORJSON is not None:
        return _ORJSON.loads(text)
    return json.loads(text)
