"""The authorization matrix: every route x every kind of caller, over real HTTP, on both databases.

Callers: no token, a malformed header, an unknown, revoked or expired token, a
disabled account's token, a permit-all admin and least-privilege roles. Each
allowed call succeeds, each refused one gets 401 or 403, and the ledger holds
each decision exactly once (one ``access`` event per authorisation, one
``authentication`` event per credential), as the docs promise.
"""

from __future__ import annotations

import secrets
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import pytest

from donjon.provenance import LocalKeyProvider, ProviderSigner, sign_model
from tests.server.stack import ROLES, Stack, real_stack

pytestmark = pytest.mark.integration


@dataclass(frozen=True)
class Call:
    label: str
    method: str
    path: str  # "{v}": the version the call is about
    action: str | None  # None: needs authentication only
    resource: str
    ok: int = 200
    fresh: bool = False  # changes the version: made anew (by the admin) for each call
    kwargs: dict[str, Any] = field(default_factory=dict)


def _calls() -> list[Call]:
    out: list[Call] = []
    for kind, col, name in (("dataset", "datasets", "fraud/tx"), ("model", "models", "fraud-clf")):
        base, res = f"/v1/{col}/{name}", f"{col}/{name}"
        out += [
            Call(f"list {col}", "GET", f"/v1/{col}", f"{kind}.list", col),
            Call(f"list {col} under", "GET", f"/v1/{col}", f"{kind}.list", res,
                 kwargs={"params": {"prefix": name}}),
            Call(f"latest {kind}", "GET", base, f"{kind}.read", res),
            Call(f"{kind} versions", "GET", f"{base}/versions", f"{kind}.list", res),
            Call(f"push {kind}", "POST", f"{base}/versions", f"{kind}.write", res, 201,
                 kwargs={"content": b"more bytes"}),
            Call(f"get {kind}", "GET", f"{base}/versions/{{v}}", f"{kind}.read", f"{res}@{{v}}"),
            Call(f"pull {kind}", "GET", f"{base}/versions/{{v}}/blob", f"{kind}.read",
                 f"{res}@{{v}}"),
            Call(f"{kind} gates", "GET", f"{base}/versions/{{v}}/gates", f"{kind}.read",
                 f"{res}@{{v}}"),
            Call(f"quarantine {kind}", "POST", f"{base}/versions/{{v}}/quarantine", "admin",
                 f"{res}@{{v}}", fresh=True, kwargs={"json": {"reason": "matrix"}}),
            Call(f"release {kind}", "POST", f"{base}/versions/{{v}}/release", "admin",
                 f"{res}@{{v}}", fresh=True, kwargs={"json": {"reason": "matrix"}}),
            Call(f"delete {kind}", "DELETE", f"{base}/versions/{{v}}", f"{kind}.delete",
                 f"{res}@{{v}}", fresh=True, kwargs={"params": {"reason": "matrix"}}),
        ]  # fmt: skip
    model, res = "/v1/models/fraud-clf/versions/{v}", "models/fraud-clf@{v}"
    out += [
        Call("promote", "POST", f"{model}/promote", "model.promote", res, fresh=True,
             kwargs={"json": {"stage": "staging"}}),
        Call("attach", "POST", f"{model}/attestations", "model.write", res, 201, fresh=True,
             kwargs={"params": {"kind": "signature"}}),
        Call("attachments", "GET", f"{model}/attestations", "model.read", res),
        Call("attachment", "GET", f"{model}/attestations/sha256:{'0' * 64}", "model.read", res,
             404),
        Call("whoami", "GET", "/v1/whoami", None, ""),
    ]  # fmt: skip
    return out


CALLS = _calls()
BAD = ["none", "malformed", "bearer-bearer", "trailing-junk", "unknown", "revoked", "expired",
       "disabled"]  # fmt: skip


def allowed(role: str, action: str | None) -> bool:
    return action is None or "*" in ROLES[role] or action in ROLES[role]


def headers(stack: Stack, caller: str) -> dict[str, str]:
    token = stack.tokens.get(caller, "")
    return {
        "none": {},
        "malformed": {"Authorization": "Basic YWRtaW46YWRtaW4="},
        "bearer-bearer": {"Authorization": f"Bearer Bearer {stack.tokens['admin']}"},
        "trailing-junk": {"Authorization": f"Bearer {stack.tokens['admin']} junk"},
        "unknown": {"Authorization": f"Bearer djt_{secrets.token_urlsafe(32)}"},
    }.get(caller, {"Authorization": f"Bearer {token}"})


