"""The vault over real HTTP (uvicorn on loopback), on SQLite and PostgreSQL."""

from __future__ import annotations

import hashlib
import json
import logging
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from sqlalchemy import func, select

from donjon.client import VaultClient
from donjon.core.events import EventKind, Outcome
from donjon.errors import AccessDenied, AuthenticationError, Conflict, InputError, RegistryError
from donjon.server import ServerLimits
from donjon.storage.registry import versions as versions_table
from tests.registry.harness import make_vault
from tests.server.conftest import MAX_UPLOAD, Served, build_app, serve

pytestmark = pytest.mark.integration


def up(headers: dict[str, str]) -> dict[str, Any]:
    return {"content": b"x", "headers": headers}


BAD_JSON = {"content": b"{bad json", "headers": {"Content-Type": "application/json"}}
DIGEST = "X-Donjon-Digest"
META = "X-Donjon-Metadata"
LINEAGE = "X-Donjon-Lineage"
MODELS = "/v1/models/fraud-clf/versions"
TX = "/v1/datasets/fraud/tx/versions"

ROUTES: list[tuple[str, str, dict[str, Any]]] = [
    (method, path.format(kind=kind, name=name), kwargs)
    for kind, name in (("datasets", "fraud/tx"), ("models", "fraud-clf"))
    for method, path, kwargs in [
        ("GET", "/v1/{kind}", {}),
        ("GET", "/v1/{kind}", {"params": {"prefix": name}}),
        ("GET", "/v1/{kind}/{name}", {}),
        ("GET", "/v1/{kind}/{name}/versions", {}),
        ("POST", "/v1/{kind}/{name}/versions", {"content": b"new bytes"}),
        ("GET", "/v1/{kind}/{name}/versions/1", {}),
        ("GET", "/v1/{kind}/{name}/versions/1/blob", {}),
        ("GET", "/v1/{kind}/{name}/versions/1/gates", {}),
        ("POST", "/v1/{kind}/{name}/versions/1/quarantine", {"json": {"reason": "x"}}),
        ("POST", "/v1/{kind}/{name}/versions/1/release", {"json": {"reason": "x"}}),
        ("DELETE", "/v1/{kind}/{name}/versions/1", {"params": {"reason": "x"}}),
    ]
] + [("POST", "/v1/models/fraud-clf/versions/1/promote", {"json": {"stage": "staging"}})]


def grant_all(served: Served, who: str = "alice") -> None:
    auth = served.vault.authorizer
    for verb in ("read", "write", "list", "delete"):
        auth.allow(who, f"dataset.{verb}", "datasets/fraud")
    for verb in ("read", "write", "list", "promote", "delete"):
        auth.allow(who, f"model.{verb}", "models/fraud-clf")


def seed(served: Served, tmp_path: Path) -> None:
    grant_all(served)
    data = tmp_path / "tx.csv"
    data.write_bytes(b"amount,label\n10,0\n")
    model = tmp_path / "model.bin"
    model.write_bytes(b"weights")
    with VaultClient(served.url, served.token("alice")) as alice:
        alice.push("dataset", "fraud/tx", data)
        alice.push("model", "fraud-clf", model, lineage=["fraud/tx@1"])


def state(served: Served) -> tuple[int, list[Path]]:
    with served.vault.db.engine.connect() as conn:
        rows = conn.execute(select(func.count()).select_from(versions_table)).scalar_one()
    files = sorted(p for p in served.vault.blobs_dir.rglob("*") if p.is_file())
    return int(rows), files


