"""Enrolment at promotion and scheduled checks, through a real ``donjon up`` process.

The vault of ``donjon up`` has ``[watch]`` settings: promoting ``churn-clf`` to
prod (``donjon models promote``, over the vault's HTTP API) enrols it on its
endpoint and attaches the signed fingerprint, with no other command; the
scheduler then checks it every second and probes it. A watched model whose
endpoint does not answer cannot enter prod (DJ-WT-002).
"""

from __future__ import annotations

import io
import json
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest

from donjon.cli.main import main
from donjon.provenance.keys import LocalKeyProvider
from tests.server.process import POLICY, free_port, server_env, wait_ready
from tests.support.victims import Victim
from tests.support.victims import serve as serve_victim
from tests.watch.conftest import MODEL, victim_models, write_held_out

DEAD = "dead-clf"


def _config(home: Path, endpoint: str, data: Path) -> str:
    return f"""
[vault]
gates = {{ prod = ["clean-scan"] }}

[watch]
key = "watch"
check_seconds = 1
probe_seconds = 3600
probe_budget = 300
probe_rows = 2

[[watch.models]]
name = "{MODEL}"
endpoint = "{endpoint}"
data = "{data.name}"
drop_columns = ["label"]

[[watch.models]]
name = "{DEAD}"
endpoint = "http://127.0.0.1:9/predict"
data = "{data.name}"
drop_columns = ["label"]
"""


@contextmanager
def donjon_up(home: Path) -> Iterator[str]:
    """``donjon up`` as a subprocess on free ports; SIGTERM stops it (as a service manager)."""
    port = free_port()
    env = server_env(home, f"sqlite+pysqlite:///{home / 'donjon.db'}")
    log = home / "up.log"
    with log.open("wb") as out:
        proc = subprocess.Popen(
            [sys.executable, "-m", "donjon", "up", "--vault-port", str(port),
             "--metrics-port", "0", "--host", "127.0.0.1"],
            env=env, stdout=out, stderr=subprocess.STDOUT,
        )  # fmt: skip
    try:
        url = f"http://127.0.0.1:{port}"
        wait_ready(proc, url, log)
        yield url
    finally:
        proc.send_signal(signal.SIGTERM)
        try:
            assert proc.wait(timeout=30) == 0, log.read_text()
        finally:
            if proc.poll() is None:
                proc.kill()


def _events(home: Path) -> list[dict[str, Any]]:
    path = home / "events.jsonl"
    return [json.loads(line) for line in path.read_text().splitlines()] if path.exists() else []


def _wait_for(home: Path, found: Callable[[dict[str, Any]], bool], timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if any(found(e) for e in _events(home)):
            return
        time.sleep(0.2)
    raise AssertionError(f"no such event within {timeout} s: {(home / 'up.log').read_text()}")


def _action(event: dict[str, Any]) -> str:
    return str(event.get("action") or "")


def _is_rule(rule: str) -> Callable[[dict[str, Any]], bool]:
    return lambda e: rule in json.dumps(e)


def test_promotion_enrols_and_donjon_up_checks_on_schedule(
    donjon_home: Path,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    home = donjon_home
    home.mkdir(parents=True)
    (home / "policies.cedar").write_text(POLICY)
    assert main(["-f", "json", "access", "user", "add", "alice"]) == 0
    capsys.readouterr()
    assert main(["-f", "json", "access", "token", "issue", "alice"]) == 0
    token = json.loads(capsys.readouterr().out)["token"]
    LocalKeyProvider(home / "keys").generate("watch")
    data = write_held_out(home / "heldout.csv")
    models = victim_models()
    victim = Victim(models["promoted"].predict_proba)  # type: ignore[attr-defined]
    (tmp_path / "model.bin").write_bytes(b"weights of the promoted version")
    with serve_victim(victim.answer, route="/predict") as endpoint:
        (home / "config.toml").write_text(_config(home, endpoint, data))
        with donjon_up(home) as url:
            monkeypatch.setattr("sys.stdin", io.StringIO(token + "\n"))
            assert main(["login", "--server", url, "--token-stdin"]) == 0
            for name in (MODEL, DEAD):
                assert main(["models", "push", name, str(tmp_path / "model.bin")]) == 0
            capsys.readouterr()

            # a watched model whose endpoint is down does not enter prod: DJ-WT-002
            assert main(["models", "promote", DEAD, "1", "prod"]) == 1
            refused = capsys.readouterr().err
            assert "DJ-WT-002" in refused
            assert "did not answer" in refused
            assert main(["-f", "json", "models", "show", DEAD]) == 0
            shown = json.loads(capsys.readouterr().out)
            assert (shown["stage"], shown["attachments"]) == ("dev", [])

            # promotion to prod enrols: a signed fingerprint is attached, nothing else to run
            before = victim.queries
            assert main(["models", "promote", MODEL, "1", "prod"]) == 0
            assert victim.queries - before > 2000  # held-out rows, bisection, repeats
            capsys.readouterr()
            assert main(["-f", "json", "models", "show", MODEL]) == 0
            shown = json.loads(capsys.readouterr().out)
            assert shown["stage"] == "prod"
            (attached,) = shown["attachments"]
            enrolment = [g for g in shown["gates"] if g["gate"] == "watch-enrolment"]
            assert enrolment[-1]["details"]["fingerprint"] == attached["digest"]
            assert attached["kind"] == "fingerprint"
            assert attached["summary"]["points"] == 200

            # the scheduler checks it (every second) and probes it (once, then hourly)
            _wait_for(home, lambda e: _action(e) == "watch.check")
            _wait_for(home, lambda e: _action(e) == "watch.probe")
            victim.scores = models["other seed"].predict_proba  # type: ignore[attr-defined]
            _wait_for(home, _is_rule("DJ-WT-001"))

        assert main(["-f", "json", "watch", "status"]) == 0
        (status,) = json.loads(capsys.readouterr().out)
    assert status["model"] == MODEL
    assert status["last_check"]["status"] == "differs"
    probe = status["probes"][-1]
    assert probe["queries"] <= 300
    assert "transfer_pgd_at_0.1" in probe
    failures = [e for e in _events(home) if _is_rule("DJ-WT-002")(e)]
    assert any(DEAD in json.dumps(e) for e in failures)
