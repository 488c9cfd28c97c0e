"""Training-run provenance: an in-toto Statement v1 with a SLSA Provenance v1 predicate.

::

    with training_run(name="fraud-v3", builder="https://ci.example/runner", signer=s) as run:
        run.input_dataset("data/train")
        run.param("max_depth", 6)
        ...
        run.metric("accuracy", 0.94)
        run.evaluate(y_test, y_pred, sensitive_features=groups)
        run.output_model("models/fraud-v3")

On a clean exit the statement is signed as a DSSE envelope and written next to
the (first) output model as ``<model>.provenance.json``. Its subject is the
OMS subject digest of each output model, so the OMS signature and the
provenance name the same thing. Inputs are resolved dependencies: dataset
content digests (and their manifest files when given) and the code's git
commit with its dirty state; the installed packages are digested into the
internal parameters; metrics and the evaluation record are byproducts.
"""

from __future__ import annotations

import hashlib
import importlib.metadata
import json
import os
import platform
import shutil
import subprocess
import sys
import uuid
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from donjon.core.bus import EventBus
from donjon.core.events import EventKind, Outcome, SecurityEvent
from donjon.errors import InputError
from donjon.provenance.dsse import Envelope, Signer, b64, statement_bytes
from donjon.provenance.hashing import HashOptions, build_manifest, file_digest
from donjon.provenance.keys import key_hint

SLSA_PREDICATE = "https://slsa.dev/provenance/v1"
BUILD_TYPE = "https://donjon.dev/ml/training-run/v1"
PROVENANCE_SUFFIX = ".provenance.json"


def _now() -> str:
    return datetime.now(UTC).isoformat(timespec="seconds").replace("+00:00", "Z")


def _jsonable(value: Any) -> Any:
    try:
        json.dumps(value)
    except TypeError as e:
        raise InputError(f"{value!r} is not JSON-serialisable: {e}") from e
    return value


def packages_digest() -> dict[str, Any]:
    """SHA-256 over the sorted ``name==version`` lines of the installed distributions."""
    lines = sorted(
        {
            f"{(d.metadata['Name'] or '').lower()}=={d.version}"
            for d in importlib.metadata.distributions()
        }
    )
    digest = hashlib.sha256("\n".join(lines).encode()).hexdigest()
    return {"sha256": digest, "count": len(lines)}


def git_state(folder: Path) -> dict[str, Any] | None:
    """The commit, dirty flag and remote of the git work tree at ``folder``, if any."""
    git = shutil.which("git")
    if git is None:
        return None

    def run(*args: str) -> str | None:
        done = subprocess.run(  # noqa: S603 - fixed git sub-commands, no shell
            [git, "-C", str(folder), *args], capture_output=True, text=True, check=False
        )
        return done.stdout.strip() if done.returncode == 0 else None

    commit = run("rev-parse", "HEAD")
    if not commit:
        return None
    status = run("status", "--porcelain", "--untracked-files=normal") or ""
    lines = status.splitlines()
    untracked = sum(1 for line in lines if line.startswith("??"))
    remote = run("config", "--get", "remote.origin.url") or ""
    return {
        "commit": commit,
        "dirty": len(lines) > untracked,  # tracked files changed since the commit
        "untracked": untracked,
        "remote": remote,
    }


def platform_info() -> dict[str, Any]:
    return {
        "python": platform.python_version(),
        "implementation": platform.python_implementation(),
        "system": platform.platform(),
        "machine": platform.machine(),
        "cpus": os.cpu_count(),
        "executable_sha256": file_digest(Path(sys.executable).resolve()),
    }