def test_only_health_is_anonymous(served: Served, tmp_path: Path) -> None:
    seed(served, tmp_path)
    before = state(served)
    with httpx.Client(base_url=served.url) as http:
        assert http.get("/health").json() == {"status": "ok"}
        for headers in ({}, {"Authorization": "Bearer not-a-token"}, {"Authorization": "Basic x"}):
            for method, path, kwargs in [
                *ROUTES,
                ("GET", "/v1/whoami", {}),
                ("GET", "/v1/openapi.json", {}),
            ]:
                r = http.request(method, path, headers=headers, **kwargs)
                assert r.status_code == 401, (method, path, r.text)
                assert r.json()["error"] == "unauthenticated"
                assert r.headers["WWW-Authenticate"] == "Bearer"
        assert http.get("/docs").status_code == 404
        assert http.get("/openapi.json").status_code == 404
    assert state(served) == before
    refusals = [e for e in served.vault.sink.events if e.kind is EventKind.AUTHENTICATION]
    assert len(refusals) == 3 * (len(ROUTES) + 2)


def test_every_route_denies_by_default(served: Served, tmp_path: Path) -> None:
    seed(served, tmp_path)
    before = state(served)
    served.vault.sink.events.clear()
    with httpx.Client(
        base_url=served.url, headers={"Authorization": f"Bearer {served.token('bob')}"}
    ) as bob:
        assert bob.get("/v1/whoami").json()["id"] == "bob"
        for method, path, kwargs in ROUTES:
            r = bob.request(method, path, **kwargs)
            assert r.status_code == 403, (method, path, r.text)
            assert r.json()["error"] == "forbidden"
    assert state(served) == before
    denials = [e for e in served.vault.sink.events if e.kind is EventKind.ACCESS]
    assert len(denials) == len(ROUTES) == len(served.vault.sink.events)
    assert {e.outcome for e in denials} == {Outcome.FAILURE}
    assert {e.principal.id for e in denials if e.principal} == {"bob"}


def test_push_pull_promote_end_to_end(served: Served, tmp_path: Path) -> None:
    seed(served, tmp_path)
    with VaultClient(served.url, served.token("alice")) as alice:
        assert alice.names("dataset", "fraud") == ["fraud/tx"]
        pulled = tmp_path / "pulled.csv"
        record = alice.pull("dataset", "fraud/tx", pulled)
        assert pulled.read_bytes() == b"amount,label\n10,0\n"
        assert record["digest"] == "sha256:" + hashlib.sha256(pulled.read_bytes()).hexdigest()
        model = alice.get("model", "fraud-clf")
        assert (model["version"], model["stage"], model["lineage"]) == (1, "dev", ["fraud/tx@1"])
        assert alice.promote("fraud-clf", 1, "staging")["stage"] == "staging"
        assert alice.promote("fraud-clf", 1, "prod")["stage"] == "prod"
        gates = alice.gates("model", "fraud-clf", 1)
        assert [(g["gate"], g["passed"]) for g in gates] == [
            ("scan", True),
            ("clean-scan", True),
            ("clean-scan", True),
            ("admitted-lineage", True),
        ]
        evil = tmp_path / "evil.bin"
        evil.write_bytes(b"EVIL payload")
        bad = alice.push("model", "fraud-clf", evil, metadata={"framework": "sklearn"})
        assert (bad["status"], bad["metadata"]) == ("quarantined", {"framework": "sklearn"})
        with pytest.raises(Conflict, match="quarantined"):
            alice.pull("model", "fraud-clf", tmp_path / "evil-copy.bin")
        assert not (tmp_path / "evil-copy.bin").exists()
        with pytest.raises(Conflict, match="quarantined"):
            alice.promote("fraud-clf", 2, "staging")
        deleted = alice.delete("dataset", "fraud/tx", 1, "retention period over")
        assert deleted["status"] == "tombstoned"
        r = httpx.get(
            f"{served.url}/v1/datasets/fraud/tx/versions/1/blob",
            headers={"Authorization": f"Bearer {served.token('alice')}"},
        )
        assert (r.status_code, r.json()["error"]) == (410, "gone")
    with VaultClient(served.url, served.token("bob")) as bob, pytest.raises(AccessDenied):
        bob.pull("dataset", "fraud/tx", tmp_path / "stolen.csv")
    with VaultClient(served.url, "wrong") as nobody, pytest.raises(AuthenticationError):
        nobody.names("dataset")
    actions = [e.action for e in served.vault.sink.events if e.kind is EventKind.DATA_ACCESS]
    assert actions[:2] == ["dataset.write", "model.write"]
    assert "model.promote" in actions
    assert actions[-1] == "dataset.delete"


