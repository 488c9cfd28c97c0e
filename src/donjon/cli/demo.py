"""``donjon demo DIR``: write the example files the README's tour uses."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from donjon.cli.state import state
from donjon.errors import InputError


def demo(
    ctx: typer.Context,
    folder: Annotated[Path, typer.Argument(help="Where to write them (created if needed).")] = Path(
        "."
    ),
) -> None:
    """Write the example files the README's tour uses (data, model, policies, configs).

    train.csv, sources.toml, model/, policy.toml, policies.cedar and gateway.toml.
    """
    from donjon.quickstart.demo import write_demo

    cli = state(ctx)
    try:
        written = write_demo(folder)
    except FileExistsError as e:
        raise InputError(f"{e}; nothing was written (use an empty folder)") from e
    except OSError as e:
        raise InputError(f"cannot write to {folder}: {e.strerror or e}") from e
    if cli.json:
        cli.print_json({"folder": str(folder), "files": [str(p) for p in written]})
        return
    cli.out.print(f"wrote {len(written)} example files under {folder}:", markup=False)
    for path in written:
        cli.out.print(f"  {path}", markup=False)
