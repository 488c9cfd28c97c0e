"""MLflow wiring: the registry gate over Donjon's bus, the scan settings and a policy file."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from donjon.app.scan import scan_policy
from donjon.app.service import Asgi, with_delivery
from donjon.app.wiring import Donjon
from donjon.core.severity import Severity

if TYPE_CHECKING:
    from donjon.integrations.mlflow.gate import MlflowGate


@dataclass(frozen=True)
class MlflowOptions:
    tracking_uri: str
    public_url: str  # where MLflow users reach this service: the evidence links' base
    registry_uri: str | None = None
    protected_aliases: tuple[str, ...] = ("champion", "production")
    policy_file: Path | None = None
    fail_on: Severity = Severity.MEDIUM
    evidence_dir: Path | None = None  # default $DONJON_HOME/mlflow/evidence
    workers: int = 2  # reviews at once (threads), in order per model version
    drain_seconds: float = 10.0  # on stop, work through the queue this long at most


def mlflow_gate(donjon: Donjon, options: MlflowOptions) -> MlflowGate:
    """The gate: MLflow's client, Donjon's bus, the evidence folder, the review policy."""
    from donjon.integrations.mlflow.gate import EvidenceStore, GateSettings, MlflowGate
    from donjon.integrations.mlflow.registry import MlflowRegistry
    from donjon.integrations.mlflow.review import ReviewPolicy
    from donjon.provenance.policy import Policy

    verify = Policy.load(options.policy_file) if options.policy_file is not None else None
    policy = ReviewPolicy(fail_on=options.fail_on, scan=scan_policy(donjon.settings), verify=verify)
    folder = options.evidence_dir or donjon.settings.home / "mlflow" / "evidence"
    return MlflowGate(
        MlflowRegistry(options.tracking_uri, options.registry_uri),
        donjon.bus,
        EvidenceStore(folder, options.public_url),
        GateSettings(policy, frozenset(options.protected_aliases)),
    )


def mlflow_service(donjon: Donjon, options: MlflowOptions, secret: str) -> Asgi:
    """The webhook receiver as an ASGI app, with the outbox delivered while it is served."""
    from donjon.integrations.mlflow.http import webhook_app
    from donjon.integrations.mlflow.webhook import DeliveryVerifier
    from donjon.integrations.mlflow.worker import GateWorker

    worker = GateWorker(mlflow_gate(donjon, options), workers=options.workers)
    receiver = webhook_app(DeliveryVerifier(secret), worker, options.drain_seconds)
    return with_delivery(receiver, donjon)
