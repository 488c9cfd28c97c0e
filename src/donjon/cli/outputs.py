"""One rule for the files a command writes: an existing file is kept unless ``--force``."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Annotated

import typer

from donjon.cli.paths import ensure_parent

Force = Annotated[bool, typer.Option("--force", help="Overwrite output files that already exist.")]


def refuse_overwrite(
    paths: Path | list[Path] | None,
    force: bool,
    option: str,
    *,
    remove: bool = False,
    make_parents: bool = True,
) -> None:
    """Stop (exit 2) when an output exists and ``--force`` was not given.

    ``remove``: with ``--force``, delete the existing files here, for writers that never
    overwrite on their own (the data commands); the others replace the file themselves.
    ``make_parents``: create the folders the outputs go in (off for a writer that makes
    them itself once its input is known to be good).
    """
    given = [] if paths is None else paths if isinstance(paths, list) else [paths]
    existing = [p for p in given if p.exists() or p.is_symlink()]
    for path in given if make_parents else ():  # a folder that does not exist yet: make it
        ensure_parent(path, option)
    if not existing:
        return
    if not force:
        names = ", ".join(str(p) for p in existing)
        raise typer.BadParameter(
            f"{names} already exist{'s' if len(existing) == 1 else ''}; pass --force to overwrite",
            param_hint=option,
        )
    for path in existing:
        if path.is_dir() and not path.is_symlink():
            raise typer.BadParameter(f"{path} is a folder; not overwriting it", param_hint=option)
    for path in existing if remove else ():
        path.unlink()


def download_target(dest: str, force: bool, option: str = "DEST") -> Path:
    """The file a download writes, its folder created: a usage error (exit 2) when ``dest``
    names a folder (an existing one, or a path ending in ``/``) or an existing file without
    ``--force``."""
    path = Path(dest)
    if dest.endswith(("/", os.sep)) or (path.is_dir() and not path.is_symlink()):
        raise typer.BadParameter(
            f"{dest} is a folder: name the file to write in it (e.g. {path / 'model.bin'})",
            param_hint=option,
        )
    refuse_overwrite(path, force, option)
    return path
