"""Proof of model theft: keyed watermarks in the gateway's answers, and their verification.

:mod:`.marker` watermarks a keyed subset of answers and records them
(:mod:`.records`); :mod:`.verdict` tests a suspect model's answers on the
recorded inputs (:mod:`.suspect` queries it). See ``docs/watermark.md``.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from donjon.core.lazy import lazy_exports

if TYPE_CHECKING:
    from donjon.gateway.watermark.build import build_watermarker
    from donjon.gateway.watermark.config import WatermarkSettings
    from donjon.gateway.watermark.marker import Marking, Watermarker
    from donjon.gateway.watermark.records import FolderMarks, MarkRecord, MarkStore, MemoryMarks

_WHERE = {
    "build_watermarker": "build",
    "WatermarkSettings": "config",
    "Marking": "marker",
    "Watermarker": "marker",
    "FolderMarks": "records",
    "MarkRecord": "records",
    "MarkStore": "records",
    "MemoryMarks": "records",
}

__all__ = [
    "FolderMarks",
    "MarkRecord",
    "MarkStore",
    "Marking",
    "MemoryMarks",
    "WatermarkSettings",
    "Watermarker",
    "build_watermarker",
]

__getattr__ = lazy_exports(__name__, _WHERE, globals())