@pytest.fixture
def stack(database_url: str, tmp_path: Path) -> Iterator[Stack]:
    with real_stack(database_url, tmp_path / "home") as served:
        model = tmp_path / "model.bin"
        model.write_bytes(b"weights v1")
        keys = LocalKeyProvider(tmp_path / "keys")
        keys.generate("release")
        bundle = sign_model(model, ProviderSigner(keys, "release"), tmp_path / "m.sig")
        served.extra["bundle"] = bundle.signature.read_bytes()
        with httpx.Client(base_url=served.url, headers=served.auth("admin")) as admin:
            assert admin.post("/v1/datasets/fraud/tx/versions", content=b"a,b\n").status_code == 201
            assert admin.post("/v1/models/fraud-clf/versions", content=b"w").status_code == 201
        yield served


def fresh_version(stack: Stack, call: Call) -> int:
    col = "models" if call.resource.startswith("models/") else "datasets"
    name = call.resource.split("/", 1)[1].split("@")[0]
    with httpx.Client(base_url=stack.url, headers=stack.auth("admin")) as admin:
        r = admin.post(f"/v1/{col}/{name}/versions", content=secrets.token_bytes(16))
        assert r.status_code == 201, r.text
        return int(r.json()["version"])


def run(stack: Stack, http: httpx.Client, call: Call, caller: str) -> tuple[httpx.Response, str]:
    version = fresh_version(stack, call) if call.fresh else 1
    kwargs = dict(call.kwargs)
    if call.label == "attach":
        kwargs["content"] = stack.extra["bundle"]
    stack.mark()
    r = http.request(
        call.method, call.path.format(v=version), headers=headers(stack, caller), **kwargs
    )
    return r, call.resource.format(v=version)


def decisions(entries: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return [e["decision"] for e in entries if e["kind"] == "access" and e["decision"]]


def authentications(entries: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return [e for e in entries if e["kind"] == "authentication"]


def test_every_route_for_every_caller(stack: Stack) -> None:
    cells = 0
    with httpx.Client(base_url=stack.url) as http:
        for call in CALLS:
            for caller in BAD:
                r, _ = run(stack, http, call, caller)
                assert r.status_code == 401, (call.label, caller, r.text)
                assert r.json()["detail"] == "invalid credentials", (call.label, caller)
                entries = stack.entries_since()
                assert decisions(entries) == [], (call.label, caller)
                (failure,) = authentications(entries)
                assert failure["outcome"] == "failure"
                assert failure["attributes"]["request_id"] == r.headers["x-request-id"]
                assert failure["attributes"]["src_ip"] == "127.0.0.1"
                cells += 1
            for role in ROLES:
                r, resource = run(stack, http, call, role)
                entries = stack.entries_since()
                (login,) = authentications(entries)
                assert login["outcome"] == "success", (call.label, role)
                made = decisions(entries)
                if call.action is None:
                    assert r.status_code == call.ok, (call.label, role)
                    assert made == [], (call.label, role)
                    continue
                (decision,) = made  # exactly one decision, for exactly this question
                assert (decision["action"], decision["resource"]) == (call.action, resource)
                if allowed(role, call.action):
                    assert r.status_code == call.ok, (call.label, role, r.text)
                    assert decision["effect"] == "allow"
                else:
                    assert r.status_code == 403, (call.label, role, r.text)
                    assert decision["effect"] == "deny"
                cells += 1
    assert cells == len(CALLS) * len(BAD) + (len(CALLS) - 1) * len(ROLES)
    assert stack.ledger.verify().ok


def test_every_authenticated_call_is_one_decision_in_the_ledger(stack: Stack) -> None:
    """30 calls are 30 access decisions and 30 authentications, not 60 of each (#15)."""
    stack.mark()
    with httpx.Client(base_url=stack.url, headers=stack.auth("reader")) as http:
        for _ in range(15):
            assert http.get("/v1/datasets/fraud/tx/versions/1").status_code == 200
            assert http.get("/v1/models/fraud-clf/versions/1/gates").status_code == 200
    entries = stack.entries_since()
    assert len(decisions(entries)) == 30
    assert len(authentications(entries)) == 30
    assert {e["source"] for e in entries if e["kind"] == "access"} == {"registry"}
