"""``donjon config``: the settings in force and where they came from."""

from __future__ import annotations

import typer

from donjon.cli.state import state

app = typer.Typer(help="Inspect Donjon's settings.", no_args_is_help=True)


@app.command("show")
def show(ctx: typer.Context) -> None:
    """Print the effective settings (flags > DONJON_* variables > settings file > defaults)."""
    from donjon.config_files import find_config_file

    cli = state(ctx)
    settings = cli.settings
    data = settings.model_dump(mode="json")
    source = find_config_file(cli.config_file)
    if cli.json:
        cli.print_json({"settings_file": str(source) if source else None, "settings": data})
        return
    cli.out.print(f"settings file: {source or '(none)'}")
    for key, value in _flatten(data):
        cli.out.print(f"{key} = {value!r}")


def _flatten(data: dict[str, object], prefix: str = "") -> list[tuple[str, object]]:
    items: list[tuple[str, object]] = []
    for key, value in data.items():
        if isinstance(value, dict):
            items += _flatten(value, f"{prefix}{key}.")
        else:
            items.append((f"{prefix}{key}", value))
    return items
