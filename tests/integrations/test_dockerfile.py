"""The container build file, checked without a Docker daemon (none runs here).

What is checked: the runtime stage runs as a non-root uid, the extras it installs
exist, what it copies is kept by .dockerignore, and its default command is one
the real CLI accepts (and refuses to start without the TLS files it names).
"""

from __future__ import annotations

import json
import re
import tomllib
from pathlib import Path

import pytest

from donjon.cli.main import main

ROOT = Path(__file__).resolve().parents[2]
DOCKERFILE = (ROOT / "Dockerfile").read_text()


def _instructions() -> list[tuple[str, str]]:
    joined = re.sub(r"\\\n\s*", " ", DOCKERFILE)
    lines = [line.strip() for line in joined.splitlines()]
    return [tuple(line.split(None, 1)) for line in lines if line and not line.startswith("#")]  # type: ignore[misc]


def test_runtime_stage_is_non_root_and_read_only_friendly() -> None:
    runtime = DOCKERFILE.rsplit("\nFROM ", 1)[1]  # the last stage: what runs
    user = re.search(r"^USER (\d+):(\d+)$", runtime, re.M)
    assert user is not None
    assert int(user[1]) > 0
    assert int(user[2]) > 0
    assert "DONJON_HOME=/var/lib/donjon" in runtime
    assert 'VOLUME ["/var/lib/donjon"]' in runtime
    assert "PYTHONDONTWRITEBYTECODE=1" in runtime


def test_installed_extras_exist_and_copied_files_are_not_ignored() -> None:
    extras = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"][
        "optional-dependencies"
    ]
    wanted = re.search(r'pip install "\.\[([^\]]+)\]"', DOCKERFILE)
    assert wanted is not None
    assert set(wanted[1].split(",")) <= set(extras)
    kept = {
        line[1:].rstrip("/")
        for line in (ROOT / ".dockerignore").read_text().splitlines()
        if line.startswith("!")
    }
    copied = [arg for op, arg in _instructions() if op == "COPY" and "--from" not in arg]
    for arg in copied:
        for source in arg.split()[:-1]:
            assert (ROOT / source).exists(), source
            assert source.rstrip("/") in kept, source


def test_default_command_is_accepted_and_needs_its_tls_files(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    entry = json.loads(dict(_instructions())["ENTRYPOINT"])
    command = json.loads(dict(_instructions())["CMD"])
    assert entry == ["donjon"]
    assert command[0] == "server"
    monkeypatch.setenv("DONJON_HOME", str(tmp_path))
    assert main(command) == 2  # the mounted secrets are absent: refuses to start
    assert "/run/secrets/donjon/tls.crt" in capsys.readouterr().err
