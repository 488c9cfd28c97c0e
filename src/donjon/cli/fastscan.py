"""``donjon scan`` without Typer or pydantic, for the plain command lines CI runs most.

Typer (which builds a pydantic adapter per parameter) and pydantic-settings take
most of the time of a scan of one model: ten times the scan of a 1 GB
checkpoint. When the command line is a plain scan and nothing could change the
``[scan]`` settings, this module runs the same :func:`~donjon.cli.scan_run.run_scan`
as the Typer command, with the built-in settings:

- the words are, exactly: global ``--format``/``-f`` (``text``, ``json``),
  ``--quiet``/``-q`` and ``--home DIR``, then ``scan`` with ``--fail-on``,
  ``--format``/``-f`` (``text``, ``json``, ``sarif``), ``--output``/``-o``,
  ``--workers N`` (N >= 1), ``--allow``, ``--force``, ``--hf-cache`` and existing
  paths (with ``--hf-cache``, cache folders, or none for the default cache);
- no ``DONJON_*`` variable but ``DONJON_HOME`` is set, and no settings file
  exists where Donjon looks for one.

Anything else (help, another command, ``--opt=value``, a value Typer would
reject, a settings file) returns ``None`` and the Typer application runs the
command line, so every usage error and message still comes from one place.
Settings are loaded (with pydantic) when a finding builds the application.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

from donjon.errors import DonjonError

# The [scan] defaults of donjon.config.ScanSettings (a test keeps them equal).
DEFAULT_FAIL_ON = "medium"
DEFAULT_RECORD_CLEAN = False

_GLOBAL_FORMATS = ("text", "json")
_SCAN_FORMATS = ("text", "json", "sarif")
_SEVERITIES = ("info", "low", "medium", "high", "critical")


class _Plan:
    """What a plain scan command line asks for (a plain class: no dataclass to build)."""

    def __init__(self) -> None:
        self.format = "text"
        self.quiet = False
        self.home: str | None = None
        self.fail_on: str | None = None
        self.scan_format: str | None = None
        self.output: str | None = None
        self.workers: int | None = None
        self.allow: list[str] = []
        self.force = False
        self.hf_cache = False
        self.paths: list[str] = []


def try_scan(args: list[str]) -> int | None:
    """Run a plain ``donjon scan`` and return its exit code; None for anything else."""
    plan = parse(args)
    if plan is None or not builtin_settings(plan.home):
        return None
    return _run(plan)


def parse(args: list[str]) -> _Plan | None:
    """The plan of a plain scan command line, or None when Typer must read it."""
    plan = _Plan()
    words = iter(args)
    for word in words:
        if word == "scan":
            break
        if word in ("--quiet", "-q"):
            plan.quiet = True
        elif word in ("--format", "-f"):
            plan.format = next(words, "")
            if plan.format not in _GLOBAL_FORMATS:
                return None
        elif word == "--home":
            plan.home = next(words, "")
        else:
            return None
    else:
        return None  # no scan command
    for word in words:
        if word in ("--force", "--hf-cache"):
            plan.force = plan.force or word == "--force"
            plan.hf_cache = plan.hf_cache or word == "--hf-cache"
            continue
        if word.startswith("-") or not word:
            value = next(words, "")
            if not value or value.startswith("-") or not _option(plan, word, value):
                return None
        else:
            plan.paths.append(word)
    if plan.home is None:
        plan.home = os.environ.get("DONJON_HOME") or None
    usable = (plan.paths or plan.hf_cache) and all(os.path.exists(p) for p in plan.paths)
    if plan.home is not None and (not plan.home or os.path.isfile(plan.home)):
        return None
    return plan if usable else None


def _option(plan: _Plan, name: str, value: str) -> bool:
    if name == "--fail-on" and value in _SEVERITIES:
        plan.fail_on = value
    elif name in ("--format", "-f") and value in _SCAN_FORMATS:
        plan.scan_format = value
    elif name in ("--output", "-o"):
        plan.output = value
    elif name == "--workers" and value.isascii() and value.isdigit() and int(value) >= 1:
        plan.workers = int(value)
    elif name == "--allow":
        plan.allow.append(value)
    else:
        return False
    return True


def builtin_settings(home: str | None) -> bool:
    """True when no variable or settings file could change Donjon's built-in settings."""
    if any(k.upper().startswith("DONJON_") and k.upper() != "DONJON_HOME" for k in os.environ):
        return False
    from donjon.config_files import find_config_file

    try:
        if find_config_file() is not None:  # the file the settings would read
            return False
    except (RuntimeError, KeyError):  # no home folder to look in: let the settings decide
        return False
    # a --home folder with a settings file: leave it to the settings too
    return not (home and (Path(home) / "config.toml").exists())


def _run(plan: _Plan) -> int:
    from donjon.cli.scan_run import ScanFormat, run_scan
    from donjon.cli.state import CliState, ExitCode, OutputFormat
    from donjon.core.severity import Severity
    from donjon.scan.policy import DEFAULT_POLICY

    cli = CliState(
        format=OutputFormat(plan.format),
        quiet=plan.quiet,
        home=Path(plan.home) if plan.home else None,
    )
    try:
        try:
            paths: list[str] | list[Path] = [Path(p) for p in plan.paths]
            hub = None
            if plan.hf_cache:
                from donjon.cli.scan_hf import hub_targets

                hub = hub_targets([Path(p) for p in plan.paths], hf_cache=True)
                paths = hub.paths
            return run_scan(
                cli,
                paths,
                hub=hub,
                policy=DEFAULT_POLICY.with_extra(allow=plan.allow),
                threshold=Severity.parse(plan.fail_on or DEFAULT_FAIL_ON),
                record_clean=DEFAULT_RECORD_CLEAN,
                fmt=ScanFormat(plan.scan_format or plan.format),
                output=Path(plan.output) if plan.output else None,
                workers=plan.workers,
                force=plan.force,
            )
        finally:
            cli.close()
    except DonjonError as e:  # as the Typer application reports it
        _echo_error(f"error: {e}")
        return ExitCode.ERROR
    except KeyboardInterrupt:
        sys.stderr.write("\nAborted.\n")
        return ExitCode.ERROR


def _echo_error(message: str) -> None:
    if sys.stderr.isatty():
        message = f"\x1b[31m{message}\x1b[0m"
    sys.stderr.write(message + "\n")
    sys.stderr.flush()
