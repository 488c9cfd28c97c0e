"""The ``donjon-verify`` pre-commit hook: ``donjon verify-files`` on staged files, and the
hook itself run by the real ``pre-commit`` from a ``.pre-commit-config.yaml``."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import pytest

from donjon.cli.main import main
from donjon.provenance.keys import FileKeySigner, generate_private_key, public_pem
from donjon.provenance.sign import sign_model
from tests.integrations.test_precommit import PRE_COMMIT, ROOT, _git, _head, pytestmark

__all__ = ["pytestmark"]  # skipped where pre-commit, git or a checkout is missing


def _project(repo: Path) -> None:
    """A repository with a signed model folder, a signed lone file and the public key."""
    key = generate_private_key()
    (repo / "keys").mkdir(parents=True)
    (repo / "keys" / "release.pub").write_bytes(public_pem(key.public_key()))
    signer = FileKeySigner(key)
    folder = repo / "models" / "clf"
    (folder / "weights").mkdir(parents=True)
    (folder / "weights" / "model.safetensors").write_bytes(b"\x08\0\0\0\0\0\0\0{}      ")
    (folder / "config.json").write_text('{"layers": 2}')
    sign_model(folder, signer, folder / "model.sig")
    (repo / "models" / "head.onnx").write_bytes(b"onnx bytes")
    sign_model(repo / "models" / "head.onnx", signer, repo / "models" / "head.onnx.sig")


def test_verify_files_checks_each_covering_signature_once(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    _project(tmp_path)
    monkeypatch.chdir(tmp_path)
    key = ["--public-key", "keys/release.pub"]
    staged = ["models/clf/config.json", "models/clf/weights/model.safetensors", "README.md"]
    assert main(["verify-files", *staged, "models/head.onnx", *key]) == 0
    out = capsys.readouterr().out
    assert out.count("Verification succeeded") == 2  # the folder once, the lone file once

    Path("models/clf/config.json").write_text('{"layers": 3}')
    assert main(["verify-files", "models/clf/config.json", *key]) == 1
    assert "config.json" in capsys.readouterr().err

    Path("models/loose.pt").write_bytes(b"unsigned weights")
    assert main(["verify-files", "models/loose.pt", *key]) == 1
    assert "no signature covers" in capsys.readouterr().err
    assert main(["verify-files", "models/loose.pt", "--allow-unsigned", *key]) == 0


@pytest.mark.integration
def test_the_hook_blocks_a_commit_that_breaks_a_signature(tmp_path: Path) -> None:
    # builds the hook's virtualenv once (pip install of Donjon's core and cryptography)
    repo, home = tmp_path / "repo", tmp_path / "home"
    repo.mkdir(), home.mkdir()
    (home / "gitconfig").write_text("[user]\n\tname = t\n\temail = t@example.org\n")
    _git(repo, "init", "-q")
    _project(repo)
    (repo / ".pre-commit-config.yaml").write_text(
        f"repos:\n  - repo: {ROOT}\n    rev: {_head()}\n    hooks:\n      - id: donjon-verify\n"
        "        args: [--public-key, keys/release.pub]\n"
    )
    _git(repo, "add", "-A")
    env = {
        **os.environ,
        "PRE_COMMIT_HOME": str(home / "pre-commit"),
        "DONJON_HOME": str(home / "donjon"),
        "GIT_CONFIG_GLOBAL": str(home / "gitconfig"),
    }
    env.pop("PYTHONPATH", None)

    def run() -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [str(PRE_COMMIT), "run", "donjon-verify"],
            cwd=repo, env=env, capture_output=True, text=True, timeout=900, check=False,
        )  # fmt: skip

    clean = run()
    assert clean.returncode == 0, clean.stdout + clean.stderr
    assert "donjon verify (signatures of changed models)" in clean.stdout
    assert "Passed" in clean.stdout

    (repo / "models" / "clf" / "config.json").write_text('{"layers": 3}')
    _git(repo, "add", "models/clf/config.json")
    broken = run()
    assert broken.returncode == 1, broken.stdout + broken.stderr
    assert "Failed" in broken.stdout
    assert "config.json" in broken.stdout
