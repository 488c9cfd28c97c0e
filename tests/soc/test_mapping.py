"""What the formats say an event means: the changed account, group changes, the caller's
address, and ECS category / type pairs that ECS allows."""

from __future__ import annotations

import asyncio
from pathlib import Path

import httpx

from donjon.authz.identity import IdentityService
from donjon.core import EventKind, SecurityEvent
from donjon.core.identity import Principal, PrincipalKind
from donjon.soc.cef import to_cef
from donjon.soc.ecs import to_ecs
from donjon.soc.ocsf import to_ocsf
from tests.soc.ocsf_schema import assert_valid_ocsf
from tests.soc.samples import every_kind

ADMIN = Principal("root-admin", PrincipalKind.USER, "the admin")

# ECS 8.x "expected event types" of each event.category (the ECS categorisation fields
# reference, ecs/schemas/event.yml allowed_values): any other pair is outside ECS.
ECS_ALLOWED_TYPES = {
    "api": {"access", "admin", "allowed", "change", "creation", "deletion", "denied", "end",
            "info", "start", "user"},
    "authentication": {"start", "end", "info"},
    "configuration": {"access", "change", "creation", "deletion", "info"},
    "database": {"access", "change", "info", "error"},
    "driver": {"change", "end", "info", "start"},
    "email": {"info"},
    "file": {"access", "change", "creation", "deletion", "info"},
    "host": {"access", "change", "end", "info", "start"},
    "iam": {"admin", "change", "creation", "deletion", "group", "info", "user"},
    "intrusion_detection": {"allowed", "denied", "info"},
    "library": {"start"},
    "malware": {"info"},
    "network": {"access", "allowed", "connection", "denied", "end", "info", "protocol",
                "start"},
    "package": {"access", "change", "deletion", "info", "installation", "start"},
    "process": {"access", "change", "end", "info", "start"},
    "registry": {"access", "change", "creation", "deletion"},
    "session": {"start", "end", "info"},
    "threat": {"indicator"},
    "vulnerability": {"info"},
    "web": {"access", "error", "info"},
}  # fmt: skip


def _identity_events(tmp_path: Path) -> list[SecurityEvent]:
    """The events the real identity store emits for account and group changes."""
    from donjon.storage.identity import SqlIdentityStore
    from donjon.storage.sql import open_database

    db = open_database(f"sqlite+pysqlite:///{tmp_path / 'ids.db'}")
    events: list[SecurityEvent] = []
    try:
        store = IdentityService(SqlIdentityStore(db), publish=events.append, actor=ADMIN)
        store.create_user("bob", "Bob")
        store.create_group("ml-team")
        store.set_member("ml-team", "bob")
        store.set_member("ml-team", "bob", member=False)
        store.issue_token("bob", ttl=None)
        store.set_disabled("bob", True)
    finally:
        db.dispose()
    return events


def test_account_changes_name_the_changed_account_and_the_actor(tmp_path: Path) -> None:
    events = {e.action: e for e in _identity_events(tmp_path)}
    for action in ("account.create", "account.disable", "token.issue"):
        doc = to_ocsf(events[action])
        assert doc["class_uid"] == 3001, action
        assert doc["user"]["uid"] == "bob", action  # the account that changed
        assert doc["actor"]["user"]["uid"] == "root-admin", action  # who changed it
        assert_valid_ocsf(doc)
        ecs = to_ecs(events[action])
        assert ecs["user"]["target"]["name"] == "bob"
        assert ecs["user"]["id"] == "root-admin"


def test_group_changes_are_group_management(tmp_path: Path) -> None:
    events = {e.action: e for e in _identity_events(tmp_path)}
    expected = {"group.create": 6, "group.add_member": 3, "group.remove_member": 4}
    for action, activity in expected.items():
        doc = to_ocsf(events[action])
        assert (doc["class_uid"], doc["activity_id"]) == (3006, activity), action
        assert doc["group"]["name"] == "ml-team"
        assert doc["actor"]["user"]["uid"] == "root-admin"
        assert_valid_ocsf(doc)
    assert to_ocsf(events["group.add_member"])["user"]["uid"] == "bob"
    ecs = to_ecs(events["group.add_member"])
    assert (ecs["event"]["category"], ecs["event"]["type"]) == (["iam"], ["group", "change"])
    assert ecs["group"]["name"] == "ml-team"
    assert ecs["user"]["target"]["name"] == "bob"


def test_every_ecs_category_type_pair_is_one_ecs_allows(tmp_path: Path) -> None:
    for event in [*every_kind(), *_identity_events(tmp_path)]:
        doc = to_ecs(event)
        for category in doc["event"]["category"]:
            assert category in ECS_ALLOWED_TYPES, (event.action, category)
            outside = set(doc["event"]["type"]) - ECS_ALLOWED_TYPES[category]
            assert outside == set(), (event.action, category, outside)


class Recorder:
    name = "recorder"

    def __init__(self, seen: list[SecurityEvent]) -> None:
        self.seen = seen

    def emit(self, event: SecurityEvent) -> None:
        self.seen.append(event)


def test_a_refused_vault_call_carries_the_callers_address(tmp_path: Path) -> None:
    """Through the real vault app: the 401's event has src_endpoint.ip."""
    from donjon.app import build
    from donjon.config import load_settings
    from donjon.server.factory import vault_app

    home = tmp_path / "home"
    home.mkdir()
    (home / "policies.cedar").write_text('@id("none")\nforbid (principal, action, resource);\n')
    settings = load_settings(None, home=home)
    with build(settings) as app:
        published: list[SecurityEvent] = []
        app.bus.subscribe(Recorder(published))
        asgi = vault_app(settings, app)
        transport = httpx.ASGITransport(app=asgi, client=("203.0.113.7", 50123))

        async def call() -> int:
            async with httpx.AsyncClient(transport=transport, base_url="http://vault") as http:
                answer = await http.get("/v1/whoami", headers={"authorization": "Bearer djt_x"})
            return answer.status_code

        assert asyncio.run(call()) == 401
    refused = [e for e in published if e.kind is EventKind.AUTHENTICATION]
    assert refused
    addressed = [to_ocsf(e)["src_endpoint"] for e in refused if e.attributes.get("src_ip")]
    assert {"ip": "203.0.113.7", "hostname": "localhost"} in addressed
    ecs = to_ecs(next(e for e in refused if e.attributes.get("src_ip")))
    assert ecs["source"] == {"ip": "203.0.113.7"}
    assert "src=203.0.113.7" in to_cef(next(e for e in refused if e.attributes.get("src_ip")))


def test_a_gateway_finding_carries_the_callers_address() -> None:
    from donjon.core.findings import Finding, Subject
    from donjon.gateway.rules import AUTH_FAILURE

    finding = Finding(AUTH_FAILURE, Subject(model="m", endpoint="/predict"), "refused")
    event = SecurityEvent.of_finding(finding, "gateway", src_ip="198.51.100.4")
    doc = to_ocsf(event)
    assert doc["evidences"][0]["src_endpoint"]["ip"] == "198.51.100.4"
    assert_valid_ocsf(doc)
