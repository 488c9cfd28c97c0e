"""``donjon up``: the vault, gateways and the metrics endpoint, kept running together.

Everything runs in this process on embedded defaults (or the settings' database):
the vault (``donjon.server``) and one reverse proxy per gateway config, each
served by uvicorn in a thread, the Prometheus endpoint of the bus's metrics, and
the watch's scheduled fingerprint checks and probes (``[watch]``).
:meth:`Stack.stop` (called on Ctrl-C) stops all of them.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from donjon.app import Donjon, build_vault, vault_access
from donjon.errors import ConfigError
from donjon.quickstart.vault import LoopbackServer

if TYPE_CHECKING:
    from donjon.app import VaultServices


@dataclass
class Stack:
    services: dict[str, str] = field(default_factory=dict)  # name -> URL
    _stoppers: list[Any] = field(default_factory=list)

    def stop(self) -> None:
        while self._stoppers:
            stopper = self._stoppers.pop()
            stopper()


def start_stack(
    app: Donjon,
    *,
    vault_port: int | None = None,
    gateways: Sequence[tuple[Path, int]] = (),
    metrics_port: int | None = None,
    host: str | None = None,
) -> Stack:
    """Start everything; on any failure, stop what already started and raise."""
    settings = app.settings
    bind = host or settings.vault.host
    stack = Stack()
    try:
        _start_vault(app, stack, bind, settings.vault.port if vault_port is None else vault_port)
        for index, (config, port) in enumerate(gateways, start=1):
            _start_gateway(app, stack, config, bind, port, f"gateway-{index}")
        _start_metrics(
            app,
            stack,
            bind,
            settings.monitor.metrics_port if metrics_port is None else metrics_port,
        )
    except BaseException:
        stack.stop()
        raise
    return stack


def _start_vault(app: Donjon, stack: Stack, host: str, port: int) -> None:
    from donjon.server import ServerLimits, create_app
    from donjon.server.ui.wiring import ConsoleOptions, add_console

    settings = app.settings
    authenticator, authorizer = vault_access(settings, app.bus)
    services = build_vault(settings, authenticator, authorizer, app.bus, app=app)
    stack._stoppers.append(services.close)
    vault = create_app(
        services.registry,
        services.authenticator,
        app.bus,
        limits=ServerLimits.from_settings(settings.vault),
    )
    identify = getattr(authenticator, "verify", None) or authenticator.authenticate
    add_console(
        vault,
        services.registry,
        identify,
        ledger=app.ledger,
        dispatcher=app.dispatcher,
        options=ConsoleOptions.from_settings(settings.vault),
    )
    server = LoopbackServer(vault, host=host, port=port)
    server.start()
    stack._stoppers.append(server.stop)
    stack.services["vault"] = server.url
    stack.services["console"] = f"{server.url}/ui"
    _start_watch(app, stack, services)


def _start_watch(app: Donjon, stack: Stack, services: VaultServices) -> None:
    """Fingerprint checks and probes of the watched versions, on their schedules."""
    from donjon.app.watch_schedule import up_scheduler

    scheduler = up_scheduler(app.settings, services.registry, app.bus, services.database)
    if scheduler is None:
        return
    scheduler.start()
    stack._stoppers.append(scheduler.stop)
    watch = app.settings.watch
    if watch.models or scheduler.runner.watchlist.load():
        stack.services["watch"] = (
            f"checks every {watch.check_seconds:g} s, probes every {watch.probe_seconds:g} s"
        )


def _start_gateway(
    app: Donjon, stack: Stack, config: Path, host: str, port: int, name: str
) -> None:
    from donjon.app import gateway_pipeline
    from donjon.gateway import load_gateway_settings
    from donjon.gateway.proxy import create_proxy

    settings = load_gateway_settings(config)
    if not settings.upstream:
        raise ConfigError(f"{config}: 'upstream' (the model server URL) is needed for donjon up")
    pipeline = gateway_pipeline(app.settings, settings, app.bus)  # vault auth when configured
    proxy = create_proxy(
        pipeline,
        settings.upstream,
        timeout=settings.upstream_timeout,
        metrics_path=settings.metrics_path,
    )
    server = LoopbackServer(proxy, host=host, port=port)
    server.start()
    stack._stoppers.append(server.stop)
    models = ",".join(m.name for m in pipeline.models)
    stack.services[f"{name} ({models})"] = server.url


def _start_metrics(app: Donjon, stack: Stack, host: str, port: int) -> None:
    if app.metrics is None:
        return
    from prometheus_client import start_http_server

    try:
        server, thread = start_http_server(port, host, app.metrics.registry)
    except OSError as e:
        raise ConfigError(f"cannot serve metrics on {host}:{port}: {e.strerror}") from e

    def stop() -> None:
        server.shutdown()
        server.server_close()
        thread.join(5)

    stack._stoppers.append(stop)
    stack.services["metrics"] = f"http://{host}:{server.server_port}/metrics"
