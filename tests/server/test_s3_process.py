"""Two things as separate processes: an S3-compatible server (``moto_server``) and
``donjon server`` keeping its blobs there."""

from __future__ import annotations

import hashlib
import os
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import boto3
import httpx
import pytest

from tests.server.process import free_port, prepare_home, running_server, server_env

pytestmark = pytest.mark.integration

CREDENTIALS = {
    "AWS_ACCESS_KEY_ID": "donjon-test",
    "AWS_SECRET_ACCESS_KEY": "donjon-test",
    "AWS_DEFAULT_REGION": "us-east-1",
}


@pytest.fixture
def s3_endpoint(tmp_path: Path) -> Iterator[str]:
    """``moto_server`` on a free port, as a real process (not moto's in-process mock)."""
    executable = shutil.which("moto_server") or str(Path(sys.executable).parent / "moto_server")
    if not Path(executable).exists():
        pytest.skip("moto_server is not installed (pip install 'moto[server]')")
    port = free_port()
    log = (tmp_path / "moto.log").open("wb")
    proc = subprocess.Popen(
        [executable, "-H", "127.0.0.1", "-p", str(port)], stdout=log, stderr=subprocess.STDOUT
    )
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 30
        while True:
            try:
                httpx.get(url, timeout=1)
                break
            except httpx.HTTPError:
                if proc.poll() is not None or time.monotonic() > deadline:
                    raise RuntimeError("moto_server did not start") from None
                time.sleep(0.1)
        yield url
    finally:
        proc.send_signal(signal.SIGTERM)
        proc.wait(timeout=20)
        log.close()


def test_the_vault_keeps_blobs_in_an_s3_server_process(
    s3_endpoint: str,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    for name, value in CREDENTIALS.items():
        monkeypatch.setenv(name, value)
    s3 = boto3.client("s3", endpoint_url=s3_endpoint)
    s3.create_bucket(Bucket="vault")
    home = tmp_path / "home"
    url_db = f"sqlite+pysqlite:///{tmp_path / 'vault.db'}"
    token = prepare_home(home, url_db, monkeypatch, capsys)
    env = server_env(
        home, url_db, DONJON_VAULT__S3_BUCKET="vault", DONJON_VAULT__S3_PREFIX="blobs/",
        DONJON_VAULT__S3_ENDPOINT_URL=s3_endpoint, **CREDENTIALS,
    )  # fmt: skip
    body = os.urandom(300_000)
    digest = hashlib.sha256(body).hexdigest()
    headers = {"Authorization": f"Bearer {token}"}
    with running_server(env) as (proc, url):
        assert httpx.get(f"{url}/readyz").json()["checks"] == {"database": "ok", "blobs": "ok"}
        pushed = httpx.post(
            f"{url}/v1/datasets/tx/versions",
            content=body,
            headers={**headers, "X-Donjon-Digest": f"sha256:{digest}"},
        )
        assert pushed.status_code == 201, pushed.text
        pulled = httpx.get(f"{url}/v1/datasets/tx/versions/1/blob", headers=headers)
        assert pulled.status_code == 200
        assert pulled.content == body
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=30) == 0
    listed = s3.list_objects_v2(Bucket="vault").get("Contents", [])
    assert f"blobs/sha256/{digest}" in {o["Key"] for o in listed}
    assert not (home / "blobs" / "sha256").exists() or not any((home / "blobs").rglob("*"))
