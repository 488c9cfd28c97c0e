"""The README's gateway tour as a user runs it: ``donjon demo``'s files, ``donjon demo-model``
serving the model, ``donjon gateway profile`` and ``donjon gateway`` in front of it."""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import httpx
import pytest

from donjon.cli.main import main
from donjon.errors import InputError
from donjon.quickstart.demo_model import NaiveBayes, load_training
from tests.server.process import free_port, server_env, wait_ready

ROWS = [[120.0, 900.0, 2.0, 15.0], [480.0, 120.0, 9.0, 260.0]]  # a typical row of each class


@contextmanager
def serving(env: dict[str, str], *args: str, port: int, log: Path) -> Iterator[str]:
    """``python -m donjon ARGS --port PORT`` until the block ends; yields its base URL."""
    with log.open("wb") as out:
        proc = subprocess.Popen(
            [sys.executable, "-m", "donjon", *args, "--port", str(port)],
            env=env, stdout=out, stderr=subprocess.STDOUT,
        )  # fmt: skip
    url = f"http://127.0.0.1:{port}"
    try:
        wait_ready(proc, url, log, probe="", any_answer=True)
        yield url
    finally:
        proc.kill()
        proc.wait(timeout=30)


def test_the_demo_model_serves_behind_the_gateway(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["demo", str(tmp_path)]) == 0
    profile = tmp_path / "profile.json"
    args = ["gateway", "profile", str(tmp_path / "train.csv"), "--drop", "label"]
    assert main([*args, "--drop", "source", "-o", str(profile)]) == 0
    keys = tmp_path / "keys.json"
    capsys.readouterr()
    assert main(["gateway", "key", "app", "--principal", "alice", "--file", str(keys)]) == 0
    token = capsys.readouterr().out.strip()
    # the demo's gateway.toml, on an API key file instead of the vault's tokens
    config = (tmp_path / "gateway.toml").read_text()
    config = config.replace("vault_identities = true", f'api_keys_file = "{keys}"')
    config = config.replace('profile = "profile.json"', f'profile = "{profile}"')
    (tmp_path / "gateway.toml").write_text(config)

    env = server_env(tmp_path / "home", "")
    env.pop("DONJON_DATABASE_URL")
    model_port, gateway_port = free_port(), free_port()
    with (
        serving(env, "demo-model", str(tmp_path), port=model_port, log=tmp_path / "m.log") as m,
        serving(
            env, "gateway", "--config", str(tmp_path / "gateway.toml"), "--upstream", m,
            port=gateway_port, log=tmp_path / "g.log",
        ) as gateway,
    ):  # fmt: skip
        direct = httpx.post(f"{m}/predict", json={"inputs": ROWS}).json()["predictions"]
        assert [round(sum(p), 6) for p in direct] == [1.0, 1.0]
        assert direct[0][0] > 0.99  # the two classes are told apart
        assert direct[1][1] > 0.99

        refused = httpx.post(f"{gateway}/predict", json={"inputs": ROWS})
        assert refused.status_code == 401
        answer = httpx.post(
            f"{gateway}/predict",
            json={"inputs": ROWS},
            headers={"Authorization": f"Bearer {token}"},
        )
        assert answer.status_code == 200, answer.text
        # the demo's hardening: top-1, two decimals
        assert json.loads(answer.text)["predictions"] == [[1.0, 0.0], [0.0, 1.0]]
        # a bare array of rows (TorchServe and BentoML clients) is forwarded bare: served
        bare = httpx.post(
            f"{gateway}/predict", json=ROWS, headers={"Authorization": f"Bearer {token}"}
        )
        assert bare.status_code == 200, bare.text
        assert json.loads(bare.text)["predictions"] == [[1.0, 0.0], [0.0, 1.0]]

        bad = httpx.post(f"{m}/predict", json={"inputs": [[1.0, 2.0]]})
        assert bad.status_code == 400
        assert "4 numbers" in bad.json()["error"]
        assert httpx.post(f"{m}/predict", content=b"{").status_code == 400


def test_the_demo_model_needs_the_demo_table(tmp_path: Path) -> None:
    with pytest.raises(InputError, match="run `donjon demo DIR` first"):
        load_training(tmp_path / "train.csv")
    (tmp_path / "train.csv").write_text("amount,label\n1,0\n")
    with pytest.raises(InputError, match="lacks the column"):
        load_training(tmp_path / "train.csv")
    assert main(["demo-model", str(tmp_path / "nowhere")]) == 2


def test_naive_bayes_fits_both_classes() -> None:
    model = NaiveBayes.fit(
        [[0.0, 0.0, 0.0, 0.0], [0.1, 0.0, 0.1, 0.0], [5.0, 5, 5, 5]] * 2, [0, 0, 1] * 2
    )
    assert model.probabilities([0.05, 0.0, 0.05, 0.0])[0] > 0.99
    with pytest.raises(InputError, match="labels 0 and 1"):
        NaiveBayes.fit([[0.0] * 4], [3])
