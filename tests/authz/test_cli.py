"""``donjon access`` end to end through ``main([...])`` on SQLite and PostgreSQL."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from donjon.cli.main import main
from donjon.soc import read_events
from tests.authz.example import EXAMPLE_POLICY


@pytest.fixture
def home(donjon_home: Path, database_url: str, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setenv("DONJON_DATABASE_URL", database_url)
    donjon_home.mkdir(parents=True, exist_ok=True)
    (donjon_home / "policies.cedar").write_text(EXAMPLE_POLICY)
    return donjon_home


def run(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    code = main(list(argv))
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def test_admin_explain_and_who_can(home: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert run(capsys, "access", "group", "add", "ml-engineers")[0] == 0
    assert run(capsys, "access", "user", "add", "alice", "--name", "Alice")[0] == 0
    assert run(capsys, "access", "user", "add", "bob", "-g", "ml-engineers")[0] == 0
    assert run(capsys, "access", "service-account", "add", "ci-bot")[0] == 0

    code, out, _ = run(capsys, "access", "explain", "alice", "dataset.read", "datasets/fraud/tx")
    assert code == 0
    assert "ALLOW user:alice" in out
    assert "permitted by alice-reads-fraud" in out
    code, out, _ = run(
        capsys,
        "-f",
        "json",
        "access",
        "explain",
        "alice",
        "dataset.read",
        "datasets/fraud/pii/cards",
    )
    assert code == 1
    assert json.loads(out)["policy_ids"] == ["no-fraud-pii-for-alice"]
    code, out, _ = run(
        capsys,
        "access",
        "explain",
        "alice",
        "model.deploy",
        "models/fraud-clf@3",
        "-x",
        "stage=prod",
        "-x",
        "signed=true",
    )
    assert code == 0
    code, _, _ = run(
        capsys,
        "access",
        "explain",
        "alice",
        "model.deploy",
        "models/fraud-clf@3",
        "-x",
        "stage=staging",
        "-x",
        "signed=true",
    )
    assert code == 1
    code, out, _ = run(
        capsys, "access", "explain", "user:zed", "dataset.read", "datasets/a", "-g", "ml-engineers"
    )
    assert code == 0, "a hypothetical principal with an assumed group"

    code, out, _ = run(capsys, "-f", "json", "access", "who-can", "model.read", "models/churn")
    assert code == 0
    assert [d["principal"] for d in json.loads(out)] == ["user:bob"]
    code, out, _ = run(capsys, "-f", "json", "access", "who-can", "model.write", "models/churn")
    assert [d["principal"] for d in json.loads(out)] == ["service:ci-bot"]

    code, out, _ = run(capsys, "-f", "json", "access", "user", "list")
    assert {a["id"]: a["groups"] for a in json.loads(out)}["bob"] == ["ml-engineers"]


def test_token_is_shown_once_and_recorded_without_secret(
    home: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    run(capsys, "access", "user", "add", "alice")
    code, out, err = run(
        capsys, "access", "token", "issue", "alice", "-s", "dataset.read", "--ttl-days", "3"
    )
    assert code == 0
    secret = out.strip()
    assert secret.startswith("djt_")
    assert "shown once" in err
    code, listing, _ = run(capsys, "-f", "json", "access", "token", "list")
    tokens = json.loads(listing)
    assert [t["scopes"] for t in tokens] == [["dataset.read"]]
    assert secret not in listing
    code, out, _ = run(capsys, "access", "token", "revoke", tokens[0]["id"])
    assert code == 0
    code, _, err = run(capsys, "access", "token", "revoke", tokens[0]["id"])
    assert code == 2
    assert "no active token" in err
    events = (home / "events.jsonl").read_text()
    assert tokens[0]["id"] in events
    assert secret not in events
    recorded = list(read_events(home / "events.jsonl"))
    assert [e.action for e in recorded][-2:] == ["token.issue", "token.revoke"]
    assert recorded[-1].principal is not None
    assert recorded[-1].principal.id.startswith("local:"), "the operator is named"
    code, out, _ = run(capsys, "audit", "export")
    assert secret not in out
    assert '"token.issue"' in out, "admin changes are written to the ledger"


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["access", "explain", "nobody", "dataset.read", "datasets/a"], "no account 'nobody'"),
        (["access", "explain", "robot:x", "dataset.read", "datasets/a"], "user:NAME"),
        (
            ["access", "explain", "user:a", "dataset.read", "datasets/a", "-x", "signed=maybe"],
            "true or false",
        ),
        (["access", "explain", "user:a", "dataset.read", "datasets/a", "-x", "oops"], "k=v"),
        (["access", "token", "issue", "ghost"], "no account 'ghost'"),
        (["access", "user", "add", "bad name"], "bad user name"),
        (["access", "group", "add-member", "nope", "nobody"], "no group"),
    ],
)
def test_usage_errors_exit_2(
    home: Path, capsys: pytest.CaptureFixture[str], argv: list[str], message: str
) -> None:
    code, _, err = run(capsys, *argv)
    assert code == 2
    assert message in err


def test_a_bad_policy_file_is_a_clear_error(home: Path, capsys: pytest.CaptureFixture[str]) -> None:
    (home / "policies.cedar").write_text(
        EXAMPLE_POLICY + '\n@id("typo")\npermit (principal, action == Action::"model.deploy", '
        'resource) when { context.stge == "prod" };\n'
    )
    code, _, err = run(capsys, "access", "explain", "user:a", "dataset.read", "datasets/a")
    assert code == 2
    assert "policies.cedar:" in err
    assert "policy 'typo'" in err
    code, _, err = run(capsys, "access", "policy", "check")
    assert code == 2
    assert "stge" in err
    (home / "policies.cedar").write_text(EXAMPLE_POLICY)
    code, out, _ = run(capsys, "access", "policy", "check")
    assert code == 0
    assert "7 policies valid" in out
    code, out, _ = run(capsys, "access", "policy", "schema")
    assert "entity Dataset in [Collection];" in out


def test_no_policy_file_denies_everything(home: Path, capsys: pytest.CaptureFixture[str]) -> None:
    (home / "policies.cedar").unlink()
    code, out, _ = run(
        capsys, "access", "explain", "user:alice", "dataset.read", "datasets/fraud/a"
    )
    assert code == 1
    assert "deny by default" in out
