"""One real ``mlflow server`` for the integration tests that need one (starting it is
most of their cost): each test registers its own model names on it."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.integrations.mlflow_env import Started, mlflow_server


@pytest.fixture(scope="package")
def mlflow_tracking(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Started]:
    """An ``mlflow server`` started once (wait for it with ``ready()``: a test can start its
    receiver meanwhile), stopped after the package's tests."""
    pytest.importorskip("mlflow")
    with mlflow_server(tmp_path_factory.mktemp("mlflow")) as started:
        yield started
