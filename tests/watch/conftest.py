"""A vault and a scikit-learn victim on loopback, the CLI logged in, keys to sign with."""

from __future__ import annotations

import functools
import io
import warnings
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest
from sklearn.datasets import make_classification
from sklearn.exceptions import ConvergenceWarning
from sklearn.linear_model import LogisticRegression
from sklearn.neural_network import MLPClassifier

from donjon.app.attestation import DocumentInspector
from donjon.cli.main import main
from donjon.provenance.keys import generate_private_key, private_pem, public_pem
from donjon.registry import Registry
from tests.registry.harness import make_vault
from tests.server.conftest import build_app, serve
from tests.support.victims import Victim
from tests.support.victims import serve as serve_victim

MODEL = "churn-clf"


@dataclass
class Lab:
    url: str
    victim: Victim
    endpoint: str
    data: Path
    key: Path
    public: Path
    other_public: Path
    models: dict[str, object]
    registry: Registry


@functools.cache
def _models() -> tuple[np.ndarray, np.ndarray, dict[str, object]]:
    warnings.simplefilter("ignore", ConvergenceWarning)  # small models, few iterations
    x, y = make_classification(
        n_samples=600, n_features=8, n_informative=6, n_classes=3, random_state=0
    )
    train, held = slice(0, 400), slice(400, 600)
    fitted: dict[str, object] = {
        "promoted": MLPClassifier((16,), max_iter=300, random_state=0).fit(x[train], y[train]),
        "other seed": MLPClassifier((16,), max_iter=300, random_state=1).fit(x[train], y[train]),
        "other architecture": LogisticRegression(max_iter=500).fit(x[train], y[train]),
    }
    return x[held], y[held], fitted


def held_out_rows() -> np.ndarray:
    return _models()[0]


def write_held_out(path: Path) -> Path:
    """The held-out rows as the enrolment CSV: features f0..f7 and a label column."""
    held_x, held_y, _ = _models()
    header = ",".join([*(f"f{i}" for i in range(held_x.shape[1])), "label"])
    lines = [
        ",".join([*map(repr, row.tolist()), str(label)])
        for row, label in zip(held_x, held_y, strict=True)
    ]
    path.write_text("\n".join([header, *lines]) + "\n")
    return path


def victim_models() -> dict[str, object]:
    return _models()[2]


@pytest.fixture
def lab(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Lab]:
    _, _, models = _models()
    data = write_held_out(tmp_path / "heldout.csv")
    key, other = generate_private_key(), generate_private_key()
    (tmp_path / "key.pem").write_bytes(private_pem(key))
    (tmp_path / "key.pub").write_bytes(public_pem(key.public_key()))
    (tmp_path / "other.pub").write_bytes(public_pem(other.public_key()))
    vault = make_vault(f"sqlite+pysqlite:///{tmp_path / 'vault.db'}", tmp_path / "blobs")
    vault.registry.inspector = DocumentInspector()
    for verb in ("read", "write", "list"):
        vault.authorizer.allow("alice", f"model.{verb}", f"models/{MODEL}")
    app, tokens = build_app(vault)
    (tmp_path / "model.bin").write_bytes(b"weights of the promoted version")
    victim = Victim(models["promoted"].predict_proba)  # type: ignore[attr-defined]
    try:
        with serve(app) as url, serve_victim(victim.answer, route="/predict") as endpoint:
            monkeypatch.setattr("sys.stdin", io.StringIO(tokens["alice"] + "\n"))
            assert main(["login", "--server", url, "--token-stdin"]) == 0
            assert main(["models", "push", MODEL, str(tmp_path / "model.bin")]) == 0
            yield Lab(
                url, victim, endpoint, data, tmp_path / "key.pem", tmp_path / "key.pub",
                tmp_path / "other.pub", models, vault.registry,
            )  # fmt: skip
    finally:
        vault.db.dispose()
