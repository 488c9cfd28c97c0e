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


def demo_model(
    ctx: typer.Context,
    folder: Annotated[
        Path, typer.Argument(help="The folder `donjon demo` wrote (its train.csv is used).")
    ] = Path("."),
    host: Annotated[str, typer.Option(help="Address to listen on.")] = "127.0.0.1",
    port: Annotated[int, typer.Option(min=1, max=65535, help="Port to listen on.")] = 8080,
) -> None:
    """Serve the demo's model on 127.0.0.1:8080 for the gateway tour (POST /predict).

    A Gaussian naive Bayes fitted on the folder's train.csv answers class probabilities
    to {"inputs": [[amount, age_days, velocity, distance], ...]} until stopped.
    """
    import uvicorn

    from donjon.quickstart.demo_model import ROUTE, NaiveBayes, build_app, load_training

    cli = state(ctx)
    model = NaiveBayes.fit(*load_training(folder / "train.csv"))
    cli.info(f"demo model on http://{host}:{port}{ROUTE} (Ctrl-C stops it)")
    uvicorn.run(build_app(model), host=host, port=port, log_level="warning", access_log=False)
