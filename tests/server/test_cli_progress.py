"""Push and pull show a progress bar on a terminal, through the CLI against a real server;
off a terminal (CI logs) and with ``--quiet`` they print none."""

from __future__ import annotations

import io
import os
import pty
import re
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from donjon.cli.main import main
from donjon.server import ServerLimits
from tests.registry.harness import make_vault
from tests.server.conftest import Served, build_app, serve

pytestmark = pytest.mark.integration
SIZE = 6 << 20  # several chunks of the upload and of the download
ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture
def served(database_url: str, tmp_path: Path) -> Iterator[Served]:
    """The vault over real HTTP, taking uploads of a few megabytes."""
    vault = make_vault(database_url, tmp_path / "blobs", max_blob_size=2 * SIZE)
    limits = ServerLimits(
        max_upload_bytes=2 * SIZE,
        max_json_bytes=64 * 1024,
        auth_failure_limit=0,
        auth_failure_window=0,
    )
    app, tokens = build_app(vault, limits)
    try:
        with serve(app) as url:
            yield Served(vault, app, url, tokens)
    finally:
        vault.db.dispose()


def test_push_and_pull_show_progress_on_a_terminal_only(
    served: Served,
    donjon_home: Path,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    for verb in ("read", "write", "list"):
        served.vault.authorizer.allow("alice", f"dataset.{verb}", "datasets/big")
    monkeypatch.setattr("sys.stdin", io.StringIO(served.token("alice") + "\n"))
    assert main(["login", "--server", served.url, "--token-stdin"]) == 0
    data = tmp_path / "big.bin"
    data.write_bytes(bytes(range(256)) * (SIZE // 256))
    capsys.readouterr()

    # standard error is not a terminal (pytest captures it): results only
    assert main(["datasets", "push", "big/set", str(data)]) == 0
    assert main(["datasets", "pull", "big/set", str(tmp_path / "plain.bin")]) == 0
    quiet = capsys.readouterr().err
    assert "pushing" not in quiet
    assert "pulling" not in quiet
    assert "\x1b[" not in quiet  # no cursor movement in a log

    monkeypatch.setenv("TTY_COMPATIBLE", "1")  # Rich's own switch: standard error is a terminal
    assert main(["datasets", "push", "big/set", str(data)]) == 0
    assert main(["datasets", "pull", "big/set", str(tmp_path / "drawn.bin")]) == 0
    drawn = capsys.readouterr().err
    assert "pushing big.bin" in drawn
    assert "pulling big/set" in drawn
    assert re.search(r"6\.3(/6\.3)? MB", drawn), drawn[-2000:]  # bytes done (of the total)
    assert (tmp_path / "drawn.bin").read_bytes() == data.read_bytes()

    assert main(["--quiet", "datasets", "pull", "big/set", str(tmp_path / "q.bin")]) == 0
    assert "pulling" not in capsys.readouterr().err


def _run_with_stderr_on(
    terminal: bool, argv: list[str], cwd: Path
) -> tuple[subprocess.CompletedProcess[bytes], str]:
    """``python -m donjon argv`` with standard error on a pseudo-terminal or a pipe."""
    env = {k: v for k, v in os.environ.items() if k not in ("TTY_COMPATIBLE", "FORCE_COLOR")}
    env["PYTHONPATH"] = os.pathsep.join([str(ROOT / "src"), env.get("PYTHONPATH", "")])
    command = [sys.executable, "-m", "donjon", *argv]
    if not terminal:
        done = subprocess.run(command, cwd=cwd, env=env, capture_output=True, timeout=120)
        return done, done.stderr.decode(errors="replace")
    controller, tty = pty.openpty()
    try:
        process = subprocess.Popen(command, cwd=cwd, env=env, stdout=subprocess.PIPE, stderr=tty)
        os.close(tty)
        drawn = b""
        while True:
            try:
                chunk = os.read(controller, 65536)
            except OSError:  # EIO: the child closed its end
                break
            if not chunk:
                break
            drawn += chunk
        out, _ = process.communicate(timeout=120)
    finally:
        os.close(controller)
    done = subprocess.CompletedProcess(command, process.returncode, out, b"")
    return done, drawn.decode(errors="replace")


def test_a_real_terminal_gets_the_bar_and_a_pipe_does_not(
    served: Served, donjon_home: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The same pull as a separate process: its standard error a pseudo-terminal (the bar),
    then a pipe, as in CI (nothing but the result)."""
    served.vault.authorizer.allow("alice", "dataset.read", "datasets/big")
    served.vault.authorizer.allow("alice", "dataset.write", "datasets/big")
    monkeypatch.setattr("sys.stdin", io.StringIO(served.token("alice") + "\n"))
    assert main(["login", "--server", served.url, "--token-stdin"]) == 0
    data = tmp_path / "big.bin"
    data.write_bytes(bytes(range(256)) * (SIZE // 256))
    assert main(["--quiet", "datasets", "push", "big/set", str(data)]) == 0
    done, drawn = _run_with_stderr_on(True, ["datasets", "pull", "big/set", "t.bin"], tmp_path)
    assert done.returncode == 0, drawn
    assert "pulling big/set" in drawn
    assert (tmp_path / "t.bin").read_bytes() == data.read_bytes()
    done, logged = _run_with_stderr_on(False, ["datasets", "pull", "big/set", "p.bin"], tmp_path)
    assert done.returncode == 0, logged
    assert "pulling" not in logged
    assert "\x1b[" not in logged
