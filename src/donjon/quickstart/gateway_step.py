"""Step 5: the model behind the inference firewall, then two black-box attacks.

The deployed model answers through :class:`~donjon.gateway.GuardedModel` (the same
pipeline as the reverse proxy) with API keys, a reference profile of the
training data and the default detectors. Three callers use it:

* ``frontend`` sends natural digits (the hold-out set): it must never be refused;
* ``mallory`` runs a decision-based evasion walk (the HopSkipJump pattern): a
  bisection along the line from her digit to one of another class to find the
  decision boundary, then small probes around the boundary point;
* ``eve`` tries to extract the model with synthetic queries (uniform noise
  images, the KnockoffNets / Jacobian-augmentation pattern).
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt

from donjon.core.bus import EventBus
from donjon.quickstart.weights import LinearModel

ROUTE = "/v1/models/digits-clf:predict"
CALLERS = ("frontend", "mallory", "eve")
Array = npt.NDArray[np.float64]


@dataclass
class AttackOutcome:
    caller: str
    queries: int = 0
    refused_by: str | None = None  # the rule that refused the caller
    status: int | None = None
    notes: list[str] = field(default_factory=list)


@dataclass
class Deployment:
    guarded: Any  # donjon.gateway.GuardedModel
    keys: dict[str, str]
    folder: Path

    def ask(self, caller: str, rows: Array, outcome: AttackOutcome) -> Array | None:
        from donjon.gateway import Refused

        outcome.queries += len(rows)
        try:
            out = self.guarded.predict(
                rows, headers={"authorization": f"Bearer {self.keys[caller]}"}
            )
        except Refused as e:
            outcome.refused_by = e.reply.rule or e.reply.code
            outcome.status = e.status
            return None
        return np.asarray(out, dtype=np.float64)


def deploy(model: LinearModel, training: Array, folder: Path, bus: EventBus) -> Deployment:
    """Write the gateway's files (key file, profile, settings) and build the pipeline."""
    from donjon.gateway import GuardedModel, build_pipeline, build_profile, new_api_key
    from donjon.gateway.settings import GatewaySettings

    folder.mkdir(parents=True, exist_ok=True)
    keys: dict[str, str] = {}
    entries = []
    for caller in CALLERS:
        secret, entry = new_api_key(caller, caller, kind="service")
        keys[caller] = secret
        entries.append(entry)
    (folder / "api-keys.json").write_text(json.dumps({"keys": entries}, indent=2) + "\n")
    build_profile(training).save(folder / "profile.json")
    settings = GatewaySettings.model_validate(
        {
            "auth": {"api_keys_file": str(folder / "api-keys.json")},
            "models": [
                {
                    "name": "digits-clf",
                    "routes": [ROUTE],
                    "allow": list(CALLERS),
                    "features": 64,
                    "min_value": 0,
                    "max_value": 16,
                    "profile": str(folder / "profile.json"),
                    "hardening": {"decimals": 3},
                }
            ],
        }
    )
    pipeline = build_pipeline(settings, bus=bus)
    return Deployment(GuardedModel(model.predict_proba, pipeline, path=ROUTE), keys, folder)


def benign_traffic(d: Deployment, X: Array, y: npt.NDArray[np.int64]) -> AttackOutcome:
    outcome = AttackOutcome("frontend")
    correct = 0
    for start in range(0, len(X), 16):
        out = d.ask("frontend", X[start : start + 16], outcome)
        if out is None:
            return outcome
        correct += int((out.argmax(axis=1) == y[start : start + 16]).sum())
    outcome.notes.append(f"{correct}/{len(X)} answered correctly")
    return outcome


def evasion_walk(
    d: Deployment, X: Array, y: npt.NDArray[np.int64], seed: int = 3, budget: int = 300
) -> AttackOutcome:
    """Bisection to the boundary between two digits, then probes around it (integer pixels)."""
    outcome = AttackOutcome("mallory")
    rng = np.random.default_rng(seed)
    source = X[0]
    target = X[int(np.flatnonzero(y != y[0])[0])]

    def label(row: Array) -> int | None:
        out = d.ask("mallory", row[None, :], outcome)
        return None if out is None else int(out.argmax())

    start_label = label(source)
    low, high = 0.0, 1.0  # label(low) == start, label(high) != start
    while outcome.queries < budget and start_label is not None:
        mid = (low + high) / 2
        point = np.rint(source + mid * (target - source))
        got = label(point)
        if got is None:
            return outcome
        if got == start_label:
            low = mid
        else:
            high = mid
        if high - low < 1 / 64:
            break
    boundary = np.rint(source + high * (target - source))
    while outcome.queries < budget:  # gradient estimation around the boundary point
        probe = np.clip(boundary + rng.integers(-1, 2, size=boundary.shape), 0, 16)
        if label(probe) is None:
            return outcome
    outcome.notes.append(f"not stopped within {budget} queries")
    return outcome


def extraction(d: Deployment, seed: int = 5, budget: int = 500) -> AttackOutcome:
    """Synthetic queries (uniform noise images) to label a surrogate training set."""
    outcome = AttackOutcome("eve")
    rng = np.random.default_rng(seed)
    stolen = 0
    while outcome.queries < budget:
        batch = rng.integers(0, 17, size=(8, 64)).astype(np.float64)
        if d.ask("eve", batch, outcome) is None:
            outcome.notes.append(f"{stolen} labels stolen before the block")
            return outcome
        stolen += len(batch)
    outcome.notes.append(f"not stopped within {budget} queries")
    return outcome
