"""Training-run provenance: SLSA v1 in DSSE, linked to the OMS signature by subject digest."""

from __future__ import annotations

import base64
import json
from pathlib import Path

import pytest
from sklearn.datasets import load_breast_cancer
from sklearn.model_selection import train_test_split
from sklearn.tree import DecisionTreeClassifier

from donjon.cli.main import main
from donjon.core import EventBus, MemorySink
from donjon.errors import InputError
from donjon.provenance import FileKeySigner, KeyTrust, SignatureMismatch, sign_model, verify_model
from donjon.provenance.attest import SLSA_PREDICATE, training_run
from donjon.provenance.hashing import build_manifest
from donjon.provenance.keys import load_public_key
from donjon.provenance.slsa import read_provenance, verify_provenance
from tests.provenance.pki import make_model, write_key, write_public


def train(tmp_path: Path, builder_key: Path) -> tuple[Path, Path]:
    """A real (small) training run on scikit-learn's bundled data, recorded."""
    data = tmp_path / "data"
    data.mkdir()
    x, y = load_breast_cancer(return_X_y=True)
    (data / "train.csv").write_text("\n".join(",".join(map(str, row)) for row in x[:50]))
    (tmp_path / "data.manifest.json").write_text('{"files": 1}')
    signer = FileKeySigner.from_file(builder_key)
    bus = EventBus([sink := MemorySink()])
    builder = "https://ci.example/runner"
    with training_run(name="cancer-v1", builder=builder, signer=signer, bus=bus) as run:
        run.input_dataset(data, manifest=tmp_path / "data.manifest.json")
        run.param("max_depth", 3)
        x_train, x_test, y_train, y_test = train_test_split(x, y, random_state=0)
        model = DecisionTreeClassifier(max_depth=3, random_state=0).fit(x_train, y_train)
        predictions = model.predict(x_test)
        groups = ["a" if v > 14 else "b" for v in x_test[:, 0]]
        run.evaluate(list(y_test), list(predictions), sensitive_features=groups)
        run.metric("train_accuracy", model.score(x_train, y_train))
        folder = make_model(tmp_path / "model")
        (folder / "tree.txt").write_text(str(model.tree_.feature.tolist()))
        run.output_model(folder)
    assert run.output_path is not None
    (event,) = sink.events
    assert event.action == "provenance.attest"
    assert event.attributes["subjects"] == [f"sha256:{build_manifest(folder).subject_digest}"]
    return folder, run.output_path


@pytest.fixture
def keys(tmp_path: Path) -> tuple[Path, Path]:
    write_public(tmp_path / "builder.pub", write_key(tmp_path / "builder.key"))
    return tmp_path / "builder.key", tmp_path / "builder.pub"


def test_training_run_writes_signed_slsa_provenance(
    tmp_path: Path, keys: tuple[Path, Path]
) -> None:
    _, path = train(tmp_path, keys[0])
    assert path == tmp_path / "model.provenance.json"
    envelope = json.loads(path.read_text())
    statement = json.loads(base64.b64decode(envelope["payload"]))
    assert statement["_type"] == "https://in-toto.io/Statement/v1"
    assert statement["predicateType"] == SLSA_PREDICATE
    build = statement["predicate"]["buildDefinition"]
    assert build["externalParameters"] == {"name": "cancer-v1", "parameters": {"max_depth": 3}}
    assert len(build["internalParameters"]["packages"]["sha256"]) == 64
    assert build["internalParameters"]["platform"]["python"]
    run_details = statement["predicate"]["runDetails"]
    assert run_details["builder"]["id"] == "https://ci.example/runner"
    assert run_details["metadata"]["startedOn"] <= run_details["metadata"]["finishedOn"]
    dataset = build["resolvedDependencies"][0]
    assert dataset["annotations"]["manifest"]["name"] == "data.manifest.json"
    assert len(dataset["digest"]["sha256"]) == 64


def test_provenance_subject_is_the_oms_subject_digest(
    tmp_path: Path, keys: tuple[Path, Path]
) -> None:
    model, path = train(tmp_path, keys[0])
    signed = sign_model(model, FileKeySigner.from_file(keys[0]), tmp_path / "model.sig")
    verified = verify_provenance(
        path, [load_public_key(keys[1])], subject_digest=signed.subject_digest
    )
    provenance = verified.provenance
    metrics = provenance.metrics()
    assert 0.8 < metrics["accuracy"] <= 1.0
    assert 0.0 <= metrics["demographic_parity_difference"] <= 1.0
    assert 0.0 <= metrics["equalized_odds_difference"] <= 1.0
    assert metrics["train_accuracy"] > 0.8
    by_group = provenance.byproduct("evaluation.json")[0]["by_group"]
    assert set(by_group) == {"a", "b"}
    verified_model = verify_model(model, tmp_path / "model.sig", KeyTrust(load_public_key(keys[1])))
    assert verified_model.subject_digest in provenance.subject_digests()


