"""``donjon mlflow``: gate MLflow's model registry (webhooks in, verdict tags out).

``serve`` receives MLflow's webhooks, ``review`` checks one version now,
``webhook`` registers the receiver with an MLflow server. The webhook secret
is read from an environment variable, never from the command line.
"""

from __future__ import annotations

import dataclasses
import os
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

from donjon.cli.state import ExitCode, state

if TYPE_CHECKING:
    from donjon.app.mlflow import MlflowOptions

app = typer.Typer(
    help="Gate MLflow's model registry: scan and verify each version, tag it, guard aliases.",
    no_args_is_help=True,
)

WEBHOOK_EVENTS = (
    "model_version.created",
    "model_version_tag.set",
    "model_version_tag.deleted",
    "model_version_alias.created",
)

TrackingUri = Annotated[
    str,
    typer.Option(
        "--tracking-uri", envvar="MLFLOW_TRACKING_URI", help="The MLflow server (http://...)."
    ),
]
SECRET_ENV = "DONJON_MLFLOW_WEBHOOK_SECRET"  # noqa: S105 - a variable name, not a secret
SecretEnv = Annotated[
    str,
    typer.Option("--secret-env", help="Environment variable holding the webhook's HMAC secret."),
]
Protect = Annotated[
    list[str] | None,
    typer.Option(
        "--protect",
        help="A protected alias, removed from a failing version (repeatable; default "
        "champion and production).",
    ),
]
PolicyFile = Annotated[
    Path | None,
    typer.Option(
        "--policy",
        dir_okay=False,
        help="Verification policy (TOML): signature, provenance; without it only the scan gates.",
    ),
]
FailOn = Annotated[
    str, typer.Option("--fail-on", help="Scan findings at or above this severity fail.")
]


def _secret(variable: str) -> str:
    value = os.environ.get(variable, "")
    if not value:
        raise typer.BadParameter(
            f"set the webhook secret in ${variable} (the same one MLflow's webhook holds)",
            param_hint="--secret-env",
        )
    return value


def _require_mlflow() -> None:
    import importlib.util

    if importlib.util.find_spec("mlflow") is None:
        raise typer.BadParameter("needs MLflow's client: pip install 'donjon[mlflow]'")


def _options(
    tracking_uri: str,
    public_url: str,
    protect: list[str] | None,
    policy: Path | None,
    fail_on: str,
) -> MlflowOptions:
    from donjon.app.mlflow import MlflowOptions
    from donjon.core.severity import Severity

    try:
        threshold = Severity.parse(fail_on)
    except ValueError as e:
        raise typer.BadParameter(str(e), param_hint="--fail-on") from e
    return MlflowOptions(
        tracking_uri=tracking_uri,
        public_url=public_url,
        protected_aliases=tuple(protect) if protect else ("champion", "production"),
        policy_file=policy,
        fail_on=threshold,
    )


@app.command("serve")
def serve(
    ctx: typer.Context,
    tracking_uri: TrackingUri,
    host: Annotated[str, typer.Option("--host", help="Bind address.")] = "127.0.0.1",
    port: Annotated[int, typer.Option("--port", min=0, max=65535)] = 8470,
    public_url: Annotated[
        str | None,
        typer.Option(
            "--public-url", help="This service's URL as MLflow users reach it (evidence links)."
        ),
    ] = None,
    secret_env: SecretEnv = SECRET_ENV,
    protect: Protect = None,
    policy: PolicyFile = None,
    fail_on: FailOn = "medium",
    workers: Annotated[
        int,
        typer.Option(
            "--workers", min=1, max=64, help="Versions reviewed at once (in order per version)."
        ),
    ] = 2,
    drain_seconds: Annotated[
        float,
        typer.Option(
            "--drain-seconds",
            min=0,
            help="On SIGTERM, keep reviewing queued deliveries this long at most.",
        ),
    ] = 10.0,
) -> None:
    """Receive MLflow's registry webhooks: review each version, tag it, guard aliases."""
    _require_mlflow()
    secret = _secret(secret_env)
    import uvicorn

    from donjon.app.mlflow import mlflow_service

    cli = state(ctx)
    options = _options(
        tracking_uri, public_url or f"http://{host}:{port}", protect, policy, fail_on
    )
    served = mlflow_service(
        cli.app, dataclasses.replace(options, workers=workers, drain_seconds=drain_seconds), secret
    )
    cli.info(f"donjon mlflow on http://{host}:{port}/webhook -> {tracking_uri}")
    uvicorn.run(served, host=host, port=port, log_level="warning", proxy_headers=False)


@app.command("review")
def review(
    ctx: typer.Context,
    name: Annotated[str, typer.Argument(help="Registered model name.")],
    version: Annotated[str, typer.Argument(help="Model version.")],
    tracking_uri: TrackingUri,
    public_url: Annotated[
        str, typer.Option("--public-url", help="The serving receiver's URL (evidence links).")
    ] = "http://127.0.0.1:8470",
    protect: Protect = None,
    policy: PolicyFile = None,
    fail_on: FailOn = "medium",
) -> int:
    """Review one model version now (as the webhook would); exit 1 when it fails."""
    _require_mlflow()
    from donjon.app.mlflow import mlflow_gate

    cli = state(ctx)
    options = _options(tracking_uri, public_url, protect, policy, fail_on)
    verdict = mlflow_gate(cli.app, options).review(name, version)
    if cli.json:
        cli.print_json(verdict.to_dict())
    else:
        out = cli.out if verdict.passed else cli.err
        out.print(verdict.summary(), markup=False, soft_wrap=True)
        for reason in verdict.reasons:
            out.print(f"  - {reason}", markup=False, soft_wrap=True)
    return ExitCode.OK if verdict.passed else ExitCode.FINDINGS


@app.command("webhook")
def webhook(
    ctx: typer.Context,
    url: Annotated[
        str, typer.Argument(help="The receiver's URL, e.g. https://donjon:8470/webhook.")
    ],
    tracking_uri: TrackingUri,
    name: Annotated[str, typer.Option("--name", help="The webhook's name in MLflow.")] = "donjon",
    secret_env: SecretEnv = SECRET_ENV,
) -> None:
    """Register the receiver with MLflow for version, tag and alias events."""
    _require_mlflow()
    from donjon.integrations.mlflow.registry import MlflowRegistry

    cli = state(ctx)
    created = MlflowRegistry(tracking_uri).create_webhook(
        name, url, list(WEBHOOK_EVENTS), _secret(secret_env)
    )
    if cli.json:
        cli.print_json({"webhook_id": created, "url": url, "events": list(WEBHOOK_EVENTS)})
    else:
        cli.out.print(f"webhook {name!r} ({created}) -> {url}", markup=False)
