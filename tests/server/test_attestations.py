"""Signed documents attached to model versions, and the signature / provenance gates.

The vault is wired by ``donjon.app.build_vault`` from settings that trust one
release key (``vault.trusted_keys``) and served by uvicorn on loopback, on
SQLite and PostgreSQL. Models and datasets are small files made here; they are
signed and attested with ``donjon.provenance``.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
from sqlalchemy import func, select

from donjon.app import build_vault
from donjon.client import VaultClient
from donjon.config import load_settings
from donjon.core.artifacts import Digest
from donjon.core.bus import EventBus, MemorySink
from donjon.core.events import Outcome, SecurityEvent
from donjon.errors import AccessDenied, Conflict, InputError
from donjon.provenance import LocalKeyProvider, ProviderSigner, sign_model
from donjon.provenance.attest import training_run
from donjon.storage.registry_attachments import attachments as attachments_table
from tests.registry.fakes import TableAuthorizer
from tests.server.conftest import build_app, serve

pytestmark = pytest.mark.integration

BUILDER = "https://ci.example/trainer"
MODEL = "fraud-clf"
DATASET = "fraud/tx"


@dataclass
class Lab:
    url: str
    tokens: dict[str, str]
    sink: MemorySink
    authorizer: TableAuthorizer
    services: Any
    folder: Path
    keys: LocalKeyProvider

    def client(self, who: str = "alice") -> VaultClient:
        return VaultClient(self.url, self.tokens[who])

    def signer(self, key_id: str = "release") -> ProviderSigner:
        return ProviderSigner(self.keys, key_id)


@pytest.fixture
def lab(database_url: str, tmp_path: Path, donjon_home: Path) -> Iterator[Lab]:
    keys = LocalKeyProvider(tmp_path / "keys")
    for key_id in ("release", "intruder"):
        keys.generate(key_id)
    settings = load_settings(
        database_url=database_url,
        vault={
            "trusted_keys": [str(tmp_path / "keys" / "release.pub.pem")],
            "gates": {"prod": ["clean-scan", "signature", "provenance", "lineage"]},
        },
    )
    authorizer = TableAuthorizer()
    for verb in ("read", "write", "list"):
        authorizer.allow("alice", f"dataset.{verb}", "datasets/fraud")
    for verb in ("read", "write", "list", "promote"):
        authorizer.allow("alice", f"model.{verb}", f"models/{MODEL}")
    authorizer.allow("alice", "admin", "datasets/fraud")
    authorizer.allow("bob", "model.read", f"models/{MODEL}")
    sink = MemorySink()
    bus = EventBus([sink])
    services = build_vault(settings, _Unused(), authorizer, bus)
    app, tokens = build_app(_Held(services.registry))  # type: ignore[arg-type]
    try:
        with serve(app) as url:
            yield Lab(url, tokens, sink, authorizer, services, tmp_path, keys)
    finally:
        services.close()


@dataclass
class _Held:
    registry: Any  # what build_app reads of the test harness's Vault


class _Unused:
    def authenticate(self, credential: str) -> Any:  # the served app brings its own
        raise AssertionError("not used")


# -- making models, signatures and provenance -----------------------------------------


def dataset_file(lab: Lab, name: str = "tx.csv", body: bytes = b"amount,label\n10,0\n") -> Path:
    path = lab.folder / name
    path.write_bytes(body)
    return path


def model_file(lab: Lab, name: str = "model.bin", body: bytes = b"weights v1") -> Path:
    path = lab.folder / name
    path.write_bytes(body)
    return path


def sign(lab: Lab, model: Path, key_id: str = "release") -> Path:
    return sign_model(model, lab.signer(key_id), model.with_name(model.name + ".sig")).signature


def attest(lab: Lab, model: Path, data: Path, *, dataset_name: str = DATASET) -> Path:
    """A training run's SLSA provenance (signed by the release key, trusted as a builder)."""
    out = model.with_name(model.name + ".provenance.json")
    with training_run(
        "fraud-clf", BUILDER, signer=lab.signer(), output=out, workdir=lab.folder
    ) as run:
        run.input_dataset(data, name=dataset_name)
        run.metric("accuracy", 0.97)
        run.output_model(model)
    return out


def push_trained(lab: Lab, client: VaultClient, model: Path, data: Path) -> int:
    """Push the dataset and the model (lineage: the dataset), as a training pipeline would."""
    dataset = client.push("dataset", DATASET, data)
    version = client.push("model", MODEL, model, lineage=[f"{DATASET}@{dataset['version']}"])
    return int(version["version"])


