"""The folder of an output file: created before the work, so a long command never ends by
failing to write what it found (standard library only: the fast scan path imports it)."""

from __future__ import annotations

from pathlib import Path

from donjon.errors import InputError


def ensure_parent(path: Path, option: str = "--output") -> None:
    """Create the folder ``path`` goes in (and its parents); InputError when it cannot be."""
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise InputError(
            f"{option}: cannot create the folder {path.parent}: {e.strerror or e}"
        ) from e
