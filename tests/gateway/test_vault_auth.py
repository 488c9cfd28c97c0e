"""The gateway on the vault's identities and Cedar policy, end to end.

Accounts, groups and API tokens are made with the real CLI (``donjon access``) on
SQLite and PostgreSQL; the gateway is wired the way ``donjon gateway
--vault-identities --vault-policies`` wires it and served on loopback in front of
the digits victim.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest

from donjon.app import build, gateway_pipeline
from donjon.authz import IdentityService
from donjon.cli.main import main
from donjon.config import load_settings
from donjon.core import EventKind, Outcome
from donjon.core.clock import ManualClock
from donjon.gateway import create_proxy
from donjon.soc import read_events
from donjon.storage.identity import SqlIdentityStore
from donjon.storage.sql import Database, open_database
from tests.gateway.harness import Victim, serve_app, write_setup

pytestmark = pytest.mark.integration

POLICY = """\
@id("analysts-predict-digits")
permit (
  principal in Group::"analysts",
  action == Action::"model.predict",
  resource in Collection::"models/digits"
);

@id("no-models-for-mallory")
forbid (principal == User::"mallory", action, resource in Collection::"models");
"""


def cli(capsys: pytest.CaptureFixture[str], *argv: str) -> Any:
    code = main(["-f", "json", *argv])
    out = capsys.readouterr().out
    assert code == 0, out
    return json.loads(out) if out.strip() else None


@pytest.fixture
def home(donjon_home: Path, database_url: str, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setenv("DONJON_DATABASE_URL", database_url)
    donjon_home.mkdir(parents=True, exist_ok=True)
    (donjon_home / "policies.cedar").write_text(POLICY)
    return donjon_home


@pytest.fixture
def tokens(home: Path, capsys: pytest.CaptureFixture[str]) -> dict[str, dict[str, Any]]:
    cli(capsys, "access", "group", "add", "analysts")
    for user, groups in (
        ("alice", ["-g", "analysts"]),
        ("bob", []),
        ("mallory", ["-g", "analysts"]),
    ):
        cli(capsys, "access", "user", "add", user, *groups)
    issued = {
        who: cli(capsys, "access", "token", "issue", who) for who in ("alice", "bob", "mallory")
    }
    issued["alice-datasets"] = cli(
        capsys, "access", "token", "issue", "alice", "--scope", "dataset.read"
    )
    return issued


@pytest.fixture
def gateway(
    home: Path, tmp_path: Path, victim: Victim, upstream: str
) -> Iterator[tuple[str, Any, Database]]:
    settings = load_settings(None, home=home)
    gateway_settings, _keys = write_setup(tmp_path, victim, [], {"allow": []})
    database = open_database(settings.sql_url)
    try:
        with build(settings) as app:
            pipeline = gateway_pipeline(
                settings,
                gateway_settings,
                app.bus,
                vault_identities=True,
                vault_policies=True,
                database=database,
            )
            with serve_app(create_proxy(pipeline, upstream)) as url:
                yield url, app, database
    finally:
        database.dispose()


def ask(url: str, token: str | None, row: list[float]) -> httpx.Response:
    headers = {"authorization": f"Bearer {token}"} if token else {}
    return httpx.post(url + "/predict", json={"inputs": [row]}, headers=headers, timeout=10)


def test_vault_tokens_and_policy_decide_who_may_query_the_model(
    home: Path,
    tokens: dict[str, dict[str, Any]],
    gateway: tuple[str, Any, Database],
    victim: Victim,
    capsys: pytest.CaptureFixture[str],
) -> None:
    url, app, database = gateway
    rows = [r.tolist() for r in victim.x_test[:10]]
    allowed = ask(url, tokens["alice"]["token"], rows[0])
    assert allowed.status_code == 200, allowed.text
    assert len(allowed.json()["outputs"][0]) == 10

    for token in (None, "djt_" + "A" * 43, "not-a-token"):
        refused = ask(url, token, rows[1])
        assert refused.status_code == 401, (token, refused.text)
        assert refused.json()["error"]["code"] == "unauthenticated"
        assert refused.json()["error"]["message"] == "invalid credentials"
        assert refused.headers["www-authenticate"] == "Bearer"

    bob = ask(url, tokens["bob"]["token"], rows[2])
    assert bob.status_code == 403
    assert bob.json()["error"]["code"] == "forbidden"
    assert "deny by default" in bob.json()["error"]["message"]
    mallory = ask(url, tokens["mallory"]["token"], rows[3])
    assert mallory.status_code == 403
    assert "no-models-for-mallory" in mallory.json()["error"]["message"]
    scoped = ask(url, tokens["alice-datasets"]["token"], rows[4])
    assert scoped.status_code == 403
    assert "scopes" in scoped.json()["error"]["message"]

    cli(capsys, "access", "token", "revoke", tokens["alice"]["id"])
    revoked = ask(url, tokens["alice"]["token"], rows[5])
    assert revoked.status_code == 401
    assert revoked.json()["error"]["message"] == "invalid credentials"

    past = ManualClock(datetime.now(UTC) - timedelta(days=10))
    stale = IdentityService(SqlIdentityStore(database), clock=past).issue_token(
        "alice", ["model.predict"], timedelta(days=1)
    )
    expired = ask(url, stale.secret, rows[7])
    assert expired.status_code == 401
    assert expired.json()["error"]["message"] == "invalid credentials"

    cli(capsys, "access", "user", "disable", "mallory")
    assert ask(url, tokens["mallory"]["token"], rows[6]).status_code == 401

    assert app.deliver()
    events = list(read_events(home / "events.jsonl"))
    refusals = " ".join(e.message for e in events if e.finding is not None)
    for reason in ("no credentials", "API token", "neither", "revoked", "expired"):
        assert reason in refusals  # why each was refused is kept in the events, not the answer
    # each refusal is recorded once, as the gateway's finding, not again by the vault's checker
    refused_findings = [e for e in events if e.finding and e.finding.rule.id == "DJ-GW-006"]
    assert len(refused_findings) == 6
    assert not [
        e for e in events if e.kind is EventKind.AUTHENTICATION and e.outcome is Outcome.FAILURE
    ]
    decisions = [
        (e.decision.principal.id, e.decision.effect.value)
        for e in events
        if e.decision is not None and e.decision.action == "model.predict"
    ]
    assert ("alice", "allow") in decisions
    assert ("bob", "deny") in decisions
    assert ("mallory", "deny") in decisions
    logins = [e for e in events if e.action.startswith("authenticate.")]
    assert any(e.outcome is Outcome.SUCCESS for e in logins)  # successes come from the vault
    serialized = (home / "events.jsonl").read_text()
    assert tokens["alice"]["token"] not in serialized  # secrets never recorded


def test_the_cli_wires_the_vault_and_fails_closed_without_a_policy(
    home: Path, tmp_path: Path, victim: Victim, capsys: pytest.CaptureFixture[str]
) -> None:
    write_setup(tmp_path, victim, [])
    config = tmp_path / "gateway.toml"
    config.write_text(
        "[auth]\nvault_identities = true\n"
        '[[models]]\nname = "digits"\nroutes = ["/predict"]\nfeatures = 64\n'
    )
    argv = ["gateway", "--config", str(config), "--upstream", "http://127.0.0.1:9", "--check"]
    checked = cli(capsys, *argv, "--vault-policies")
    assert checked["vault_identities"] is True
    assert checked["vault_policies"] is True
    (home / "policies.cedar").unlink()
    code = main(["-f", "json", *argv, "--vault-policies"])
    assert code == 2
    assert "no Cedar policy file" in capsys.readouterr().err
    # stand-alone: no key file, no JWKS and no vault identities is refused too
    config.write_text('[[models]]\nname = "digits"\nroutes = ["/predict"]\n')
    assert main(argv) == 2
    assert "vault_identities" in capsys.readouterr().err