def events(lab: Lab, action: str) -> list[SecurityEvent]:
    """The registry's facts named ``action`` (not the authorisation decisions)."""
    return [e for e in lab.sink.events if e.action == action and e.decision is None]


def attachment_rows(lab: Lab) -> int:
    with lab.services.database.engine.connect() as conn:
        count = conn.execute(select(func.count()).select_from(attachments_table)).scalar_one()
    return int(count)


# -- the happy path -----------------------------------------------------------------------


def test_attach_then_promote_with_a_trusted_signature_and_admitted_provenance(lab: Lab) -> None:
    data, model = dataset_file(lab), model_file(lab)
    signature, provenance = sign(lab, model), attest(lab, model, data)
    with lab.client() as alice:
        number = push_trained(lab, alice, model, data)
        sig = alice.attach(MODEL, number, "signature", signature)
        prov = alice.attach(MODEL, number, "provenance", provenance)
        assert sig["media_type"] == "application/vnd.dev.sigstore.bundle.v0.3+json"
        assert prov["summary"]["builder"] == BUILDER
        assert prov["summary"]["datasets"] == [DATASET]
        listed = alice.attachments(MODEL, number)
        assert [a["kind"] for a in listed] == ["signature", "provenance"]
        assert alice.attachment(MODEL, number, sig["digest"]) == signature.read_bytes()
        with pytest.raises(Conflict, match="already attached"):  # immutable, attached once
            alice.attach(MODEL, number, "signature", signature)
        moved = alice.promote(MODEL, number, "prod")
        assert moved["stage"] == "prod"
        gates = {g["gate"]: g for g in alice.gates("model", MODEL, number) if g["target"] == "prod"}
    assert set(gates) == {"clean-scan", "signature", "provenance", "admitted-lineage"}
    assert all(g["passed"] for g in gates.values())
    assert gates["signature"]["details"]["attachment"] == sig["digest"]
    assert any("fraud/tx@1" in r for r in gates["provenance"]["reasons"])
    attached = events(lab, "model.attach")
    assert [e.outcome for e in attached] == [Outcome.SUCCESS, Outcome.SUCCESS]
    assert attached[0].attributes["attachment_digest"] == sig["digest"]
    passed = [e for e in lab.sink.events if e.action.startswith("registry.gate.")]
    assert {e.action for e in passed} >= {"registry.gate.signature", "registry.gate.provenance"}
    assert ("alice", "model.write", f"models/{MODEL}@{number}") in lab.authorizer.calls


# -- promotions the gates refuse -------------------------------------------------------------


def _no_signature(lab: Lab, alice: VaultClient) -> tuple[int, str, str]:
    data, model = dataset_file(lab), model_file(lab)
    number = push_trained(lab, alice, model, data)
    alice.attach(MODEL, number, "provenance", attest(lab, model, data))
    return number, "signature", "no signature is attached"


def _untrusted_key(lab: Lab, alice: VaultClient) -> tuple[int, str, str]:
    data, model = dataset_file(lab), model_file(lab)
    number = push_trained(lab, alice, model, data)
    alice.attach(MODEL, number, "signature", sign(lab, model, "intruder"))
    alice.attach(MODEL, number, "provenance", attest(lab, model, data))
    return number, "signature", "key"


def _tampered_model(lab: Lab, alice: VaultClient) -> tuple[int, str, str]:
    data, model = dataset_file(lab), model_file(lab)
    signature, provenance = sign(lab, model), attest(lab, model, data)
    model.write_bytes(b"weights v1 with a backdoor")  # changed after signing
    number = push_trained(lab, alice, model, data)
    alice.attach(MODEL, number, "signature", signature)
    alice.attach(MODEL, number, "provenance", provenance)
    return number, "signature", "changed file"


def _folder_signature(lab: Lab, alice: VaultClient) -> tuple[int, str, str]:
    """The README signs the model folder; a version is the one file pushed from it."""
    data, model = dataset_file(lab), model_file(lab)
    folder = lab.folder / "model"
    folder.mkdir()
    (folder / model.name).write_bytes(model.read_bytes())
    (folder / "config.json").write_bytes(b'{"layers": 2}')
    signature = sign_model(folder, lab.signer(), lab.folder / "folder.sig").signature
    number = push_trained(lab, alice, model, data)
    alice.attach(MODEL, number, "signature", signature)
    alice.attach(MODEL, number, "provenance", attest(lab, model, data))
    return number, "signature", "signs a folder of 2 files, and a version is one file"


