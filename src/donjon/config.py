"""Settings: built once (by ``donjon.app`` or the CLI) and passed down.

Precedence, highest first:

1. explicit values (command-line flags, keyword arguments to :func:`load_settings`);
2. environment variables ``DONJON_*`` (nested sections with ``__``:
   ``DONJON_EVENTS__FSYNC=true``);
3. the TOML settings file: ``--config PATH``, else ``$DONJON_CONFIG``, else
   ``$DONJON_HOME/config.toml`` when it exists;
4. the defaults below.

Nothing here runs at import time.
"""

from __future__ import annotations

import os
from contextvars import ContextVar
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError
from pydantic_settings import (
    BaseSettings,
    PydanticBaseSettingsSource,
    SettingsConfigDict,
    TomlConfigSettingsSource,
)

from donjon.errors import ConfigError

_CONFIG_FILE: ContextVar[Path | None] = ContextVar("donjon_config_file", default=None)


def default_home() -> Path:
    return Path.home() / ".donjon"


class Section(BaseModel):
    """Base of every settings section: unknown keys are errors, not silently ignored."""

    model_config = ConfigDict(extra="forbid")


class EventSettings(Section):
    """Where events go on embedded defaults."""

    jsonl_path: Path | None = Field(
        default=None, description="JSON-lines event file; default $DONJON_HOME/events.jsonl"
    )
    fsync: bool = Field(default=False, description="force every event line to disk")


class VaultSettings(Section):
    """The vault server (``donjon server``) and its clients."""

    host: str = Field(default="127.0.0.1", description="address the server binds")
    port: int = Field(default=8470, ge=0, le=65535, description="port the server binds")
    url: str = Field(
        default="http://127.0.0.1:8470", description="the server clients talk to by default"
    )
    max_upload_bytes: int = Field(
        default=10 << 30, ge=1, description="largest dataset or model upload accepted"
    )
    require_lineage: bool = Field(
        default=True, description="promotion to prod needs the model's training datasets"
    )
    s3_bucket: str | None = Field(
        default=None, description="keep blobs in this S3 bucket instead of $DONJON_HOME/blobs"
    )
    s3_prefix: str = Field(default="", description="key prefix inside the bucket")
    s3_endpoint_url: str | None = Field(
        default=None, description="S3-compatible endpoint (MinIO, Ceph); default AWS"
    )


class Settings(BaseSettings):
    model_config = SettingsConfigDict(
        env_prefix="DONJON_",
        env_nested_delimiter="__",
        extra="forbid",
        validate_default=True,
    )

    home: Path = Field(default_factory=default_home, description="Donjon's data folder")
    log_level: Literal["debug", "info", "warning", "error"] = "warning"
    database_url: str | None = Field(
        default=None,
        description="SQLAlchemy URL (postgresql://...); default SQLite $DONJON_HOME/donjon.db",
    )
    events: EventSettings = Field(default_factory=EventSettings)
    vault: VaultSettings = Field(default_factory=VaultSettings)

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        sources: list[PydanticBaseSettingsSource] = [init_settings, env_settings]
        config_file = _CONFIG_FILE.get()
        if config_file is not None:
            sources.append(TomlConfigSettingsSource(settings_cls, toml_file=config_file))
        return tuple(sources)

    @property
    def events_path(self) -> Path:
        return self.events.jsonl_path or self.home / "events.jsonl"

    @property
    def database_path(self) -> Path:
        return self.home / "donjon.db"

    @property
    def sql_url(self) -> str:
        return self.database_url or f"sqlite+pysqlite:///{self.database_path}"

    @property
    def blobs_dir(self) -> Path:
        return self.home / "blobs"

    @property
    def keys_dir(self) -> Path:
        return self.home / "keys"


def find_config_file(explicit: Path | None = None) -> Path | None:
    """The settings file to read, per the precedence above; ConfigError if named but missing."""
    if explicit is None and os.environ.get("DONJON_CONFIG"):
        explicit = Path(os.environ["DONJON_CONFIG"])
    if explicit is not None:
        if not explicit.is_file():
            raise ConfigError(f"settings file {explicit} does not exist")
        return explicit
    home = Path(os.environ["DONJON_HOME"]) if os.environ.get("DONJON_HOME") else default_home()
    candidate = home / "config.toml"
    return candidate if candidate.is_file() else None


def load_settings(config_file: Path | None = None, **overrides: Any) -> Settings:
    """Build the settings; every problem becomes a ConfigError naming the field."""
    path = find_config_file(config_file)
    token = _CONFIG_FILE.set(path)
    try:
        return Settings(**{k: v for k, v in overrides.items() if v is not None})
    except ValidationError as e:
        where = f" in {path}" if path else ""
        problems = "; ".join(
            f"{'.'.join(str(p) for p in err['loc']) or 'settings'}: {err['msg']}"
            for err in e.errors()
        )
        raise ConfigError(f"invalid settings{where}: {problems}") from e
    except (OSError, ValueError) as e:  # TOML syntax errors are ValueErrors
        raise ConfigError(f"cannot read settings file {path}: {e}") from e
    finally:
        _CONFIG_FILE.reset(token)