@dataclass
class TrainingRun:
    """What one training run used and produced; filled in by the ``with`` block."""

    name: str
    builder: str
    workdir: Path
    invocation_id: str = field(default_factory=lambda: uuid.uuid4().hex)
    started: str = field(default_factory=_now)
    finished: str | None = None
    params: dict[str, Any] = field(default_factory=dict)
    metrics: dict[str, float] = field(default_factory=dict)
    evaluations: list[dict[str, Any]] = field(default_factory=list)
    datasets: list[dict[str, Any]] = field(default_factory=list)
    models: list[dict[str, Any]] = field(default_factory=list)
    model_paths: list[Path] = field(default_factory=list)
    output_path: Path | None = None

    def param(self, name: str, value: Any) -> None:
        self.params[name] = _jsonable(value)

    def metric(self, name: str, value: float) -> None:
        self.metrics[name] = float(value)

    def input_dataset(
        self, path: str | Path, *, name: str | None = None, manifest: str | Path | None = None
    ) -> dict[str, Any]:
        """Record a dataset by the digest of its content (OMS manifest of its files).

        ``manifest`` names the dataset's own manifest file (from the data
        checks); its SHA-256 is recorded so a policy can require one.
        """
        path = Path(path)
        if not path.exists():
            raise InputError(f"dataset {path} does not exist")
        content = build_manifest(path, HashOptions())
        annotations: dict[str, Any] = {"kind": "dataset", "files": len(content.items)}
        if manifest is not None:
            manifest = Path(manifest)
            if not manifest.is_file():
                raise InputError(f"dataset manifest {manifest} does not exist")
            annotations["manifest"] = {"name": manifest.name, "sha256": file_digest(manifest)}
        entry = {
            "name": name or path.name,
            "uri": path.resolve().as_uri(),
            "digest": {"sha256": content.subject_digest},
            "annotations": annotations,
        }
        self.datasets.append(entry)
        return entry

    def output_model(self, path: str | Path, *, name: str | None = None) -> str:
        """Record a trained model; returns its OMS subject digest (hex)."""
        path = Path(path)
        if not path.exists():
            raise InputError(f"model {path} does not exist")
        digest = build_manifest(path, HashOptions()).subject_digest
        self.models.append({"name": name or path.name, "digest": {"sha256": digest}})
        self.model_paths.append(path)
        return digest

    def evaluate(
        self,
        y_true: Sequence[Any],
        y_pred: Sequence[Any],
        *,
        sensitive_features: Sequence[Any],
        dataset: str = "holdout",
        sensitive_name: str = "sensitive_feature",
    ) -> dict[str, Any]:
        """Record performance and fairness metrics on a held-out set (fairlearn)."""
        from donjon.provenance.evaluation import evaluate

        record = evaluate(
            y_true, y_pred, sensitive_features, dataset=dataset, sensitive_name=sensitive_name
        )
        self.evaluations.append(record)
        return record

    def statement(self) -> bytes:
        if not self.models:
            raise InputError("a training run needs at least one run.output_model(path)")
        dependencies = list(self.datasets)
        git = git_state(self.workdir)
        if git is not None:
            dependencies.append(
                {
                    "uri": f"git+{git['remote']}@{git['commit']}" if git["remote"] else "git",
                    "digest": {"gitCommit": git["commit"]},
                    "annotations": {
                        "kind": "source",
                        "dirty": git["dirty"],
                        "untracked_files": git["untracked"],
                    },
                }
            )
        byproducts = [_byproduct("metrics.json", self.metrics)]
        if self.evaluations:
            byproducts.append(_byproduct("evaluation.json", self.evaluations))
        predicate = {
            "buildDefinition": {
                "buildType": BUILD_TYPE,
                "externalParameters": {"name": self.name, "parameters": self.params},
                "internalParameters": {
                    "platform": platform_info(),
                    "packages": packages_digest(),
                },
                "resolvedDependencies": dependencies,
            },
            "runDetails": {
                "builder": {"id": self.builder},
                "metadata": {
                    "invocationId": self.invocation_id,
                    "startedOn": self.started,
                    "finishedOn": self.finished or _now(),
                },
                "byproducts": byproducts,
            },
        }
        return statement_bytes(self.models, SLSA_PREDICATE, predicate)


def _byproduct(name: str, value: Any) -> dict[str, Any]:
    raw = json.dumps(value, sort_keys=True).encode()
    return {
        "name": name,
        "mediaType": "application/json",
        "digest": {"sha256": hashlib.sha256(raw).hexdigest()},
        "content": b64(raw),
    }


def provenance_path(model: Path) -> Path:
    """Where the provenance of ``model`` lives by default: ``<model>.provenance.json``."""
    if not model.name:  # "." or "/": name the folder itself
        model = model.resolve()
    return model.with_name(model.name + PROVENANCE_SUFFIX)


def write_envelope(envelope: Envelope, path: Path, signer: Signer) -> None:
    document = envelope.to_dict()
    for entry in document["signatures"]:
        entry["keyid"] = key_hint(signer.public_key)  # informational only
    partial = path.with_name(f".{path.name}.partial")
    partial.write_text(json.dumps(document, indent=2) + "\n", encoding="utf-8")
    partial.replace(path)


@contextmanager
def training_run(
    name: str,
    builder: str,
    *,
    signer: Signer,
    output: str | Path | None = None,
    workdir: str | Path | None = None,
    bus: EventBus | None = None,
) -> Iterator[TrainingRun]:
    """Record a training run; on a clean exit, sign and write its SLSA provenance.

    Nothing is written when the block raises (a failed run proves nothing).
    With ``bus``, the attestation is published as a ``provenance.attest`` event.
    """
    run = TrainingRun(name=name, builder=builder, workdir=Path(workdir or Path.cwd()))
    yield run
    run.finished = _now()
    envelope = Envelope.sign(signer, run.statement())
    target = Path(output) if output is not None else provenance_path(run.model_paths[0])
    write_envelope(envelope, target, signer)
    run.output_path = target
    if bus is not None:
        bus.publish(
            SecurityEvent(
                kind=EventKind.ACTIVITY,
                source="provenance",
                action="provenance.attest",
                message=f"training run {name!r} attested by {builder} into {target.name}",
                outcome=Outcome.SUCCESS,
                attributes={
                    "run": name,
                    "builder": builder,
                    "provenance": str(target),
                    "subjects": [f"sha256:{m['digest']['sha256']}" for m in run.models],
                },
            )
        )
