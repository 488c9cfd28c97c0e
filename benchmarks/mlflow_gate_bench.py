"""How soon a model version registered in MLflow carries Donjon's verdict.

    python benchmarks/mlflow_gate_bench.py [--versions 10]

Starts a real ``mlflow server`` (SQLite, proxied artifacts) and ``donjon mlflow
serve`` (with a signature policy), registers --versions malicious sklearn
models (``champion`` alias set at once) and as many clean signed ones, and
times, from the moment ``create_model_version`` returns: the failing
``donjon.verdict`` tag, the alias gone, and the passing tag. Beside it, the
same review run in-process on demand (``MlflowGate.review``: download, scan,
verify, tag), which is the floor the webhook path adds its delivery to.
Target (issue 20): a failing tag and the alias gone within 5 s.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))

import mlflow
import numpy as np
from sklearn.linear_model import LogisticRegression
from tests.integrations.mlflow_env import SECRET, donjon_receiver, mlflow_server

from donjon.app import build
from donjon.app.mlflow import MlflowOptions, mlflow_gate
from donjon.config import load_settings
from donjon.provenance.keys import FileKeySigner, generate_private_key, public_pem
from donjon.provenance.sign import sign_model
from donjon.scan.samples_pickle import call, glob0, p2, shell


def _model(folder: Path, signer: FileKeySigner, evil: bool) -> Path:
    x = np.array([[0.0], [1.0], [2.0], [3.0]])
    clf = LogisticRegression().fit(x, np.array([0, 0, 1, 1]))
    mlflow.sklearn.save_model(
        clf, folder, pip_requirements=["scikit-learn"], serialization_format="pickle"
    )
    if evil:
        (folder / "model.pkl").write_bytes(p2(call(glob0("os", "system"), shell())))
    sign_model(folder, signer, folder / "model.sig")
    return folder


def _wait(probe: Callable[[], bool], since: float, timeout: float = 60) -> float:
    """Seconds from ``since`` until ``probe()`` holds (polled every 20 ms)."""
    while time.perf_counter() - since < timeout:
        if probe():
            return time.perf_counter() - since
        time.sleep(0.02)
    raise TimeoutError("no verdict")


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--versions", type=int, default=10)
    args = parser.parse_args()
    work = Path(tempfile.mkdtemp(prefix="mlflow-gate-bench-"))
    key = generate_private_key()
    (work / "release.pub").write_bytes(public_pem(key.public_key()))
    (work / "policy.toml").write_text('[signature]\npublic_keys = ["release.pub"]\n')
    signer = FileKeySigner(key)
    policy = ["--policy", str(work / "policy.toml"), "--protect", "champion"]
    with (
        mlflow_server(work / "mlflow") as tracking_server,
        donjon_receiver(work / "home", tracking_server.url, *policy) as receiver_server,
    ):
        tracking, receiver = tracking_server.ready(), receiver_server.ready()
        client = mlflow.MlflowClient(tracking_uri=tracking, registry_uri=tracking)
        client.create_webhook(
            "donjon",
            f"{receiver}/webhook",
            ["model_version.created", "model_version_alias.created"],
            secret=SECRET,
        )
        experiment = client.create_experiment("bench")

        def register(name: str, folder: Path) -> str:
            run = client.create_run(experiment).info.run_id
            client.log_artifacts(run, str(folder), "model")
            client.create_registered_model(name)
            return str(client.create_model_version(name, f"runs:/{run}/model", run_id=run).version)

        def tag(name: str, version: str) -> str | None:
            return client.get_model_version(name, version).tags.get("donjon.verdict")

        def alias_gone(name: str) -> bool:
            try:
                client.get_model_version_by_alias(name, "champion")
            except mlflow.exceptions.MlflowException:
                return True
            return False

        failing, removed, passing, on_demand = [], [], [], []
        for i in range(args.versions):
            evil = _model(work / f"evil-{i}", signer, evil=True)
            name, version = f"evil-{i}", register(f"evil-{i}", evil)
            start = time.perf_counter()
            client.set_registered_model_alias(name, "champion", version)
            failing.append(_wait(lambda n=name, v=version: tag(n, v) == "failed", start))
            removed.append(_wait(lambda n=name: alias_gone(n), start))
            clean = _model(work / f"clean-{i}", signer, evil=False)
            name, version = f"clean-{i}", register(f"clean-{i}", clean)
            start = time.perf_counter()
            passing.append(_wait(lambda n=name, v=version: tag(n, v) == "passed", start))
        settings = load_settings(None, home=work / "on-demand")
        gate = mlflow_gate(
            build(settings),
            MlflowOptions(tracking, receiver, policy_file=work / "policy.toml"),
        )
        for i in range(args.versions):
            started = time.perf_counter()
            gate.review(f"evil-{i}", "1")
            on_demand.append(time.perf_counter() - started)

    def row(label: str, values: list[float]) -> None:
        print(f"{label:<42} median {statistics.median(values):6.2f} s  max {max(values):6.2f} s")

    print(f"{args.versions} malicious and {args.versions} clean versions, 1 receiver worker")
    row("failing donjon.verdict after registering", failing)
    row("protected alias removed after registering", removed)
    row("passing donjon.verdict after registering", passing)
    row("review on demand (download+scan+verify+tag)", on_demand)
    print(
        f"webhook path / on-demand review (median): "
        f"{statistics.median(failing) / statistics.median(on_demand):.2f}x"
    )


if __name__ == "__main__":
    main()
