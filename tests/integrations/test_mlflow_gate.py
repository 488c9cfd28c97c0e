"""The MLflow registry gate end to end: a real ``mlflow server`` on SQLite sends its
webhooks to a real ``donjon mlflow serve``, which reviews each version through MLflow's
client and writes the verdict back. Models are built with MLflow's own sklearn flavour;
the malicious one's ``model.pkl`` is a pickle that would run a shell command."""

from __future__ import annotations

import json
import os
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, TypeVar

import httpx
import numpy as np
import pytest

from donjon.cli.main import main
from donjon.cli.mlflow import SECRET_ENV
from donjon.integrations.mlflow.webhook import signature
from donjon.provenance.keys import FileKeySigner, generate_private_key, public_pem
from donjon.provenance.sign import sign_model
from donjon.scan.samples_pickle import CANARY, call, glob0, p2, shell
from tests.integrations.mlflow_env import SECRET, Started, donjon_receiver
from tests.support import waiting

mlflow = pytest.importorskip("mlflow")
sklearn_linear = pytest.importorskip("sklearn.linear_model")

# MLflow's own modules warn as they import (type hints, pickle formats): not ours to fix
pytestmark = [
    pytest.mark.integration,
    pytest.mark.filterwarnings("ignore::UserWarning"),
    pytest.mark.filterwarnings("ignore::FutureWarning"),
    pytest.mark.filterwarnings("ignore::DeprecationWarning"),
]
T = TypeVar("T")


def wait_for(probe: Callable[[], T | None], timeout: float = 90) -> T:
    """MLflow's review runs in the receiver's worker: its first one loads MLflow's client."""
    return waiting.wait_for(probe, timeout, "the receiver")


class Stack:
    def __init__(self, client: Any, tracking: str, receiver: str, home: Path, work: Path) -> None:
        self.client, self.tracking, self.receiver, self.home = client, tracking, receiver, home
        self.work, self.key = work, work / "release.key"
        self.experiment = client.create_experiment("donjon-gate")

    def model_folder(self, name: str, *, evil: bool = False, signed: bool = True) -> Path:
        folder = self.work / name
        x = np.array([[0.0], [1.0], [2.0], [3.0]])
        model = sklearn_linear.LogisticRegression().fit(x, np.array([0, 0, 1, 1]))
        mlflow.sklearn.save_model(
            model, folder, pip_requirements=["scikit-learn"], serialization_format="pickle"
        )
        if evil:  # the same model folder, but model.pkl runs a command when unpickled
            (folder / "model.pkl").write_bytes(p2(call(glob0("os", "system"), shell(CANARY))))
        if signed:
            signer = FileKeySigner(_load_key(self.key))
            sign_model(folder, signer, folder / "model.sig")
        return folder

    def register(self, name: str, folder: Path, alias: str | None = None) -> str:
        run = self.client.create_run(self.experiment)
        self.client.log_artifacts(run.info.run_id, str(folder), "model")
        self.client.set_terminated(run.info.run_id)
        if not self.client.search_registered_models(f"name = '{name}'"):
            self.client.create_registered_model(name)
        version = self.client.create_model_version(
            name, f"runs:/{run.info.run_id}/model", run_id=run.info.run_id
        ).version
        if alias is not None:
            self.client.set_registered_model_alias(name, alias, version)
        return str(version)

    def tags(self, name: str, version: str) -> dict[str, str]:
        return dict(self.client.get_model_version(name, version).tags)

    def verdict(self, name: str, version: str) -> dict[str, str]:
        return wait_for(lambda: (t := self.tags(name, version)).get("donjon.verdict") and t)

    def events(self) -> list[dict[str, Any]]:
        path = self.home / "events.jsonl"
        if not path.exists():
            return []
        return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]

    def expect_actions(self, model: str, wanted: set[str]) -> None:
        """Fail unless every action in ``wanted`` is recorded on ``model`` within 30 s: events
        reach the file through the outbox's relay, a moment after the registry changes."""

        def recorded() -> bool:
            actions = {e["action"] for e in self.events() if e["attributes"].get("model") == model}
            return wanted <= actions

        waiting.wait_until(recorded, 30, f"{sorted(wanted)} on {model}")


