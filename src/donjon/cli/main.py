"""The ``donjon`` command: global options, sub-command wiring and exit codes.

Exit codes: 0 clean, 1 findings at or above the threshold (or a failed
verification), 2 usage or runtime error. ``main(argv)`` returns the code, so
tests call it directly; ``run()`` is the console-script entry point.

A plain ``donjon scan`` on built-in settings runs without Typer or pydantic
(``donjon.cli.fastscan``); every other command line goes through the Typer
application (``donjon.cli.root``), whose sub-commands are imported only when
they run (``donjon.cli.commands``).
"""

from __future__ import annotations

import sys
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from donjon.cli.state import configure_logging

if TYPE_CHECKING:
    from donjon.cli.commands import COMMANDS

__all__ = ["COMMANDS", "main", "run"]


def main(argv: Sequence[str] | None = None) -> int:
    """Run the CLI with ``argv`` (default ``sys.argv[1:]``) and return the exit code."""
    args = list(sys.argv[1:] if argv is None else argv)
    from donjon.cli.fastscan import try_scan

    code = try_scan(args)  # configures logging when it builds the application
    if code is not None:
        return code
    configure_logging()
    from donjon.cli.root import run_app

    return run_app(args)


def __getattr__(name: str) -> Any:
    if name == "COMMANDS":  # the table is read when Typer runs, not by a plain scan
        from donjon.cli.commands import COMMANDS

        return COMMANDS
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def run() -> None:
    sys.exit(main())
