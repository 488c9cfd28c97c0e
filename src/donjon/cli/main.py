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
from donjon.cli.lazy import LazyCommand, lazy_group
from donjon.cli.state import CliState, ExitCode, OutputFormat
from donjon.errors import DonjonError

# One module per sub-command, imported only when that command runs (``donjon.cli.lazy``):
# name, module, its Typer app or command function, and the one-line help `donjon --help` shows.
COMMANDS = (
    LazyCommand(
        "login",
        "donjon.cli.login",
        "login",
        "Log in to a vault: the token is checked, then stored under DONJON_HOME (mode 0600).",
    ),
    LazyCommand(
        "server",
        "donjon.cli.server",
        "server",
        "Serve the vault (datasets and models) over HTTP; every route but /health needs a token.",
    ),
    LazyCommand(
        "sign",
        "donjon.cli.sign",
        "sign",
        "Sign MODEL: hash every file, sign the manifest, write an OMS bundle.",
    ),
    LazyCommand(
        "verify",
        "donjon.cli.verify",
        "verify",
        "Verify MODEL against its signature (and a policy); exit 1 on any failure.",
    ),
    LazyCommand(
        "bom",
        "donjon.cli.bom",
        "bom",
        "Write the ML-BOM (CycloneDX 1.6 JSON): model, datasets, model card.",
    ),
    LazyCommand(
        "scan",
        "donjon.cli.scan",
        "scan",
        "Scan model files without loading them; exit 1 on findings at or above --fail-on.",
    ),
    LazyCommand(
        "samples",
        "donjon.cli.scan",
        "samples",
        "Write a small corpus of benign and malicious model files (made without ML libraries).",
    ),
    LazyCommand(
        "quickstart",
        "donjon.cli.quickstart",
        "quickstart",
        "Run a guarded ML lifecycle on embedded defaults, narrated step by step.",
    ),
    LazyCommand(
        "up",
        "donjon.cli.up",
        "up",
        "Start the vault, a gateway per config and the metrics endpoint; Ctrl-C stops all.",
    ),
    LazyCommand("rules", "donjon.cli.rules", "app", "List and document the detection rules."),
    LazyCommand("config", "donjon.cli.config", "app", "Inspect Donjon's settings."),
    LazyCommand("events", "donjon.cli.events", "app", "Read the security events Donjon recorded."),
    LazyCommand(
        "access",
        "donjon.cli.access",
        "app",
        "Who may do what: explain, who-can, users, groups, tokens.",
        {"no_args_is_help": True},
    ),
    LazyCommand("audit", "donjon.cli.audit", "app", "The tamper-evident audit ledger."),
    LazyCommand(
        "datasets", "donjon.cli.datasets", "app", "Push, pull and list datasets in the vault."
    ),
    LazyCommand(
        "models", "donjon.cli.models", "app", "Push, pull, promote and list models in the vault."
    ),
    LazyCommand("metrics", "donjon.cli.metrics", "app", "Prometheus metrics."),
    LazyCommand(
        "monitor", "donjon.cli.monitor", "app", "Watch metrics against their learnt baselines."
    ),
    LazyCommand("report", "donjon.cli.report", "app", "Write the HTML posture report."),
    LazyCommand("keys", "donjon.cli.keys", "app", "Generate and list signing keys."),
    LazyCommand("attest", "donjon.cli.attest", "app", "Show and verify training-run provenance."),
    LazyCommand(
        "data",
        "donjon.cli.data",
        "app",
        "Dataset manifests, diffs, provenance filtering and poisoning checks.",
    ),
    LazyCommand(
        "gateway",
        "donjon.cli.gateway",
        "app",
        "Guard deployed models: authenticate, rate-limit, detect attacks, harden outputs.",
    ),
)

app = typer.Typer(
    name="donjon",
    help="Donjon secures the machine-learning lifecycle: scan, sign, guard, watch and report.",
    cls=lazy_group(COMMANDS),
    no_args_is_help=True,
    add_completion=False,
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
