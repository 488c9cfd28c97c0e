"""What the global options decide, shared by every sub-command."""

from __future__ import annotations

import enum
import os
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:  # imported when first used: `donjon --help` stays fast
    import typer
    from rich.console import Console

    from donjon.app import Donjon
    from donjon.config import Settings


class OutputFormat(enum.StrEnum):
    TEXT = "text"
    JSON = "json"


class ExitCode(enum.IntEnum):
    """Documented exit codes of every ``donjon`` command."""

    OK = 0  # clean: nothing at or above the threshold
    FINDINGS = 1  # findings at or above the threshold, or a failed verification
    ERROR = 2  # usage or runtime error


@dataclass
class CliState:
    format: OutputFormat = OutputFormat.TEXT
    quiet: bool = False
    config_file: Path | None = None
    home: Path | None = None
    _settings: Settings | None = None
    _app: Donjon | None = None
    _out: Console | None = None
    _err: Console | None = None

    # Rich is imported with the first console (JSON output needs none). Emoji codes are
    # off: a ":name:" in a file name or a finding is printed as it is, not as a picture.
    @property
    def out(self) -> Console:
        if self._out is None:
            from rich.console import Console

            self._out = Console(highlight=False, soft_wrap=True, emoji=False)
        return self._out

    @property
    def err(self) -> Console:
        if self._err is None:
            from rich.console import Console

            self._err = Console(stderr=True, highlight=False, emoji=False)
        return self._err

    def out_is_terminal(self) -> bool:
        """Whether ``out`` writes to a terminal, as Rich decides, without importing Rich."""
        return self._out.is_terminal if self._out is not None else _is_terminal(sys.stdout)

    def out_file(self) -> Any:
        """Where ``out`` writes (standard output unless a console was set), for plain text."""
        return self._out.file if self._out is not None else sys.stdout

    def err_file(self) -> Any:
        """Where ``err`` writes (standard error unless a console was set), for plain text."""
        return self._err.file if self._err is not None else sys.stderr

    def err_is_terminal(self) -> bool:
        """Whether ``err`` writes to a terminal, as Rich decides, without importing Rich."""
        return self._err.is_terminal if self._err is not None else _is_terminal(sys.stderr)

    @property
    def json(self) -> bool:
        return self.format is OutputFormat.JSON

    @property
    def settings(self) -> Settings:
        if self._settings is None:
            from donjon.config import load_settings

            configure_logging()  # before the settings and the application can log

            self._settings = load_settings(self.config_file, home=self.home)
        return self._settings

    @property
    def app(self) -> Donjon:
        if self._app is None:
            from donjon.app import build

            self._app = build(self.settings)
        return self._app

    def close(self) -> None:
        if self._app is not None:
            self._app.close()

    def print_json(self, data: Any) -> None:
        """Machine-readable output: plain JSON on stdout, nothing else."""
        import json

        sys.stdout.write(json.dumps(data, indent=2, sort_keys=False, default=str) + "\n")

    def info(self, message: str) -> None:
        """Human chatter on stderr, silenced by --quiet and in JSON mode; printed as it is
        (no Rich markup: ``model[v1].bin`` and ``donjon[data]`` keep their brackets)."""
        if not self.quiet and not self.json:
            self.err.print(message, markup=False)


def configure_logging() -> None:
    """The log format of every command (``logging`` is imported here, not by a clean scan)."""
    import logging

    logging.basicConfig(format="%(levelname)s %(name)s: %(message)s")


def _is_terminal(stream: Any) -> bool:
    """Rich's ``Console.is_terminal`` for a console not built yet: the ``TTY_COMPATIBLE``
    and ``FORCE_COLOR`` variables first, then the stream's ``isatty``."""
    compatible = os.environ.get("TTY_COMPATIBLE", "")
    if compatible in ("0", "1"):
        return compatible == "1"
    force = os.environ.get("FORCE_COLOR")
    if force is not None:
        return force != ""
    isatty = getattr(stream, "isatty", None)
    try:
        return False if isatty is None else bool(isatty())
    except ValueError:  # a closed stream
        return False


def state(ctx: typer.Context) -> CliState:
    obj = ctx.find_root().obj
    if not isinstance(obj, CliState):
        obj = CliState()
        ctx.find_root().obj = obj
    return obj
