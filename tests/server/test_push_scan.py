"""The push-time scan over real HTTP: every malicious sample refused, every benign one stored.

Each file ``donjon samples`` writes is pushed as a model twice: with the real
client (which sends the file's name) and as a bare body without a name, so the
verdict cannot hang on the name (issue: a protocol-0 pickle and ONNX models
pushed as ``model`` were stored as clean).
"""

from __future__ import annotations

import io
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest

from donjon.app.gates import ModelScanGate, safe_file_name
from donjon.cli.main import main
from donjon.client.vault import VaultClient
from donjon.core.bus import EventBus, MemorySink
from donjon.registry import Registry, RequireCleanScan, Stage
from donjon.scan import ScanPolicy
from donjon.scan.samples import write_samples
from donjon.storage.blobs import FileBlobStore
from donjon.storage.registry import SqlRegistryStore
from donjon.storage.sql import open_database
from tests.registry.fakes import TableAuthorizer
from tests.registry.harness import Vault
from tests.server.conftest import MAX_UPLOAD, build_app, serve


@dataclass
class Gated:
    url: str
    tokens: dict[str, str]
    samples: dict[str, list[Path]]
    root: Path


@pytest.fixture
def gated(database_url: str, tmp_path: Path) -> Iterator[Gated]:
    db = open_database(database_url)
    authorizer = TableAuthorizer()
    authorizer.allow("alice", "model.write", "models/m")
    authorizer.allow("alice", "model.read", "models/m")
    sink = MemorySink()
    registry = Registry(
        SqlRegistryStore(db),
        FileBlobStore(tmp_path / "blobs"),
        authorizer,
        EventBus([sink]),
        scan_gate=ModelScanGate(ScanPolicy()),
        promotion_gates={Stage.STAGING: [RequireCleanScan()]},
        max_blob_size=MAX_UPLOAD,
    )
    vault = Vault(registry, authorizer, sink, db, tmp_path / "blobs", None)  # type: ignore[arg-type]
    samples = write_samples(tmp_path / "samples")
    app, tokens = build_app(vault)
    try:
        with serve(app) as url:
            yield Gated(url, tokens, samples, tmp_path / "samples")
    finally:
        db.dispose()


def _verdicts(gated: Gated, named: bool) -> dict[str, str]:
    """Push every sample; sample path -> the stored version's status."""
    found: dict[str, str] = {}
    token = gated.tokens["alice"]
    with VaultClient(gated.url, token) as client, httpx.Client(base_url=gated.url) as raw:
        for kind in ("malicious", "benign"):
            for path in gated.samples[kind]:
                if named:
                    record = client.push("model", "m", path)
                else:  # the bare body: no file name reaches the server
                    response = raw.post(
                        "/v1/models/m/versions",
                        content=path.read_bytes(),
                        headers={"Authorization": f"Bearer {token}"},
                    )
                    assert response.status_code == 201, response.text
                    record = response.json()
                found[f"{kind}/{path.relative_to(gated.root / kind)}"] = record["status"]
    return found


@pytest.mark.parametrize("named", [True, False], ids=["with-name", "without-name"])
def test_every_malicious_sample_is_quarantined_and_every_benign_one_stored(
    gated: Gated, named: bool
) -> None:
    verdicts = _verdicts(gated, named)
    assert len(verdicts) == sum(len(v) for v in gated.samples.values()) > 60
    admitted = sorted(k for k, v in verdicts.items() if k.startswith("mal") and v != "quarantined")
    refused = sorted(k for k, v in verdicts.items() if k.startswith("ben") and v != "active")
    assert admitted == []
    assert refused == []


def test_a_quarantined_sample_cannot_be_promoted(gated: Gated) -> None:
    path = next(p for p in gated.samples["malicious"] if p.name == "onnx_traversal.onnx")
    with VaultClient(gated.url, gated.tokens["alice"]) as client:
        record = client.push("model", "m", path)
        assert record["status"] == "quarantined"
        gates = client.gates("model", "m", record["version"])
    assert any(g["gate"] == "scan" and not g["passed"] for g in gates)


def test_pushed_names_are_reduced_to_a_harmless_local_name() -> None:
    assert safe_file_name(None) == "model"
    assert safe_file_name("../../etc/passwd") == "passwd"
    assert safe_file_name("..\\..\\evil.pkl") == "evil.pkl"
    assert safe_file_name("a b$c.onnx") == "a_b_c.onnx"
    assert safe_file_name("...") == "model"
    assert len(safe_file_name("x" * 1000)) == 128


def test_the_verdict_of_a_push_does_not_hang_on_the_alphabet_of_its_name(
    gated: Gated,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    """`donjon scan entraînement.py` flags it; `donjon models push` of the same file was
    admitted: the client sent no name for a non-ASCII one, and a nameless file is not
    Python source to the scanner. The name now travels with its extension."""
    monkeypatch.setattr("sys.stdin", io.StringIO(gated.tokens["alice"] + "\n"))
    assert main(["login", "--server", gated.url, "--token-stdin"]) == 0
    source = b'import os\nos.system("id")\n'
    for name in ("train.py", "entraînement.py", "训练.py", "tab\tname.py"):
        (tmp_path / name).write_bytes(source)
        assert main(["scan", str(tmp_path / name)]) == 1
        capsys.readouterr()
        assert main(["models", "push", "m", str(tmp_path / name)]) == 1
        assert "reaches os.system" in capsys.readouterr().err
