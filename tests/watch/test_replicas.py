"""Two ``donjon server`` replicas, each with its own home folder, share one watch list on the
real PostgreSQL: what one enrols at promotion, or takes from ``donjon watch enrol`` run
against it, the other (and ``donjon watch status`` on the other's home) sees; promotions
through both at once lose nothing; a home's older JSON watch list is imported when its
replica starts, once."""

from __future__ import annotations

import io
import json
import shutil
import signal
import threading
from pathlib import Path

import httpx
import pytest

from donjon.cli.main import main
from donjon.provenance.keys import LocalKeyProvider, generate_private_key, private_pem
from donjon.storage.ledger_keys import FileKeyProvider
from tests.server.process import prepare_home, running_server, server_env
from tests.support.victims import Victim
from tests.support.victims import serve as serve_victim
from tests.watch.conftest import victim_models, write_held_out

pytestmark = [pytest.mark.integration, pytest.mark.postgres]

MODELS = ("churn-a", "churn-b")
OLD_LIST = {
    "watched": [
        {"model": "legacy-clf", "version": 2, "endpoint": "http://127.0.0.1:9/predict",
         "fingerprint": "sha256:" + "ab" * 32, "points": 200,
         "enrolled_at": "2026-11-30T08:00:00+00:00",
         "checks": [{"status": "same", "time": "2026-12-01T08:00:00+00:00"}], "probes": []}
    ]
}  # fmt: skip


def _config(endpoint: str) -> str:
    watched = "".join(
        f'\n[[watch.models]]\nname = "{name}"\nendpoint = "{endpoint}"\n'
        'data = "heldout.csv"\ndrop_columns = ["label"]\n'
        for name in MODELS
    )
    return f'[vault]\ngates = {{ prod = ["clean-scan"] }}\n\n[watch]\nkey = "watch"\n{watched}'


def test_replicas_share_the_watch_list(
    postgres_url: str,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
    caplog: pytest.LogCaptureFixture,
) -> None:
    home_a, home_b = tmp_path / "a", tmp_path / "b"
    token = prepare_home(home_a, postgres_url, monkeypatch, capsys)
    LocalKeyProvider(home_a / "keys").generate("watch")
    FileKeyProvider(home_a / "keys").public_key_pem("ledger")  # both replicas sign with it
    write_held_out(home_a / "heldout.csv")
    victim = Victim(victim_models()["promoted"].predict_proba)  # type: ignore[attr-defined]
    auth = {"Authorization": f"Bearer {token}"}
    with serve_victim(victim.answer, route="/predict") as endpoint:
        (home_a / "config.toml").write_text(_config(endpoint))
        shutil.copytree(home_a, home_b)  # one configuration and keys, two local disks
        (home_b / "watch").mkdir()
        (home_b / "watch" / "watched.json").write_text(json.dumps(OLD_LIST))
        env_a, env_b = (server_env(home, postgres_url) for home in (home_a, home_b))
        with running_server(env_a) as (proc_a, url_a), running_server(env_b) as (proc_b, url_b):
            for name in MODELS:
                pushed = httpx.post(f"{url_a}/v1/models/{name}/versions", content=b"weights",
                                    headers=auth, timeout=30)  # fmt: skip
                assert pushed.status_code == 201, pushed.text
            answers: dict[str, httpx.Response] = {}

            def promote(name: str, url: str) -> None:  # each through its own replica
                route = f"{url}/v1/models/{name}/versions/1/promote"
                answers[name] = httpx.post(route, json={"stage": "prod"}, headers=auth, timeout=120)

            pairs = zip(MODELS, (url_a, url_b), strict=True)
            threads = [threading.Thread(target=promote, args=pair) for pair in pairs]
            for t in threads:
                t.start()
            for t in threads:
                t.join()
            assert [answers[n].status_code for n in MODELS] == [200, 200], answers
            _enrol_from_a_laptop(tmp_path, url_a, token, endpoint, home_a, monkeypatch)
            assert "Enrolled churn-c@1" in capsys.readouterr().out
            for proc in (proc_a, proc_b):
                proc.send_signal(signal.SIGTERM)
            assert [proc.wait(timeout=60) for proc in (proc_a, proc_b)] == [0, 0]
    said = (home_b / f"server-{url_b.rsplit(':', 1)[1]}.log").read_text()
    assert "watch list: imported 1 watched version(s) with 1 check/probe result(s)" in said
    assert not (home_b / "watch" / "watched.json").exists()
    assert (home_b / "watch" / "watched.json.imported").exists()

    monkeypatch.setenv("DONJON_DATABASE_URL", postgres_url)
    for home in (home_a, home_b):  # either home's CLI sees them all, on the shared database
        monkeypatch.setenv("DONJON_HOME", str(home))
        assert main(["-f", "json", "watch", "status"]) == 0
        status = json.loads(capsys.readouterr().out)
        assert sorted((w["model"], w["version"]) for w in status) == [
            ("churn-a", 1), ("churn-b", 1), ("churn-c", 1), ("legacy-clf", 2)
        ]  # fmt: skip
        assert [w["points"] for w in status if w["model"] != "legacy-clf"] == [200] * 3

    (home_b / "watch" / "watched.json").write_text(json.dumps(OLD_LIST))  # again: a no-op
    caplog.clear()
    assert main(["-f", "json", "watch", "status"]) == 0
    assert len(json.loads(capsys.readouterr().out)) == 4
    assert "imported 0 watched version(s) with 0 check/probe result(s)" in caplog.text
    assert "1 already in the database were left as they are" in caplog.text


def _enrol_from_a_laptop(
    tmp_path: Path, url: str, token: str, endpoint: str, home: Path, mp: pytest.MonkeyPatch
) -> None:
    """``donjon watch enrol`` through replica ``url`` from a client whose own database is a
    local SQLite file: the vault puts the version on its (shared) watch list as it takes the
    fingerprint."""
    laptop = tmp_path / "laptop"
    mp.setenv("DONJON_HOME", str(laptop))
    mp.delenv("DONJON_DATABASE_URL")
    auth = {"Authorization": f"Bearer {token}"}
    pushed = httpx.post(f"{url}/v1/models/churn-c/versions", content=b"w", headers=auth, timeout=30)
    assert pushed.status_code == 201, pushed.text
    mp.setattr("sys.stdin", io.StringIO(token + "\n"))
    assert main(["login", "--server", url, "--token-stdin"]) == 0
    (tmp_path / "laptop.key").write_bytes(private_pem(generate_private_key()))
    assert main([
        "watch", "enrol", "churn-c", "1", "--endpoint", endpoint,
        "--data", str(home / "heldout.csv"), "--drop-column", "label",
        "--private-key", str(tmp_path / "laptop.key"),
    ]) == 0  # fmt: skip
