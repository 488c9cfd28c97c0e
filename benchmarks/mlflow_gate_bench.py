"""How soon a model version registered in MLflow carries Donjon's verdict.

    python benchmarks/mlflow_gate_bench.py [--versions 10] [--workers 2] [--burst]

Starts a real ``mlflow server`` (SQLite, proxied artifacts) and ``donjon mlflow
serve`` (with a signature policy), registers --versions malicious sklearn
models (``champion`` alias set at once) and as many clean signed ones, one at a
time or (``--burst``) all at once, and times each stage from the moment
``create_model_version`` returns: the webhook's arrival, the wait in the gate's
queue, the artifacts' download through MLflow's client, scan and verification,
publishing and tagging (from the ``timings`` of each verdict's evidence
document), removing the protected alias and writing the tags (the gate's clock, when MLflow
acknowledged each write; the evidence is rewritten with them), then the tag as
a client polling every 0.25 s sees it. Beside it, the same review run in-process on demand
(``MlflowGate.review``). p50 / p95 / max per stage; a first malicious
version, registered before the measured ones, is reported apart.
Target (issue 20): a failing tag and the alias gone within 5 s.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))

import httpx
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


def _wait(probe: Callable[[], bool], timeout: float = 120) -> float:
    """The wall-clock time (epoch seconds) when ``probe()`` first holds (polled every 0.25 s:
    a client polling faster would load the single MLflow server the gate waits on)."""
    deadline = time.time() + timeout
    while time.time() < deadline:
        if probe():
            return time.time()
        time.sleep(0.25)
    raise TimeoutError("no verdict")


STAGES = (
    ("webhook delivered", "created", "received"),
    ("queued in the gate", "received", "started"),
    ("artifacts fetched (MLflow client)", "started", "fetched"),
    ("scanned and verified", "fetched", "reviewed"),
    ("verdict published (ledger, outbox)", "reviewed", "published"),
    ("protected aliases removed", "published", "aliases_checked"),
    ("tags written (after any alias removal)", "published", "tagged"),
    ("verdict tag written, after registering", "created", "tagged"),
    ("protected alias removed, after registering", "created", "aliases_checked"),
    ("verdict tag seen by a client (0.25 s polls)", "created", "seen"),
)


def _stats(values: list[float]) -> str:
    ordered = sorted(values)
    p95 = ordered[min(len(ordered) - 1, round(0.95 * (len(ordered) - 1)))]
    return f"p50 {statistics.median(ordered):6.2f}  p95 {p95:6.2f}  max {ordered[-1]:6.2f}"


def _report(label: str, runs: list[dict[str, float]]) -> None:
    print(f"{label} ({len(runs)} versions), seconds:")
    for title, start, end in STAGES:
        values = [r[end] - r[start] for r in runs if start in r and end in r]
        if values:
            print(f"  {title:<42} {_stats(values)}")


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--versions", type=int, default=10)
    parser.add_argument("--workers", type=int, default=2, help="the receiver's review threads")
    parser.add_argument(
        "--burst", action="store_true", help="register every version before waiting for any"
    )
    args = parser.parse_args()
    work = Path(tempfile.mkdtemp(prefix="mlflow-gate-bench-"))
    key = generate_private_key()
    (work / "release.pub").write_bytes(public_pem(key.public_key()))
    (work / "policy.toml").write_text('[signature]\npublic_keys = ["release.pub"]\n')
    signer = FileKeySigner(key)
    policy = ["--policy", str(work / "policy.toml"), "--protect", "champion"]
    policy += ["--workers", str(args.workers)]
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
        folders = {
            f"{kind}-{i}": _model(work / f"{kind}-{i}", signer, evil=kind == "evil")
            for i in range(args.versions)
            for kind in ("evil", "clean")
        }
        # A first malicious version, reported apart: the MLflow server's own first
        # requests (its lazy imports, its first artifact downloads) are the slowest.
        folders["first"] = _model(work / "first", signer, evil=True)
        evil = {name for name in folders if not name.startswith("clean")}
        runs: dict[str, dict[str, float]] = {}

        def register(name: str) -> None:
            run = client.create_run(experiment).info.run_id
            client.log_artifacts(run, str(folders[name]), "model")
            client.create_registered_model(name)
            version = client.create_model_version(name, f"runs:/{run}/model", run_id=run)
            runs[name] = {"created": time.time()}
            if name in evil:
                client.set_registered_model_alias(name, "champion", str(version.version))

        def tags(name: str) -> dict[str, str]:
            return dict(client.get_model_version(name, "1").tags)

        def alias_gone(name: str) -> bool:
            try:
                client.get_model_version_by_alias(name, "champion")
            except mlflow.exceptions.MlflowException:
                return True
            return False

        def settle(name: str) -> None:
            want = "failed" if name in evil else "passed"
            runs[name]["seen"] = _wait(lambda: tags(name).get("donjon.verdict") == want)
            if name in evil:
                _wait(lambda: alias_gone(name))  # a check: the time is the gate's own
            url = tags(name)["donjon.evidence"]

            def timed() -> bool:  # the evidence is rewritten with the tagging time just after
                runs[name].update(httpx.get(url, timeout=10).json()["timings"])
                return "tagged" in runs[name]

            _wait(timed)

        register("first")
        settle("first")
        measured = [name for name in folders if name != "first"]
        if args.burst:
            for name in measured:
                register(name)
            for name in measured:
                settle(name)
        else:
            for name in measured:
                register(name)
                settle(name)
        settings = load_settings(None, home=work / "on-demand")
        gate = mlflow_gate(
            build(settings),
            MlflowOptions(tracking, receiver, policy_file=work / "policy.toml"),
        )
        on_demand = []
        for i in range(args.versions):
            started = time.perf_counter()
            gate.review(f"evil-{i}", "1")
            on_demand.append(time.perf_counter() - started)

    mode = "registered at once" if args.burst else "registered one at a time"
    print(
        f"{args.versions} malicious and {args.versions} clean versions, {mode}; "
        f"{args.workers} review threads; load average {os.getloadavg()[0]:.1f}"
    )
    if args.burst:  # the client polls only once every version is registered: not a latency
        for run in runs.values():
            run.pop("seen", None)
    _report("first version after the servers started, malicious", [runs["first"]])
    _report("malicious", [r for n, r in runs.items() if n.startswith("evil")])
    _report("clean, signed", [r for n, r in runs.items() if n.startswith("clean")])
    print(f"review on demand (download+scan+verify+tag): {_stats(on_demand)}")


if __name__ == "__main__":
    main()