def _load_key(path: Path) -> Any:
    from donjon.provenance.keys import load_private_key

    return load_private_key(path)


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory, mlflow_tracking: Started) -> Iterator[Stack]:
    from donjon.provenance.keys import private_pem

    work = tmp_path_factory.mktemp("mlflow-gate")
    key = generate_private_key()
    (work / "release.key").write_bytes(private_pem(key))
    (work / "release.pub").write_bytes(public_pem(key.public_key()))
    (work / "policy.toml").write_text('[signature]\npublic_keys = ["release.pub"]\n')
    with donjon_receiver(
        work / "donjon-home", mlflow_tracking.url,
        "--policy", str(work / "policy.toml"), "--protect", "champion",
    ) as receiver_server:  # fmt: skip
        tracking, receiver = mlflow_tracking.ready(), receiver_server.ready()
        os.environ[SECRET_ENV] = SECRET  # `donjon mlflow webhook` registers the receiver
        try:
            assert (
                main(["mlflow", "webhook", f"{receiver}/webhook", "--tracking-uri", tracking]) == 0
            )
        finally:
            del os.environ[SECRET_ENV]
        client = mlflow.MlflowClient(tracking_uri=tracking, registry_uri=tracking)
        (hook,) = client.list_webhooks()
        assert hook.url == f"{receiver}/webhook"
        yield Stack(client, tracking, receiver, work / "donjon-home", work)


