"""Steps 1-5 in order: the vault, the data, third-party models, our model, the gateway."""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from donjon.app import Donjon, build_authenticator, build_authorizer, build_identity, build_vault
from donjon.app import scan_policy as build_scan_policy
from donjon.app.gates import ModelScanGate
from donjon.errors import DonjonError
from donjon.quickstart import vault as qv
from donjon.quickstart.narrate import Narrator
from donjon.registry import RequireAdmittedLineage, RequireCleanScan, Stage

MIN_ACCURACY = 0.9


@dataclass
class Lab:
    """Everything the run started, so it can all be stopped."""

    folder: Path
    app: Donjon
    say: Narrator
    closers: list[Any] = field(default_factory=list)
    clients: dict[str, Any] = field(default_factory=dict)
    url: str = ""

    def close(self) -> None:
        for closer in reversed(self.closers):
            closer()
        self.closers.clear()


def _sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def start_vault(lab: Lab) -> None:
    """Step 1: keys, the Cedar policy, two principals and the vault server on loopback."""
    from donjon.app.attestation import AdmittedProvenanceGate, TrustedSignatureGate
    from donjon.client import VaultClient
    from donjon.provenance import LocalKeyProvider
    from donjon.quickstart.models_step import promotion_policy
    from donjon.server import ServerLimits, create_app
    from donjon.storage.sql import open_database

    say, settings, bus = lab.say, lab.app.settings, lab.app.bus
    keys = lab.folder / "signing-keys"
    provider = LocalKeyProvider(keys)
    for key_id in ("builder", "release"):
        provider.generate(key_id)
    say.info(f"signing keys (builder, release) in {keys.name}/")
    settings.policy_path.write_text(qv.POLICY, encoding="utf-8")
    say.info(f"Cedar policy written to {settings.policy_path.name}")
    database = open_database(settings.sql_url)
    lab.closers.append(database.dispose)
    identity = build_identity(settings, bus, database)
    tokens = {}
    for user, role in ((qv.SCIENTIST, "data scientist"), (qv.DEPLOYER, "deployer")):
        identity.create_user(user, role)
        tokens[user] = identity.issue_token(user, description=f"quickstart {role}").secret
    policy = promotion_policy(keys, MIN_ACCURACY).policy
    signature, provenance = TrustedSignatureGate(policy), AdmittedProvenanceGate(policy)
    services = build_vault(
        settings,
        build_authenticator(settings, bus, database),
        build_authorizer(settings, bus),
        bus,
        scan_gate=ModelScanGate(build_scan_policy(settings), publish=bus.publish_all),
        promotion_gates={
            Stage.STAGING: [RequireCleanScan(), signature, provenance],
            Stage.PROD: [RequireCleanScan(), RequireAdmittedLineage(), signature, provenance],
        },
    )
    lab.closers.append(services.close)
    server = qv.LoopbackServer(
        create_app(services.registry, services.authenticator, bus, limits=ServerLimits())
    )
    server.start()
    lab.closers.append(server.stop)
    lab.url = server.url
    for user, token in tokens.items():
        client = VaultClient(server.url, token)
        lab.closers.append(client.close)
        lab.clients[user] = client
        who = client.whoami()
        say.ok(f"{user} authenticated to the vault at {server.url} as user {who['id']}")


def ingest_data(lab: Lab) -> Any:
    """Step 2: manifest, source filter, poisoning checks, quarantine; the clean set to the vault."""
    from donjon.data.documents import manifest_document_of
    from donjon.quickstart.data_step import UNKNOWN, ingest

    say = lab.say
    ingested, _ = ingest(lab.folder / "data", lab.app.bus.publish)
    say.info(f"collected {ingested.raw.name}: digits from a trusted vendor and from {UNKNOWN}")
    say.info(f"manifest {ingested.manifest.name} (per-record digests, Merkle root)")
    say.caught(f"{ingested.quarantined_by_source} records quarantined: source not trusted")
    say.caught(
        f"{ingested.quarantined_by_check} records quarantined by the poisoning checks: "
        f"{ingested.caught_planted} of the {ingested.planted_in_admitted} planted flipped-label "
        f"or backdoor records, {ingested.false_alarms} genuine records"
    )
    for finding in ingested.findings:
        say.finding(finding)
    dana = lab.clients[qv.SCIENTIST]
    version = dana.push("dataset", qv.DATASET, ingested.clean, media_type="text/csv")
    document = manifest_document_of(ingested.clean, label_column="label")
    body = json.dumps(document, separators=(",", ":")).encode()
    dana.attach(qv.DATASET, int(version["version"]), "manifest", data=body, of="dataset")
    say.ok(
        f"{qv.SCIENTIST} pushed the admitted set as {qv.DATASET}@{version['version']}, "
        "with its manifest (as `donjon datasets push` does)"
    )
    say.ok(
        "quarantined records stay out of training, kept with their reasons: "
        "data/filtered/quarantine.csv, data/quarantine-poisoning.csv"
    )
    return ingested


