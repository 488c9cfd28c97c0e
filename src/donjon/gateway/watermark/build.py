"""A model's :class:`Watermarker` from its ``[models.watermark]`` settings."""

from __future__ import annotations

from pathlib import Path

from donjon.errors import ConfigError
from donjon.gateway.watermark.config import WatermarkSettings
from donjon.gateway.watermark.keys import resolve_key
from donjon.gateway.watermark.marker import Watermarker
from donjon.gateway.watermark.records import FolderMarks, MarkStore


def marks_folder(settings: WatermarkSettings, home: Path | None) -> Path:
    if settings.folder is not None:
        return settings.folder
    if home is None:
        raise ConfigError("watermark: set watermark.folder (no Donjon home was given)")
    return home / "watermarks"


def build_watermarker(
    model: str,
    settings: WatermarkSettings,
    home: Path | None,
    store: MarkStore | None = None,
) -> Watermarker:
    """The watermarker; its key from Donjon's key store (``home/keys``) or the reference."""
    if home is None and settings.key.startswith("keys:"):
        raise ConfigError("watermark: a keys:ID key needs the Donjon home (its key store)")
    key = resolve_key(settings.key, (home or Path()) / "keys")
    if store is None:
        store = FolderMarks(marks_folder(settings, home), settings.max_records)
    return Watermarker(model, settings, key, store)
