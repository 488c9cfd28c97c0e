"""Reviewing a downloaded model folder against a policy that asks for signed provenance.

The publisher's order: train (the provenance is about the model files), sign the
folder (``model.sig`` inside), then put the provenance in as ``model.provenance.json``
and log the folder to MLflow. Neither covers the other.
"""

from __future__ import annotations

import shutil
from pathlib import Path

from donjon.integrations.mlflow.review import PROVENANCE_NAME, ReviewPolicy, review_folder
from donjon.integrations.mlflow.verdict import Status
from donjon.provenance import FileKeySigner, sign_model
from donjon.provenance.attest import provenance_path, training_run
from donjon.provenance.policy import Policy
from donjon.scan.samples import safetensors
from tests.provenance.pki import write_key, write_public

WEIGHTS = safetensors({"w": {"dtype": "F32", "shape": [2], "data_offsets": [0, 8]}}, b"\0" * 8)

POLICY = """
[signature]
public_keys = ["release.pub"]

[provenance]
required = true
builder_keys = ["builder.pub"]
builders = ["https://ci.example/runner"]

[metrics]
accuracy = { min = 0.9 }
"""


def _published(tmp_path: Path, accuracy: float) -> tuple[Path, Policy]:
    tmp_path.mkdir(exist_ok=True)
    for name in ("release", "builder"):
        write_public(tmp_path / f"{name}.pub", write_key(tmp_path / f"{name}.key"))
    (tmp_path / "policy.toml").write_text(POLICY)
    model = tmp_path / "model"
    (model / "sub").mkdir(parents=True)
    (model / "model.safetensors").write_bytes(WEIGHTS)
    (model / "sub" / "config.json").write_text('{"layers": 2}')
    signer = FileKeySigner.from_file(tmp_path / "builder.key")
    with training_run(name="m", builder="https://ci.example/runner", signer=signer) as run:
        run.metric("accuracy", accuracy)
        run.output_model(model)
    sign_model(model, FileKeySigner.from_file(tmp_path / "release.key"), model / "model.sig")
    provenance_path(model).replace(model / PROVENANCE_NAME)
    downloaded = tmp_path / "download" / "model"  # what MLflow's client hands over
    shutil.copytree(model, downloaded)
    return downloaded, Policy.load(tmp_path / "policy.toml")


def test_signed_provenance_inside_the_artifacts_is_verified(tmp_path: Path) -> None:
    folder, policy = _published(tmp_path, accuracy=0.95)
    verdict = review_folder(folder, "models:/m/1", ReviewPolicy(verify=policy)).verdict
    assert (verdict.scan, verdict.signature, verdict.provenance) == (Status.PASSED,) * 3, (
        verdict.reasons
    )
    assert verdict.passed, verdict.reasons


def test_provenance_that_misses_the_policy_or_is_absent_fails(tmp_path: Path) -> None:
    folder, policy = _published(tmp_path / "low", accuracy=0.5)
    verdict = review_folder(folder, "models:/m/2", ReviewPolicy(verify=policy)).verdict
    assert (verdict.signature, verdict.provenance) == (Status.PASSED, Status.FAILED)
    assert any("accuracy = 0.5 is below 0.9" in r for r in verdict.reasons)

    folder, policy = _published(tmp_path / "none", accuracy=0.95)
    (folder / PROVENANCE_NAME).unlink()  # published without it
    verdict = review_folder(folder, "models:/m/3", ReviewPolicy(verify=policy)).verdict
    assert verdict.provenance is Status.FAILED
    assert not verdict.passed