def _missing_dataset(lab: Lab, alice: VaultClient) -> tuple[int, str, str]:
    data, model = dataset_file(lab), model_file(lab)
    unknown = dataset_file(lab, "scraped.csv", b"amount,label\n99,1\n")  # never pushed
    number = push_trained(lab, alice, model, data)
    alice.attach(MODEL, number, "signature", sign(lab, model))
    alice.attach(MODEL, number, "provenance", attest(lab, model, unknown))
    return number, "provenance", "is not in the vault"


def _quarantined_dataset(lab: Lab, alice: VaultClient) -> tuple[int, str, str]:
    data, model = dataset_file(lab), model_file(lab)
    number = push_trained(lab, alice, model, data)
    alice.attach(MODEL, number, "signature", sign(lab, model))
    alice.attach(MODEL, number, "provenance", attest(lab, model, data))
    alice.quarantine("dataset", DATASET, 1, "label flips found")
    return number, "provenance", "quarantined"


def _another_model(lab: Lab, alice: VaultClient) -> tuple[int, str, str]:
    data, model = dataset_file(lab), model_file(lab)
    other = model_file(lab, "other.bin", b"another model's weights")
    number = push_trained(lab, alice, model, data)
    alice.attach(MODEL, number, "signature", sign(lab, model))
    alice.attach(MODEL, number, "provenance", attest(lab, other, data))
    return number, "provenance", "about another model"


@pytest.mark.parametrize(
    "scenario",
    [
        _no_signature,
        _untrusted_key,
        _tampered_model,
        _folder_signature,
        _missing_dataset,
        _quarantined_dataset,
        _another_model,
    ],
    ids=lambda f: f.__name__.strip("_"),
)
def test_a_failed_gate_leaves_the_version_where_it_was(lab: Lab, scenario: Any) -> None:
    with lab.client() as alice:
        number, gate, why = scenario(lab, alice)
        lab.sink.events.clear()
        with pytest.raises(Conflict, match=gate):
            alice.promote(MODEL, number, "prod")
        record = alice.get("model", MODEL, number)
        assert record["stage"] == "dev"
        stored = [g for g in alice.gates("model", MODEL, number) if g["target"] == "prod"]
    failed = [g for g in stored if g["gate"] == gate]
    assert len(failed) == 1, stored
    assert not failed[0]["passed"]
    assert why in "; ".join(failed[0]["reasons"]), failed[0]["reasons"]
    emitted = events(lab, f"registry.gate.{gate}")
    assert [e.outcome for e in emitted] == [Outcome.FAILURE]
    refused = events(lab, "model.promote")
    assert [e.outcome for e in refused] == [Outcome.FAILURE]


def test_a_blob_changed_on_disk_fails_the_signature_gate(lab: Lab) -> None:
    data, model = dataset_file(lab), model_file(lab)
    with lab.client() as alice:
        number = push_trained(lab, alice, model, data)
        alice.attach(MODEL, number, "signature", sign(lab, model))
        alice.attach(MODEL, number, "provenance", attest(lab, model, data))
        record = alice.get("model", MODEL, number)
        blob = lab.services.blobs.path(Digest.parse(record["digest"]))
        blob.chmod(0o600)
        blob.write_bytes(b"weights v2")  # tampering behind the vault's back
        with pytest.raises(Conflict, match="signature"):
            alice.promote(MODEL, number, "prod")
        assert alice.get("model", MODEL, number)["stage"] == "dev"


# -- attaching: access control and bad input --------------------------------------------------


def test_attaching_needs_write_on_the_model(lab: Lab) -> None:
    data, model = dataset_file(lab), model_file(lab)
    with lab.client() as alice:
        number = push_trained(lab, alice, model, data)
    lab.sink.events.clear()
    with lab.client("bob") as bob:
        with pytest.raises(AccessDenied):
            bob.attach(MODEL, number, "signature", sign(lab, model))
        assert bob.attachments(MODEL, number) == []  # bob may read, and nothing was attached
    with lab.client("ci") as ci, pytest.raises(AccessDenied):
        ci.attachments(MODEL, number)
    assert attachment_rows(lab) == 0
    denials = [e for e in lab.sink.events if e.decision is not None and not e.decision.allowed]
    assert {(e.decision.action, e.principal.id) for e in denials if e.principal} == {
        ("model.write", "bob"),
        ("model.read", "ci"),
    }


