"""``donjon metrics serve``: Prometheus metrics of the recorded events and the outbox."""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Annotated

import typer

from donjon.cli.state import state
from donjon.core.events import SecurityEvent
from donjon.errors import MonitorError

app = typer.Typer(help="Prometheus metrics.", no_args_is_help=True)


class _Follower:
    """Reads the events appended to a JSON-lines file since the last call."""

    def __init__(self, path: Path) -> None:
        self.path, self.offset, self._partial = path, 0, b""

    def new_events(self) -> list[SecurityEvent]:
        if not self.path.exists():
            return []
        size = self.path.stat().st_size
        if size < self.offset:  # rotated: start the new file from the top
            self.offset, self._partial = 0, b""
        with self.path.open("rb") as f:
            f.seek(self.offset)
            data = self._partial + f.read()
            self.offset = f.tell()
        *lines, self._partial = data.split(b"\n")
        out = []
        for line in lines:
            if line.strip():
                try:
                    out.append(SecurityEvent.from_dict(json.loads(line)))
                except ValueError:
                    continue  # one bad line never stops the exporter
        return out


@app.command("serve")
def serve(
    ctx: typer.Context,
    host: Annotated[str | None, typer.Option(help="Address (default: settings).")] = None,
    port: Annotated[int | None, typer.Option(help="Port (default: settings).")] = None,
    path: Annotated[Path | None, typer.Option("--file", help="Event file to follow.")] = None,
    duration: Annotated[
        float | None, typer.Option("--for", help="Stop after this many seconds.")
    ] = None,
    poll: Annotated[float, typer.Option(help="Seconds between reads of the event file.")] = 1.0,
) -> None:
    """Serve /metrics: counters from the event file (replayed, then followed) + outbox lag."""
    from prometheus_client import start_http_server

    from donjon.monitor.metrics import DonjonMetrics

    cli = state(ctx)
    settings = cli.settings
    metrics = DonjonMetrics()
    dispatcher = cli.app.dispatcher
    if dispatcher is not None:
        metrics.track_outbox(dispatcher.lag, dispatcher.store.dead_letters, dispatcher.guarantees())
    follower = _Follower(path or settings.events_path)
    address = host or settings.monitor.metrics_host
    try:
        server, thread = start_http_server(
            settings.monitor.metrics_port if port is None else port, address, metrics.registry
        )
    except OSError as e:
        raise MonitorError(f"cannot serve metrics on {address}: {e.strerror}") from e
    cli.info(f"serving http://{address}:{server.server_port}/metrics")
    deadline = None if duration is None else time.monotonic() + duration
    try:
        while deadline is None or time.monotonic() < deadline:
            for event in follower.new_events():
                metrics.emit(event)
            time.sleep(
                poll if deadline is None else min(poll, max(0.0, deadline - time.monotonic()))
            )
    except KeyboardInterrupt:
        pass
    finally:
        server.shutdown()
        server.server_close()
        thread.join(5)
