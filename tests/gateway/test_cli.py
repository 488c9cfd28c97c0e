"""``donjon gateway`` through ``main([...])``: profile, key, --check."""

from __future__ import annotations

import csv
import json
import subprocess
import sys
from pathlib import Path

import pytest

from donjon.cli.main import main
from donjon.gateway import ApiKeyAuthenticator, ReferenceProfile
from tests.gateway.harness import Victim


def test_profile_from_csv_with_a_label_column(
    tmp_path: Path, victim: Victim, capsys: pytest.CaptureFixture[str]
) -> None:
    data = tmp_path / "train.csv"
    with data.open("w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow([f"p{i}" for i in range(64)] + ["label"])
        for x, y in zip(victim.x_train, victim.y_train, strict=True):
            writer.writerow([*map(int, x), int(y)])
    out = tmp_path / "profile.json"
    code = main(["-f", "json", "gateway", "profile", str(data), "-o", str(out), "--drop", "label"])
    assert code == 0
    summary = json.loads(capsys.readouterr().out)
    assert (summary["rows"], summary["features"], summary["quantum"]) == (
        len(victim.x_train), 64, 1.0,
    )  # fmt: skip
    profile = ReferenceProfile.load(out)
    assert profile.features == 64
    scores = profile.knn_distance(profile.scaled(victim.x_test)) / profile.knn_threshold()
    assert 0.0 < (scores > 1).mean() < 0.05  # calibrated near 1 % on held-out digits


def test_profile_rejects_bad_data(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    bad = tmp_path / "bad.json"
    bad.write_text('[["a", "b"]]')
    assert main(["gateway", "profile", str(bad), "-o", str(tmp_path / "p.json")]) == 2
    assert "numeric" in capsys.readouterr().err
    assert not (tmp_path / "p.json").exists()
    few = tmp_path / "few.json"
    few.write_text(json.dumps([[1.0, 2.0]] * 5))
    assert main(["gateway", "profile", str(few), "-o", str(tmp_path / "p.json")]) == 2


def test_key_command_adds_a_hashed_key(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    keys = tmp_path / "keys.json"
    assert main(["gateway", "key", "k1", "--principal", "alice", "--file", str(keys)]) == 0
    token = capsys.readouterr().out.strip()
    assert token.startswith("djk_k1_")
    assert token not in keys.read_text()
    auth = ApiKeyAuthenticator.from_file(keys)
    assert auth.verify(token).id == "alice"
    assert main(["gateway", "key", "k1", "--principal", "bob", "--file", str(keys)]) == 2


def test_check_validates_the_config(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    keys = tmp_path / "keys.json"
    assert main(["gateway", "key", "k1", "--principal", "alice", "--file", str(keys)]) == 0
    capsys.readouterr()
    config = tmp_path / "gateway.toml"
    config.write_text(
        'upstream = "http://127.0.0.1:9"\n[auth]\napi_keys_file = "keys.json"\n'
        '[[models]]\nname = "m"\nroutes = ["/predict"]\nallow = ["*"]\n'
    )
    assert main(["-f", "json", "gateway", "--config", str(config), "--check"]) == 0
    summary = json.loads(capsys.readouterr().out)
    assert summary["upstream"] == "http://127.0.0.1:9"
    assert summary["models"] == [{"name": "m", "routes": ["/predict"], "profile": False}]
    config.write_text(config.read_text() + "bogus = 1\n")
    assert main(["gateway", "--config", str(config), "--check"]) == 2
    assert "bogus" in capsys.readouterr().err
    assert main(["gateway"]) == 2


def test_rule_catalogue_loads_without_the_gateway_extra() -> None:
    code = (
        "import sys; from donjon.catalog import rule_registry; "
        "assert 'DJ-GW-001' in rule_registry(); "
        "print(sorted(m for m in ('numpy', 'jwt', 'starlette', 'httpx') if m in sys.modules))"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert done.stdout.strip() == "[]"