@pytest.fixture(autouse=True)
def _no_payload(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    monkeypatch.chdir(tmp_path)  # the canary would land here
    yield
    assert not (tmp_path / CANARY).exists(), "a malicious payload ran"


def test_a_clean_signed_version_is_tagged_passing_with_its_evidence(stack: Stack) -> None:
    version = stack.register("clean", stack.model_folder("clean"))
    tags = stack.verdict("clean", version)
    assert tags["donjon.verdict"] == "passed"
    assert tags["donjon.scan"] == "passed"
    assert tags["donjon.signature"] == "passed"
    assert tags["donjon.provenance"] == "not-required"
    evidence = httpx.get(tags["donjon.evidence"], timeout=10).json()
    assert evidence["model"] == f"models:/clean/{version}"
    assert evidence["passed"] is True
    scanned = {f["path"] for f in evidence["scan_report"]["files"]}
    assert f"models:/clean/{version}/model.pkl" in scanned


def test_a_malicious_version_fails_and_loses_its_protected_alias(stack: Stack) -> None:
    started = time.monotonic()
    version = stack.register("fraud", stack.model_folder("evil", evil=True), alias="champion")
    tags = stack.verdict("fraud", version)

    def alias_gone() -> bool | None:
        try:
            stack.client.get_model_version_by_alias("fraud", "champion")
        except mlflow.exceptions.MlflowException:
            return True
        return None

    wait_for(alias_gone)
    print(f"verdict and alias removal {time.monotonic() - started:.2f} s after registering")
    assert tags["donjon.verdict"] == "failed"
    assert tags["donjon.scan"] == "failed"
    assert tags["donjon.signature"] == "passed"  # signed, yet what it signed is malicious
    evidence = httpx.get(tags["donjon.evidence"], timeout=10).json()
    assert any("os.system" in reason for reason in evidence["reasons"])

    # an alias set again later is removed again; one not protected stays
    stack.client.set_registered_model_alias("fraud", "champion", version)
    stack.client.set_registered_model_alias("fraud", "candidate", version)
    wait_for(alias_gone)
    held = stack.client.get_model_version_by_alias("fraud", "candidate")
    assert str(held.version) == version

    # each scan finding is an event of its own
    wanted = {"mlflow.verdict", "mlflow.alias_removed", "mlflow.finding"}
    stack.expect_actions(f"models:/fraud/{version}", wanted)


def test_an_unsigned_version_fails_the_signature_policy(stack: Stack) -> None:
    version = stack.register("unsigned", stack.model_folder("unsigned", signed=False))
    tags = stack.verdict("unsigned", version)
    assert tags["donjon.scan"] == "passed"
    assert tags["donjon.signature"] == "failed"
    assert tags["donjon.verdict"] == "failed"


def test_edited_verdict_tags_are_put_back(stack: Stack) -> None:
    version = stack.register("edited", stack.model_folder("edited", evil=True))
    stack.verdict("edited", version)
    stack.client.set_model_version_tag("edited", version, "donjon.scan", "passed")
    stack.client.delete_model_version_tag("edited", version, "donjon.verdict")

    def restored() -> bool | None:
        tags = stack.tags("edited", version)
        return tags.get("donjon.scan") == tags.get("donjon.verdict") == "failed" or None

    wait_for(restored)
    stack.expect_actions(f"models:/edited/{version}", {"mlflow.tags_restored"})


def _post(url: str, body: bytes, delivery: str, stamp: str, sig: str | None) -> httpx.Response:
    headers = {"X-MLflow-Delivery-Id": delivery, "X-MLflow-Timestamp": stamp}
    if sig is not None:
        headers["X-MLflow-Signature"] = sig
    return httpx.post(f"{url}/webhook", content=body, headers=headers, timeout=10)


def test_unsigned_forged_stale_and_replayed_deliveries_are_refused(stack: Stack) -> None:
    body = json.dumps(
        {"entity": "registered_model", "action": "created", "timestamp": "", "data": {}}
    ).encode()
    now = str(int(time.time()))
    good = signature(SECRET, "d-1", now, body)
    assert _post(stack.receiver, body, "d-1", now, None).status_code == 401
    assert (
        _post(stack.receiver, body, "d-1", now, signature("wrong", "d-1", now, body)).status_code
        == 401
    )
    old = str(int(time.time()) - 3600)
    assert (
        _post(stack.receiver, body, "d-2", old, signature(SECRET, "d-2", old, body)).status_code
        == 401
    )
    assert _post(stack.receiver, body, "d-1", now, good).status_code == 202
    assert _post(stack.receiver, body, "d-1", now, good).status_code == 401  # replayed
    refused = wait_for(
        lambda: [e for e in stack.events() if e["action"] == "mlflow.webhook"] or None
    )
    assert all(e["outcome"] == "failure" for e in refused)


def test_review_checks_one_version_on_demand(
    stack: Stack, capsys: pytest.CaptureFixture[str]
) -> None:
    version = stack.register("on-demand", stack.model_folder("on-demand", evil=True))
    stack.verdict("on-demand", version)
    args = ["-f", "json", "mlflow", "review", "on-demand", version]
    args += ["--tracking-uri", stack.tracking, "--policy", str(stack.work / "policy.toml")]
    capsys.readouterr()  # MLflow's client prints run links while registering
    assert main(args) == 1
    verdict = json.loads(capsys.readouterr().out)
    assert verdict["model"] == f"models:/on-demand/{version}"
    assert (verdict["passed"], verdict["scan"], verdict["signature"]) == (False, "failed", "passed")


def test_the_client_guard_refuses_failing_models_and_loads_passing_ones(
    stack: Stack, monkeypatch: pytest.MonkeyPatch
) -> None:
    from donjon.errors import ModelRefused
    from donjon.integrations.mlflow import guard
    from donjon.integrations.mlflow.review import ReviewPolicy
    from donjon.provenance.policy import Policy

    monkeypatch.setenv("MLFLOW_TRACKING_URI", stack.tracking)
    clean = stack.register("guarded-clean", stack.model_folder("guarded-clean"))
    evil = stack.register("guarded-evil", stack.model_folder("guarded-evil", evil=True))
    unsigned = stack.model_folder("guarded-unsigned", signed=False)
    policy = ReviewPolicy(verify=Policy.load(stack.work / "policy.toml"))
    with guard.guarded(policy):
        for loader in (mlflow.sklearn.load_model, mlflow.pyfunc.load_model):
            with pytest.raises(ModelRefused, match=r"refused models:/guarded-evil/.*os\.system"):
                loader(f"models:/guarded-evil/{evil}")
        with pytest.raises(ModelRefused, match="signature"):
            mlflow.sklearn.load_model(str(unsigned))  # a local folder is reviewed too
        model = mlflow.sklearn.load_model(f"models:/guarded-clean/{clean}")
        assert list(model.predict(np.array([[0.0], [3.0]]))) == [0, 1]
        assert mlflow.pyfunc.load_model(model_uri=f"models:/guarded-clean/{clean}") is not None
    assert not getattr(mlflow.sklearn.load_model, "__donjon_guard__", False)
    # unguarded again: the unsigned (but harmless) folder loads
    assert mlflow.sklearn.load_model(str(unsigned)) is not None
