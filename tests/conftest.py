"""Shared fixtures: an isolated DONJON_HOME for every test."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

REPO_ROOT = Path(__file__).resolve().parents[1]
SHARED_DIR = REPO_ROOT.parent / "shared"


@pytest.fixture(autouse=True)
def donjon_home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """Every test gets its own empty Donjon home and no stray DONJON_* variables."""

    for name in list(os.environ):
        if name.startswith("DONJON_"):
            monkeypatch.delenv(name)
    home = tmp_path / "donjon-home"
    monkeypatch.setenv("DONJON_HOME", str(home))
    return home