def test_tampered_or_foreign_provenance_fails(tmp_path: Path, keys: tuple[Path, Path]) -> None:
    _, path = train(tmp_path, keys[0])
    other = write_public(tmp_path / "o.pub", write_key(tmp_path / "o.key"))
    with pytest.raises(SignatureMismatch, match="not signed by a trusted builder"):
        verify_provenance(path, [load_public_key(other)])
    with pytest.raises(SignatureMismatch, match="about another model"):
        verify_provenance(path, [load_public_key(keys[1])], subject_digest="ab" * 32)
    envelope = json.loads(path.read_text())
    statement = json.loads(base64.b64decode(envelope["payload"]))
    statement["predicate"]["runDetails"]["builder"]["id"] = "https://evil.example"
    envelope["payload"] = base64.b64encode(json.dumps(statement).encode()).decode()
    path.write_text(json.dumps(envelope))
    with pytest.raises(SignatureMismatch, match="not signed by a trusted builder"):
        verify_provenance(path, [load_public_key(keys[1])])


def test_a_failed_run_writes_nothing(tmp_path: Path, keys: tuple[Path, Path]) -> None:
    model = make_model(tmp_path / "model")
    signer = FileKeySigner.from_file(keys[0])

    def diverge() -> None:
        with training_run(name="x", builder="b", signer=signer) as run:
            run.output_model(model)
            raise RuntimeError("training diverged")

    with pytest.raises(RuntimeError):
        diverge()
    assert not (tmp_path / "model.provenance.json").exists()
    with (
        pytest.raises(InputError, match="output_model"),
        training_run(name="x", builder="b", signer=signer),
    ):
        pass


def test_evaluation_rejects_mismatched_inputs(tmp_path: Path, keys: tuple[Path, Path]) -> None:
    signer = FileKeySigner.from_file(keys[0])
    with (
        pytest.raises(InputError, match="same length"),
        training_run(name="x", builder="b", signer=signer) as run,
    ):
        run.evaluate([1, 0], [1], sensitive_features=["a", "b"])


def test_attest_cli_show_and_verify(
    tmp_path: Path, keys: tuple[Path, Path], capsys: pytest.CaptureFixture[str]
) -> None:
    model, path = train(tmp_path, keys[0])
    assert main(["-f", "json", "attest", "show", str(path)]) == 0
    shown = json.loads(capsys.readouterr().out)
    assert shown["builder"] == "https://ci.example/runner"
    assert shown["datasets"][0]["name"] == "data"
    argv = ["attest", "verify", str(path), "--public-key", str(keys[1]), "--model", str(model)]
    assert main(argv) == 0
    other = write_public(tmp_path / "o.pub", write_key(tmp_path / "o.key"))
    assert main(["attest", "verify", str(path), "--public-key", str(other)]) == 1
    assert "not signed by a trusted builder" in capsys.readouterr().err
    assert read_provenance(path).name == "cancer-v1"


def test_git_commit_and_dirty_state_are_recorded(tmp_path: Path, keys: tuple[Path, Path]) -> None:
    import shutil
    import subprocess

    git = shutil.which("git")
    assert git is not None, "git is needed to record the source commit"
    repo = tmp_path / "repo"
    repo.mkdir()

    def run_git(*args: str) -> str:
        env = {"GIT_AUTHOR_NAME": "t", "GIT_AUTHOR_EMAIL": "t@e", "GIT_COMMITTER_NAME": "t"}
        env |= {"GIT_COMMITTER_EMAIL": "t@e", "HOME": str(tmp_path), "PATH": "/usr/bin:/bin"}
        done = subprocess.run(
            [git, "-C", str(repo), *args], capture_output=True, text=True, check=True, env=env
        )
        return done.stdout.strip()

    run_git("init", "-q")
    (repo / "train.py").write_text("print('train')\n")
    run_git("add", "train.py")
    run_git("commit", "-q", "-m", "init")
    commit = run_git("rev-parse", "HEAD")
    model = make_model(tmp_path / "model")
    signer = FileKeySigner.from_file(keys[0])

    def attest(name: str) -> dict[str, object]:
        out = tmp_path / f"{name}.json"
        with training_run(name=name, builder="b", signer=signer, workdir=repo, output=out) as run:
            run.output_model(model)
        (source,) = read_provenance(out).dependencies("source")
        return source

    clean = attest("clean")
    assert clean["digest"] == {"gitCommit": commit}
    assert clean["annotations"]["dirty"] is False  # type: ignore[index]
    (repo / "train.py").write_text("print('patched')\n")
    (repo / "notes.txt").write_text("untracked")
    dirty = attest("dirty")
    assert dirty["annotations"] == {"kind": "source", "dirty": True, "untracked_files": 1}


def test_a_model_named_dot_gets_its_folders_provenance(
    tmp_path: Path, keys: tuple[Path, Path], monkeypatch: pytest.MonkeyPatch
) -> None:
    model = make_model(tmp_path / "model")
    monkeypatch.chdir(model)
    signer = FileKeySigner.from_file(keys[0])
    with training_run(name="dot", builder="b", signer=signer) as run:
        digest = run.output_model(".")
    assert run.output_path == tmp_path / "model.provenance.json"
    verify_provenance(run.output_path, [load_public_key(keys[1])], subject_digest=digest)
