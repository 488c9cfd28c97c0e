"""The Typer application behind ``donjon``: global options, lazy sub-commands, exit codes."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from donjon import __version__
from donjon.cli.commands import COMMANDS
from donjon.cli.lazy import lazy_group
from donjon.cli.state import CliState, ExitCode, OutputFormat
from donjon.errors import DonjonError

app = typer.Typer(
    name="donjon",
    help="Donjon secures the machine-learning lifecycle: scan, sign, guard, watch and report.",
    cls=lazy_group(COMMANDS),
    no_args_is_help=True,
    add_completion=True,  # --install-completion / --show-completion for bash, zsh, fish
    pretty_exceptions_enable=False,
    rich_markup_mode="rich",
    context_settings={"help_option_names": ["-h", "--help"]},
)


def _show_version(value: bool) -> None:
    if value:
        typer.echo(f"donjon {__version__}")
        raise typer.Exit(ExitCode.OK)


@app.callback()
def _global_options(
    ctx: typer.Context,
    output_format: Annotated[
        OutputFormat,
        typer.Option("--format", "-f", help="Output format for results.", case_sensitive=False),
    ] = OutputFormat.TEXT,
    quiet: Annotated[
        bool, typer.Option("--quiet", "-q", help="Print results only: no progress, no chatter.")
    ] = False,
    config: Annotated[
        Path | None,
        typer.Option(
            "--config", "-c", help="Settings file (TOML).", envvar="DONJON_CONFIG", dir_okay=False
        ),
    ] = None,
    home: Annotated[
        Path | None,
        typer.Option(
            "--home",
            help="Donjon's data folder (default ~/.donjon).",
            envvar="DONJON_HOME",
            file_okay=False,
        ),
    ] = None,
    version: Annotated[
        bool,
        typer.Option(
            "--version",
            "-V",
            callback=_show_version,
            is_eager=True,
            help="Print the version and exit.",
        ),
    ] = False,
) -> None:
    ctx.obj = CliState(format=output_format, quiet=quiet, config_file=config, home=home)
    ctx.call_on_close(ctx.obj.close)


def run_app(args: list[str]) -> int:
    """Run ``args`` through Typer and return the exit code."""
    from donjon.cli.helpfmt import install

    install()
    try:
        result = app(args=args, prog_name="donjon", standalone_mode=False)
    except typer.Exit as e:
        return int(e.exit_code)
    except SystemExit as e:  # --show-completion and --install-completion exit on their own
        return e.code if isinstance(e.code, int) else ExitCode.OK if e.code is None else 2
    except typer.Abort:
        typer.echo("Aborted.", err=True)
        return ExitCode.ERROR
    except typer.TyperException as e:  # usage errors: bad options, arguments, values
        show = getattr(e, "show", None)
        if callable(show):
            show()
        else:
            typer.echo(f"error: {e}", err=True)
        return int(getattr(e, "exit_code", ExitCode.ERROR))
    except DonjonError as e:
        typer.secho(f"error: {e}", err=True, fg="red")
        return ExitCode.ERROR
    except KeyboardInterrupt:
        typer.echo("Interrupted.", err=True)
        return ExitCode.ERROR
    except Exception as e:  # noqa: BLE001 - the CLI boundary: a message, never a traceback
        return _unexpected(e, args)
    return int(result) if isinstance(result, int) else ExitCode.OK


def _unexpected(error: Exception, args: list[str]) -> int:
    """An error no command anticipated: say what failed and what to do, exit 2.

    ``DONJON_DEBUG=1`` shows the traceback (for a bug report); the log keeps it at debug.
    """
    import logging
    import os

    command = " ".join(a for a in args[:3] if not a.startswith("-")) or "donjon"
    reason = str(error).strip().splitlines()[0] if str(error).strip() else ""
    kind = type(error).__name__
    typer.secho(
        f"error: {command} failed: {kind}{': ' + reason if reason else ''}", err=True, fg="red"
    )
    if isinstance(error, OSError | ValueError | LookupError | TypeError):
        typer.echo("check the input files and options (donjon COMMAND --help)", err=True)
    typer.echo("set DONJON_DEBUG=1 to see the traceback when reporting a bug", err=True)
    logging.getLogger("donjon.cli").debug("unexpected error", exc_info=error)
    if os.environ.get("DONJON_DEBUG", "") not in ("", "0"):
        import traceback

        traceback.print_exception(error)
    return ExitCode.ERROR
