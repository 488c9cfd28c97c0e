"""Corpus fixtures, generated once per session (benign with the real libraries)."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.scan.corpus import write_benign, write_malicious


@pytest.fixture(scope="session")
def malicious_corpus(tmp_path_factory: pytest.TempPathFactory) -> dict[Path, str]:
    return write_malicious(tmp_path_factory.mktemp("malicious-corpus"))


@pytest.fixture(scope="session")
def benign_corpus(tmp_path_factory: pytest.TempPathFactory) -> list[Path]:
    return write_benign(tmp_path_factory.mktemp("benign-corpus"))
