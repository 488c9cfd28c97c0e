"""``donjon server`` as an orchestrator runs it: readiness, SIGTERM drain, --workers."""

from __future__ import annotations

import json
import signal
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.server.process import prepare_home, running_server, server_env

pytestmark = pytest.mark.integration

FAKE_AWS = {"AWS_ACCESS_KEY_ID": "test", "AWS_SECRET_ACCESS_KEY": "test"}
FAKE_AWS["AWS_DEFAULT_REGION"] = "us-east-1"


def _slow_body(parts: int, started: threading.Event) -> Iterator[bytes]:
    for i in range(parts):
        yield bytes([i % 256]) * 8192
        started.set()
        time.sleep(0.1)


def _delivered(home: Path) -> list[dict[str, Any]]:
    path = home / "events.jsonl"
    if not path.exists():
        return []
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def _stored_in(events: list[dict[str, Any]], resource: str) -> bool:
    return any(
        resource in json.dumps(e) and "stored" in json.dumps(e) and ".write" in json.dumps(e)
        for e in events
    )


@pytest.mark.parametrize("workers", [1, 2])
def test_sigterm_finishes_in_flight_requests_drains_the_outbox_and_exits_0(
    workers: int,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    home = tmp_path / "home"
    url_db = f"sqlite+pysqlite:///{tmp_path / 'vault.db'}"
    token = prepare_home(home, url_db, monkeypatch, capsys)
    env = server_env(home, url_db)
    headers = {"Authorization": f"Bearer {token}"}
    args = ("--workers", str(workers), "--graceful-timeout", "20")
    with running_server(env, *args) as (proc, url):
        ready = httpx.get(f"{url}/readyz", timeout=10)
        assert ready.status_code == 200
        assert ready.json() == {"status": "ready", "checks": {"database": "ok", "blobs": "ok"}}
        started = threading.Event()
        answer: list[httpx.Response] = []

        def push() -> None:
            answer.append(
                httpx.post(
                    f"{url}/v1/datasets/drain/versions",
                    content=_slow_body(15, started),
                    headers=headers,
                    timeout=30,
                )
            )

        pusher = threading.Thread(target=push)
        pusher.start()
        assert started.wait(10)
        proc.send_signal(signal.SIGTERM)  # mid-upload
        pusher.join(timeout=30)
        assert proc.wait(timeout=30) == 0
        assert answer, "the in-flight push got no answer"
        assert answer[0].status_code == 201, answer[0].text
        assert answer[0].json()["version"] == 1
        with pytest.raises(httpx.ConnectError):  # it stopped taking connections
            httpx.get(f"{url}/health", timeout=2)
    # services closed: the outbox was delivered to the event file before the exit
    assert _stored_in(_delivered(home), "datasets/drain@1")


def test_readiness_fails_when_the_blob_store_is_unreachable(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    from tests.server.process import free_port

    home = tmp_path / "home"
    url_db = f"sqlite+pysqlite:///{tmp_path / 'vault.db'}"
    prepare_home(home, url_db, monkeypatch, capsys)
    dead = f"http://127.0.0.1:{free_port()}"  # nothing listens there
    env = server_env(
        home, url_db, DONJON_VAULT__S3_BUCKET="vault", DONJON_VAULT__S3_ENDPOINT_URL=dead,
        AWS_MAX_ATTEMPTS="1", AWS_EC2_METADATA_DISABLED="true", **FAKE_AWS,
    )  # fmt: skip
    with running_server(env) as (proc, url):
        assert httpx.get(f"{url}/health").status_code == 200  # alive
        ready = httpx.get(f"{url}/readyz", timeout=30)
        assert ready.status_code == 503  # but not ready: keep it out of the pool
        assert ready.json() == {
            "status": "unavailable",
            "checks": {"database": "ok", "blobs": "unavailable"},
        }
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=30) == 0
