"""``donjon up``: vault, gateways and metrics together; Ctrl-C stops all of them."""

from __future__ import annotations

import signal
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Annotated

import typer

from donjon.cli.state import ExitCode, state


def up(
    ctx: typer.Context,
    gateway: Annotated[
        list[Path] | None,
        typer.Option(
            "--gateway",
            "-g",
            help="A gateway config (TOML, with upstream); repeatable.",
            dir_okay=False,
        ),
    ] = None,
    gateway_port: Annotated[
        int, typer.Option(min=0, max=65535, help="Port of the first gateway (then +1...).")
    ] = 8000,
    vault_port: Annotated[int | None, typer.Option(min=0, max=65535)] = None,
    metrics_port: Annotated[int | None, typer.Option(min=0, max=65535)] = None,
    host: Annotated[str | None, typer.Option(help="Bind address (default: vault.host).")] = None,
    duration: Annotated[
        float | None, typer.Option("--for", help="Stop after this many seconds.")
    ] = None,
) -> int:
    """Start the vault, a gateway per config and the metrics endpoint; Ctrl-C stops all.

    Events go to the event file and the sinks in the background while they run."""
    from donjon.quickstart.up import start_stack

    cli = state(ctx)
    configs = list(gateway or [])
    ports = [0 if gateway_port == 0 else gateway_port + i for i in range(len(configs))]
    with stop_on_sigterm(), cli.app.delivering():  # the relay runs while the stack does
        stack = start_stack(
            cli.app,
            vault_port=vault_port,
            gateways=list(zip(configs, ports, strict=True)),
            metrics_port=metrics_port,
            host=host,
        )
        try:
            if cli.json:
                cli.print_json(stack.services)
            else:
                for name, url in stack.services.items():
                    cli.out.print(f"{name}: {url}", markup=False)
                cli.info("press Ctrl-C to stop")
            deadline = None if duration is None else time.monotonic() + duration
            while deadline is None or time.monotonic() < deadline:
                time.sleep(0.2)
        except KeyboardInterrupt:
            cli.info("stopping")
        finally:
            stack.stop()
    return ExitCode.OK


@contextmanager
def stop_on_sigterm() -> Iterator[None]:
    """SIGTERM (a service manager's stop) stops the stack as Ctrl-C does, so it drains."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return

    def interrupt(_signum: int, _frame: object) -> None:
        raise KeyboardInterrupt

    previous = signal.signal(signal.SIGTERM, interrupt)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)
