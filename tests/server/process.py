"""``donjon server`` as a real subprocess: a prepared home, start, wait, stop."""

from __future__ import annotations

import json
import os
import signal
import socket
import ssl
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import httpx
import pytest

from donjon.cli.main import main

REPO = Path(__file__).resolve().parents[2]

POLICY = """\
@id("alice-vault")
permit (principal == User::"alice", action, resource in Collection::"models");
@id("alice-datasets")
permit (principal == User::"alice", action, resource in Collection::"datasets");
"""


def prepare_home(
    home: Path, database_url: str, monkeypatch: pytest.MonkeyPatch, capsys: Any
) -> str:
    """A vault home on ``database_url`` with a policy and user alice; returns her token."""
    monkeypatch.setenv("DONJON_HOME", str(home))
    monkeypatch.setenv("DONJON_DATABASE_URL", database_url)
    home.mkdir(parents=True, exist_ok=True)
    (home / "policies.cedar").write_text(POLICY)
    assert main(["-f", "json", "access", "user", "add", "alice"]) == 0
    capsys.readouterr()
    assert main(["-f", "json", "access", "token", "issue", "alice"]) == 0
    token: str = json.loads(capsys.readouterr().out)["token"]
    return token


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


def server_env(home: Path, database_url: str, **extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("DONJON_")}
    env.update(DONJON_HOME=str(home), DONJON_DATABASE_URL=database_url, **extra)
    env["PYTHONPATH"] = os.pathsep.join([str(REPO / "src"), str(REPO)])
    return env


@contextmanager
def running_server(
    env: dict[str, str], *args: str, scheme: str = "http", verify: ssl.SSLContext | bool = True
) -> Iterator[tuple[subprocess.Popen[bytes], str]]:
    """Start ``donjon server`` on a free port; yield the process and its URL; kill on exit.

    ``scheme`` and ``verify`` (a context that trusts the server's CA) serve TLS servers."""
    port = free_port()
    log = Path(env["DONJON_HOME"]) / f"server-{port}.log"
    with log.open("wb") as out:
        proc = subprocess.Popen(
            [sys.executable, "-m", "donjon", "server", "--host", "127.0.0.1",
             "--port", str(port), *args],
            env=env, stdout=out, stderr=subprocess.STDOUT,
        )  # fmt: skip
    url = f"{scheme}://127.0.0.1:{port}"
    try:
        wait_ready(proc, url, log, verify=verify)
        yield proc, url
    finally:
        if proc.poll() is None:
            proc.send_signal(signal.SIGKILL)
        proc.wait(timeout=30)


def wait_ready(
    proc: subprocess.Popen[bytes],
    url: str,
    log: Path,
    timeout: float = 60,
    verify: ssl.SSLContext | bool = True,
    probe: str = "/health",
    any_answer: bool = False,
) -> None:
    """Wait until ``GET url+probe`` answers 200 (any status with ``any_answer``: a model
    server with no health route); fail with the process's log if it exits or stays silent."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"the server exited {proc.returncode}: {log.read_text()}")
        try:
            # one connection per probe: none stays open to hold up a graceful shutdown
            answer = httpx.get(f"{url}{probe}", timeout=1, verify=verify)
            if any_answer or answer.status_code == 200:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.05)
    raise RuntimeError(f"the server did not start: {log.read_text()}")