BAD_INPUT: list[tuple[str, dict[str, Any], int]] = [
        ("/v1/datasets/..%2Fetc/versions", {"content": b"x"}, 400),
        ("/v1/datasets/%2Fetc%2Fpasswd/versions", {"content": b"x"}, 400),
        ("/v1/datasets/fraud/..%2F..%2Fx/versions", {"content": b"x"}, 400),
        ("/v1/datasets/fraud%5Cx/versions", {"content": b"x"}, 400),
        ("/v1/datasets/Fraud/versions", {"content": b"x"}, 400),
        (TX, up({DIGEST: "md5:00"}), 400),
        (TX, up({DIGEST: "sha256:" + "0" * 64}), 400),
        (TX, up({META: "{not json"}), 400),
        (TX, up({META: "[1]"}), 400),
        (TX, up({META: "[" * 5000}), 400),  # nesting deeper than the JSON parser recurses
        (MODELS, up({LINEAGE: "../x@1"}), 400),
        (MODELS, up({LINEAGE: "fraud/tx@0"}), 400),
        (MODELS, up({LINEAGE: "fraud/tx@7"}), 404),
        ("/v1/datasets/fraud/tx/versions", {"content": b"x" * (MAX_UPLOAD + 1)}, 413),
        ("/v1/datasets/fraud/tx/versions", {"content": "chunked"}, 413),
        ("/v1/models/fraud-clf/versions/1/promote", BAD_JSON, 422),
        ("/v1/models/fraud-clf/versions/1/promote", {"json": {"stage": "moon"}}, 422),
        ("/v1/models/fraud-clf/versions/0/promote", {"json": {"stage": "prod"}}, 400),
        ("/v1/datasets/fraud/tx/versions/1/quarantine", {"json": {"reason": ""}}, 422),
        ("/v1/datasets/fraud/tx/versions/1/quarantine", {"json": {"reason": "x" * 70000}}, 413),
    ]  # fmt: skip


def test_bad_input_gets_a_clear_4xx_and_changes_nothing(served: Served, tmp_path: Path) -> None:
    seed(served, tmp_path)
    served.vault.authorizer.allow("alice", "dataset.write", "datasets")
    served.vault.authorizer.allow("alice", "admin", "datasets/fraud")
    before = state(served)
    auth = {"Authorization": f"Bearer {served.token('alice')}"}
    with (
        httpx.Client(base_url=served.url) as http,
        VaultClient(served.url, served.token("alice")) as alice,
    ):
        for path, case, status in BAD_INPUT:
            kwargs = dict(case)
            if kwargs.get("content") == "chunked":  # no Content-Length: counted as it streams
                kwargs["content"] = iter([b"x" * 65536] * 5)
            headers = {**auth, **kwargs.pop("headers", {})}
            r = http.post(path, headers=headers, **kwargs)
            assert r.status_code == status, (path, case, r.text)
            body = r.json()
            assert body["error"], path
            assert body["detail"], path
            assert state(served) == before, (path, case)
            assert alice.get("model", "fraud-clf", 1)["stage"] == "dev"
            assert alice.get("dataset", "fraud/tx", 1)["status"] == "active"


