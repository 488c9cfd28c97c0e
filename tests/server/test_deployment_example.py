"""The deployment example (docs/deployment/) names real settings, commands and policies."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import yaml

from donjon.authz import load_policies
from donjon.cli.commands import COMMANDS
from donjon.config import load_settings

EXAMPLE = Path(__file__).resolve().parents[2] / "docs" / "deployment"


def _compose() -> dict[str, Any]:
    found: dict[str, Any] = yaml.safe_load((EXAMPLE / "compose.yaml").read_text())
    return found


def test_the_replicas_share_a_database_a_bucket_and_a_key_behind_the_proxy() -> None:
    services = _compose()["services"]
    assert {"postgres", "s3", "migrate", "vault-1", "vault-2", "proxy"} <= set(services)
    replicas = [services["vault-1"], services["vault-2"]]
    env = replicas[0]["environment"]
    assert all(r["environment"] == env for r in replicas)
    assert env["DONJON_DATABASE_URL"].startswith("postgresql://")
    assert env["DONJON_VAULT__S3_BUCKET"]
    assert all("ledger-keys:/home/donjon/.donjon/keys" in r["volumes"] for r in replicas)
    for replica in replicas:
        assert replica["depends_on"]["migrate"]["condition"] == "service_completed_successfully"
        assert "/readyz" in " ".join(replica["healthcheck"]["test"])
    nginx = (EXAMPLE / "nginx.conf").read_text()
    assert "vault-1:8470" in nginx
    assert "vault-2:8470" in nginx


def test_the_example_settings_are_valid(monkeypatch: pytest.MonkeyPatch) -> None:
    env = _compose()["services"]["vault-1"]["environment"]
    for name, value in env.items():
        if name.startswith("DONJON_"):
            monkeypatch.setenv(name, str(value))
    settings = load_settings()  # a misspelt DONJON_ variable is a ConfigError here
    assert settings.database_migrate is False
    assert settings.vault.s3_endpoint_url == "http://s3:9000"


def test_the_example_commands_and_policy_exist() -> None:
    services = _compose()["services"]
    names = {c.name for c in COMMANDS}
    for service in ("migrate", "vault-1"):
        command = " ".join(services[service]["command"])
        assert command.count("donjon ") >= 1
        for part in command.split("&&"):
            words = part.split()
            assert words[words.index("donjon") + 1] in names
    policies = load_policies((EXAMPLE / "policies.cedar").read_text(), "policies.cedar")
    assert policies
