"""A model's :class:`Watermarker` from its ``[models.watermark]`` settings."""

from __future__ import annotations

from pathlib import Path

from donjon.errors import ConfigError
from donjon.gateway.profile import ReferenceProfile
from donjon.gateway.redis_link import RedisLink
from donjon.gateway.settings import StateConfig
from donjon.gateway.watermark.config import WatermarkSettings
from donjon.gateway.watermark.families import FamilyMemory, MemoryFamilies, RedisFamilies
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


def family_memory(
    model: str,
    settings: WatermarkSettings,
    state: StateConfig,
    features: int,
    max_principals: int,
    link: RedisLink | None = None,
) -> FamilyMemory:
    """Where each principal's marks are remembered for its near-copies: Redis with
    ``[state] backend = "redis"`` (every replica carries the same marks), else in process."""
    if state.backend == "redis":
        return RedisFamilies(
            link or RedisLink(state.redis_url),
            model,
            features,
            prefix=state.marks_prefix,
            per_principal=settings.family_memory,
            ttl_seconds=state.ttl_seconds,
        )
    return MemoryFamilies(settings.family_memory, max_principals)


def build_watermarker(
    model: str,
    settings: WatermarkSettings,
    home: Path | None,
    store: MarkStore | None = None,
    *,
    profile: ReferenceProfile | None = None,
    families: FamilyMemory | None = None,
) -> Watermarker:
    """The watermarker; its key from Donjon's key store (``home/keys``) or the reference.

    With the model's ``profile`` (its scale and nearest-neighbour distances) marks are
    carried to each principal's near-copies (``families``: in process by default)."""
    if home is None and settings.key.startswith("keys:"):
        raise ConfigError("watermark: a keys:ID key needs the Donjon home (its key store)")
    key = resolve_key(settings.key, (home or Path()) / "keys")
    if store is None:
        store = FolderMarks(marks_folder(settings, home), settings.max_records)
    if profile is None or settings.family_quantile is None:
        return Watermarker(model, settings, key, store)
    return Watermarker(
        model,
        settings,
        key,
        store,
        families=families or MemoryFamilies(settings.family_memory, 2000),
        scale=profile.scaled,
        radius=profile.nn_quantile(settings.family_quantile),
    )
