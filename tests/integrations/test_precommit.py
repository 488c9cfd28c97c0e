"""The pre-commit hooks, run by the real ``pre-commit try-repo`` on a scratch git repository."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from donjon.scan.samples import torch_zip
from donjon.scan.samples_pickle import call, glob0, p2, shell

ROOT = Path(__file__).resolve().parents[2]
PRE_COMMIT = Path(sys.executable).with_name("pre-commit")

pytestmark = pytest.mark.skipif(
    not PRE_COMMIT.exists() or shutil.which("git") is None or not (ROOT / ".git").exists(),
    reason="needs pre-commit (test extra), git and a git checkout of Donjon",
)


def _git(repo: Path, *args: str) -> None:
    subprocess.run(["git", *args], cwd=repo, check=True, capture_output=True, timeout=60)


def _head() -> str:
    done = subprocess.run(
        ["git", "rev-parse", "HEAD"], cwd=ROOT, capture_output=True, text=True, check=True
    )
    return done.stdout.strip()


def _try_repo(repo: Path, home: Path, *files: str) -> subprocess.CompletedProcess[str]:
    """``pre-commit try-repo`` at the checkout's HEAD: one hook environment for both runs."""
    env = {
        **os.environ,
        "PRE_COMMIT_HOME": str(home / "pre-commit"),  # the hook's own virtualenv, built here
        "DONJON_HOME": str(home / "donjon"),
        "GIT_CONFIG_GLOBAL": str(home / "gitconfig"),
    }
    env.pop("PYTHONPATH", None)
    return subprocess.run(
        [str(PRE_COMMIT), "try-repo", str(ROOT), "donjon-scan", "--ref", _head(),
         "--files", *files],
        cwd=repo, env=env, capture_output=True, text=True, timeout=600, check=False,
    )  # fmt: skip


@pytest.mark.integration
def test_hook_passes_clean_models_and_blocks_a_malicious_one(tmp_path: Path) -> None:
    # builds the hook's virtualenv once (pip install of Donjon's core, about a minute)
    repo, home = tmp_path / "repo", tmp_path / "home"
    repo.mkdir(), home.mkdir()
    (home / "gitconfig").write_text("[user]\n\tname = t\n\temail = t@example.org\n")
    _git(repo, "init", "-q")
    (repo / "clean.pt").write_bytes(torch_zip(p2(b"}")))
    (repo / "notes.txt").write_text("not a model")
    (repo / "evil.pkl").write_bytes(p2(call(glob0("os", "system"), shell())))
    _git(repo, "add", "clean.pt", "notes.txt", "evil.pkl")

    clean = _try_repo(repo, home, "clean.pt", "notes.txt")
    assert clean.returncode == 0, clean.stdout + clean.stderr
    assert "donjon scan (model files)" in clean.stdout
    assert "Passed" in clean.stdout

    dirty = _try_repo(repo, home, "clean.pt", "evil.pkl")
    assert dirty.returncode == 1, dirty.stdout + dirty.stderr
    assert "Failed" in dirty.stdout
    assert "evil.pkl" in dirty.stdout
    assert "os.system" in dirty.stdout
    assert not (repo / "donjon-canary").exists()
