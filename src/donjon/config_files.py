"""Where Donjon looks for its settings file, without importing pydantic.

``donjon.config`` reads the file this finds; a plain ``donjon scan``
(``donjon.cli.fastscan``) asks the same question to learn whether anything
could change the built-in settings, so both follow one rule.
"""

from __future__ import annotations

import os
from pathlib import Path

from donjon.errors import ConfigError


def default_home() -> Path:
    return Path.home() / ".donjon"


def find_config_file(explicit: Path | None = None) -> Path | None:
    """The settings file to read: ``explicit``, else ``$DONJON_CONFIG``, else
    ``config.toml`` in ``$DONJON_HOME`` or ``~/.donjon`` when it exists.

    ConfigError when a file is named but missing."""
    if explicit is None and os.environ.get("DONJON_CONFIG"):
        explicit = Path(os.environ["DONJON_CONFIG"])
    if explicit is not None:
        if not explicit.is_file():
            raise ConfigError(f"settings file {explicit} does not exist")
        return explicit
    home = Path(os.environ["DONJON_HOME"]) if os.environ.get("DONJON_HOME") else default_home()
    candidate = home / "config.toml"
    return candidate if candidate.is_file() else None
