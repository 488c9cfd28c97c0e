"""A model's :class:`Watermarker` from its ``[models.watermark]`` settings."""

from __future__ import annotations

from pathlib import Path

from donjon.errors import ConfigError
from donjon.gateway.redis_link import RedisLink
from donjon.gateway.settings import StateConfig
from donjon.gateway.watermark.config import WatermarkSettings
from donjon.gateway.watermark.keys import resolve_key
from donjon.gateway.watermark.marker import Watermarker
from donjon.gateway.watermark.records import FolderMarks, MarkStore
from donjon.gateway.watermark.redis_records import RedisMarks


def marks_folder(settings: WatermarkSettings, home: Path | None) -> Path:
    if settings.folder is not None:
        return settings.folder
    if home is None:
        raise ConfigError("watermark: set watermark.folder (no Donjon home was given)")
    return home / "watermarks"


def mark_store(
    settings: WatermarkSettings,
    state: StateConfig,
    home: Path | None,
    link: RedisLink | None = None,
) -> MarkStore:
    """Where a model's records live: Redis with ``[state] backend = "redis"`` (replicas
    on several hosts), else the folder (one host)."""
    if state.backend == "redis":
        return RedisMarks(
            link or RedisLink(state.redis_url),
            prefix=state.marks_prefix,
            max_records=settings.max_records,
        )
    return FolderMarks(marks_folder(settings, home), settings.max_records)


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