def third_party_models(lab: Lab) -> dict[str, str]:
    """Step 3: two downloaded models pushed to the vault; the scan quarantines the bad one."""
    from donjon.quickstart.models_step import benign_third_party, malicious_third_party

    say, dana = lab.say, lab.clients[qv.SCIENTIST]
    folder = lab.folder / "downloads"
    folder.mkdir()
    statuses: dict[str, str] = {}
    for name, path in (
        ("vendor-sentiment", benign_third_party(folder / "vendor-sentiment.safetensors")),
        ("vendor-digits-boost", malicious_third_party(folder / "vendor-digits-boost.pkl")),
    ):
        version = dana.push("model", name, path, metadata={"filename": path.name})
        statuses[name] = str(version["status"])
        if version["status"] == "active":
            say.ok(f"{name} ({path.name}): scan clean, admitted at stage dev")
        else:
            say.caught(f"{name} ({path.name}) blocked at push: {version.get('status_reason')}")
            try:
                dana.pull("model", name, folder / "pulled.bin")
                say.warn(f"{name} could still be pulled")
                statuses[name] = "pullable"
            except DonjonError as e:
                say.caught(f"pulling it is refused: {e}")
    return statuses


def train_and_promote(lab: Lab, ingested: Any) -> tuple[Any, dict[str, Any]]:
    """Step 4: recorded training run, signature, promotion gates and least privilege."""
    from donjon.quickstart.models_step import train_and_sign

    say = lab.say
    dana, dario = lab.clients[qv.SCIENTIST], lab.clients[qv.DEPLOYER]
    trained = train_and_sign(
        ingested, lab.folder / "training", lab.folder / "signing-keys", lab.app.bus
    )
    say.ok(
        f"trained {trained.weights.name} on {len(ingested.y)} admitted records: "
        f"hold-out accuracy {trained.accuracy:.3f}; SLSA provenance in {trained.provenance.name}"
    )
    say.ok(f"signed with the release key: {trained.signature.name} (OpenSSF Model Signing)")
    digest = _sha256(trained.weights)
    version = dana.push(
        "model",
        qv.MODEL,
        trained.weights,
        metadata={"filename": trained.weights.name},
        lineage=[f"{qv.DATASET}@1"],
    )
    number = int(version["version"])
    outcome: dict[str, Any] = {"pushed": version["status"]}
    dana.attach(qv.MODEL, number, "signature", trained.signature)
    dana.attach(qv.MODEL, number, "provenance", trained.provenance)
    say.ok(f"{qv.SCIENTIST} attached the signature and the provenance to {qv.MODEL}@{number}")
    dana.promote(qv.MODEL, number, "staging")
    say.ok(f"{qv.SCIENTIST} promoted {qv.MODEL}@{number} to staging: scan, signature, provenance")
    try:
        dana.promote(qv.MODEL, number, "prod")
        outcome["scientist_prod"] = "allowed"
        say.warn(f"{qv.SCIENTIST} could promote to prod")
    except DonjonError as e:
        outcome["scientist_prod"] = "denied"
        say.caught(f"{qv.SCIENTIST} tries to promote to prod herself: {e}")
    moved = dario.promote(qv.MODEL, number, "prod")
    outcome["prod"] = moved.get("stage")
    for gate in dario.gates("model", qv.MODEL, number):
        if gate.get("target") == "prod":
            say.info(f"gate {gate['gate']}: {'passed' if gate['passed'] else 'FAILED'}")
    say.ok(f"{qv.DEPLOYER} promoted {qv.MODEL}@{number} to prod")
    pulled = lab.folder / "deploy" / trained.weights.name
    pulled.parent.mkdir()
    dario.pull("model", qv.MODEL, pulled, number)
    outcome["pulled_digest_ok"] = _sha256(pulled) == digest
    return pulled, outcome