def test_no_secret_in_logs_responses_or_events(
    served: Served, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    seed(served, tmp_path)
    seen: list[str] = []
    with httpx.Client(base_url=served.url) as http:
        for who in ("alice", "bob"):
            headers = {"Authorization": f"Bearer {served.token(who)}"}
            for method, path, kwargs in ROUTES:
                r = http.request(method, path, headers=headers, **kwargs)
                seen.append(r.text + json.dumps(dict(r.headers)))
        r = http.get("/v1/whoami", headers={"Authorization": f"Bearer {served.token('ci')}x"})
        seen.append(r.text + json.dumps(dict(r.headers)))
    events = [json.dumps(e.to_dict()) for e in served.vault.sink.events]
    logs = [record.getMessage() for record in caplog.records]
    assert any("HTTP/1.1" in line for line in logs)  # the access log was captured
    for token in served.tokens.values():
        for text in (*seen, *events, *logs):
            assert token not in text
            assert token[:12] not in text


def test_the_openapi_document_is_published_to_authenticated_callers(served: Served) -> None:
    r = httpx.get(
        f"{served.url}/v1/openapi.json",
        headers={"Authorization": f"Bearer {served.token('bob')}"},
    )
    spec = r.json()
    assert spec["info"]["title"] == "Donjon vault"
    assert "/v1/datasets/{name}/versions" in spec["paths"]
    push = spec["paths"]["/v1/datasets/{name}/versions"]["post"]
    assert "application/octet-stream" in push["requestBody"]["content"]
    assert spec["components"]["securitySchemes"]["HTTPBearer"]["scheme"] == "bearer"


def test_client_refuses_bad_kinds(served: Served) -> None:
    with VaultClient(served.url, served.token("alice")) as alice, pytest.raises(InputError):
        alice.names("notebook")


def test_bytes_changed_on_disk_never_reach_the_destination(served: Served, tmp_path: Path) -> None:
    seed(served, tmp_path)
    with VaultClient(served.url, served.token("alice")) as alice:
        record = alice.get("dataset", "fraud/tx", 1)
        blob = served.vault.blobs_dir / "sha256" / record["digest"][7:9] / record["digest"][7:]
        original = blob.read_bytes()
        blob.write_bytes(original.replace(b"10,0", b"10,1"))  # same size, one label flipped
        dest = tmp_path / "flipped.csv"
        with pytest.raises(RegistryError):
            alice.pull("dataset", "fraud/tx", dest)
        assert not dest.exists()
        assert [p.name for p in tmp_path.iterdir() if p.name.endswith(".part")] == []


def test_a_stalled_upload_is_dropped_and_stores_nothing(tmp_path: Path) -> None:
    vault = make_vault(f"sqlite+pysqlite:///{tmp_path / 'v.db'}", tmp_path / "blobs")
    vault.authorizer.allow("alice", "dataset.write", "datasets/fraud")
    app, tokens = build_app(vault, ServerLimits(upload_idle_seconds=0.3))

    def slow() -> Iterator[bytes]:
        yield b"first part "
        time.sleep(1.5)
        yield b"the rest"

    try:
        with serve(app) as url:
            r = httpx.post(
                f"{url}/v1/datasets/fraud/tx/versions",
                content=slow(),
                headers={"Authorization": f"Bearer {tokens['alice']}"},
            )
        assert r.status_code == 400
        assert "stalled" in r.json()["detail"]
        assert [p for p in (tmp_path / "blobs").rglob("*") if p.is_file()] == []
        assert vault.registry.store.names("dataset") == []
    finally:
        vault.db.dispose()


def test_a_wrongly_announced_digest_is_refused(served: Served, tmp_path: Path) -> None:
    seed(served, tmp_path)
    before = state(served)
    src = tmp_path / "model.bin"
    src.write_bytes(b"the real weights")
    wrong = "sha256:" + hashlib.sha256(b"the signed weights").hexdigest()
    with VaultClient(served.url, served.token("alice")) as alice:
        with pytest.raises(InputError, match="announced"):
            alice.push("model", "fraud-clf", src, digest=wrong)
        right = "sha256:" + hashlib.sha256(src.read_bytes()).hexdigest()
        assert state(served) == before
        assert alice.push("model", "fraud-clf", src, digest=right)["digest"] == right