BAD_DOCUMENTS: list[tuple[str, bytes]] = [
    ("signature", b"not json"),
    ("signature", b"[1, 2]"),
    ("provenance", b"[" * 100_000),  # nesting deeper than the JSON parser recurses
    ("signature", json.dumps({"mediaType": "application/x-unknown"}).encode()),
    (
        "signature",
        json.dumps(
            {
                "mediaType": "application/vnd.dev.sigstore.bundle.v0.3+json",
                "verificationMaterial": {"publicKey": {"hint": "x"}},
                "dsseEnvelope": {"payload": "!!", "payloadType": "x", "signatures": []},
            }
        ).encode(),
    ),
    (
        "provenance",
        json.dumps(
            {"payload": "e30=", "payloadType": "text/plain", "signatures": [{"sig": "AA=="}]}
        ).encode(),
    ),
    ("unknown-kind", b"{}"),
]


def test_a_malformed_document_is_refused_and_changes_nothing(lab: Lab) -> None:
    data, model = dataset_file(lab), model_file(lab)
    with lab.client() as alice:
        number = push_trained(lab, alice, model, data)
        blobs_before = sorted(p for p in lab.services.blobs.root.rglob("*") if p.is_file())
        for kind, body in BAD_DOCUMENTS:
            path = lab.folder / "bad.json"
            path.write_bytes(body)
            with pytest.raises(InputError):
                alice.attach(MODEL, number, kind, path)
        # a real provenance offered as a signature is refused too
        with pytest.raises(InputError, match="malformed signature"):
            alice.attach(MODEL, number, "signature", attest(lab, model, data))
        assert alice.attachments(MODEL, number) == []
    blobs_after = sorted(p for p in lab.services.blobs.root.rglob("*") if p.is_file())
    assert blobs_after == blobs_before
    assert attachment_rows(lab) == 0
    with httpx.Client(base_url=lab.url) as http:
        r = http.post(
            f"/v1/models/{MODEL}/versions/{number}/attestations",
            params={"kind": "signature"},
            content=b"{}",
            headers={"Authorization": f"Bearer {lab.tokens['alice']}"},
        )
        assert r.status_code == 400
        assert r.json()["error"] == "bad_request"
        r = http.post(
            f"/v1/models/{MODEL}/versions/99/attestations",
            params={"kind": "signature"},
            content=b"{}",
            headers={"Authorization": f"Bearer {lab.tokens['alice']}"},
        )
        assert r.status_code == 404


def test_attach_and_show_from_the_command_line(
    lab: Lab, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    import io

    from donjon.cli.main import main

    data, model = dataset_file(lab), model_file(lab)
    signature, provenance = sign(lab, model), attest(lab, model, data)
    with lab.client() as alice:
        number = push_trained(lab, alice, model, data)
    monkeypatch.setattr("sys.stdin", io.StringIO(lab.tokens["alice"] + "\n"))
    assert main(["login", "--server", lab.url, "--token-stdin"]) == 0
    attach = ["models", "attach", MODEL, str(number)]
    assert main(attach) == 2  # nothing to attach
    bad = lab.folder / "bad.sig"
    bad.write_text("{}")
    assert main([*attach, "--signature", str(bad)]) == 2
    assert "malformed signature" in capsys.readouterr().err
    assert main([*attach, "--signature", str(signature), "--provenance", str(provenance)]) == 0
    out = capsys.readouterr().out
    assert "attached signature sha256:" in out
    assert f"to {MODEL}@{number}" in out
    assert main(["models", "promote", MODEL, str(number), "prod"]) == 0
    capsys.readouterr()
    assert main(["models", "show", MODEL]) == 0
    shown = capsys.readouterr().out
    assert "signature" in shown
    assert "provenance" in shown
    assert "gate signature -> prod: passed" in shown
    assert main(["--format", "json", "models", "show", MODEL, "--version", str(number)]) == 0
    record = json.loads(capsys.readouterr().out)
    assert record["stage"] == "prod"
    assert [a["kind"] for a in record["attachments"]] == ["signature", "provenance"]
    assert {g["gate"] for g in record["gates"] if g["target"] == "prod"} >= {
        "signature",
        "provenance",
    }
