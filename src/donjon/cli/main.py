"""The ``donjon`` command: global options, sub-command wiring and exit codes.

Exit codes: 0 clean, 1 findings at or above the threshold (or a failed
verification), 2 usage or runtime error. ``main(argv)`` returns the code, so
tests call it directly; ``run()`` is the console-script entry point.
"""

from __future__ import annotations

import logging
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Annotated

import typer

from donjon import __version__
from donjon.cli import access as access_cmd
from donjon.cli import attest as attest_cmd
from donjon.cli import audit as audit_cmd
from donjon.cli import bom as bom_cmd
from donjon.cli import config as config_cmd
from donjon.cli import data as data_cmd
from donjon.cli import datasets as datasets_cmd
from donjon.cli import events as events_cmd
from donjon.cli import gateway as gateway_cmd
from donjon.cli import keys as keys_cmd
from donjon.cli import login as login_cmd
from donjon.cli import metrics as metrics_cmd
from donjon.cli import models as models_cmd
from donjon.cli import monitor as monitor_cmd
from donjon.cli import quickstart as quickstart_cmd
from donjon.cli import report as report_cmd
from donjon.cli import rules as rules_cmd
from donjon.cli import scan as scan_cmd
from donjon.cli import server as server_cmd
from donjon.cli import sign as sign_cmd
from donjon.cli import up as up_cmd
from donjon.cli import verify as verify_cmd
from donjon.cli.state import CliState, ExitCode, OutputFormat
from donjon.errors import DonjonError

app = typer.Typer(
    name="donjon",
    help="Donjon secures the machine-learning lifecycle: scan, sign, guard, watch and report.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
    rich_markup_mode="rich",
    context_settings={"help_option_names": ["-h", "--help"]},
)

# One module per sub-command; each exposes a Typer app or a command function.
app.add_typer(rules_cmd.app, name="rules")
app.add_typer(config_cmd.app, name="config")
app.add_typer(events_cmd.app, name="events")
app.add_typer(access_cmd.app, name="access", no_args_is_help=True)
app.add_typer(audit_cmd.app, name="audit")
app.add_typer(datasets_cmd.app, name="datasets")
app.add_typer(models_cmd.app, name="models")
app.command("login")(login_cmd.login)
app.command("server")(server_cmd.server)
app.add_typer(metrics_cmd.app, name="metrics")
app.add_typer(monitor_cmd.app, name="monitor")
app.add_typer(report_cmd.app, name="report")
app.command("sign")(sign_cmd.sign)
app.command("verify")(verify_cmd.verify)
app.add_typer(keys_cmd.app, name="keys")
app.add_typer(attest_cmd.app, name="attest")
app.command("bom")(bom_cmd.bom)
app.add_typer(data_cmd.app, name="data")
app.command("scan")(scan_cmd.scan)
app.command("samples")(scan_cmd.samples)
app.add_typer(gateway_cmd.app, name="gateway")
app.command("quickstart")(quickstart_cmd.quickstart)
app.command("up")(up_cmd.up)


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


def main(argv: Sequence[str] | None = None) -> int:
    """Run the CLI with ``argv`` (default ``sys.argv[1:]``) and return the exit code."""
    logging.basicConfig(format="%(levelname)s %(name)s: %(message)s")
    args = list(sys.argv[1:] if argv is None else argv)
    try:
        result = app(args=args, prog_name="donjon", standalone_mode=False)
    except typer.Exit as e:
        return int(e.exit_code)
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
    return int(result) if isinstance(result, int) else ExitCode.OK


def run() -> None:
    sys.exit(main())
