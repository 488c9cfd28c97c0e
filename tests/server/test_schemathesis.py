"""Property-based tests of the published OpenAPI document: no input makes the vault fail (5xx)."""

from __future__ import annotations

import io
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import schemathesis
from hypothesis import HealthCheck, given, settings

from tests.registry.harness import ALICE, make_vault
from tests.server.conftest import build_app

pytestmark = pytest.mark.integration

TOKENS: dict[str, str] = {}


@pytest.fixture
def api_schema(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Any]:
    root: Path = tmp_path_factory.mktemp("schemathesis")
    vault = make_vault(
        f"sqlite+pysqlite:///{root / 'vault.db'}", root / "blobs", max_blob_size=4096
    )
    for kind in ("dataset", "model"):
        for verb in ("read", "write", "list", "delete", "promote"):
            vault.authorizer.allow("alice", f"{kind}.{verb}", f"{kind}s")
    vault.authorizer.allow("alice", "admin", "datasets")
    vault.authorizer.allow("alice", "admin", "models")
    from donjon.registry import Kind

    vault.registry.push(ALICE, Kind.DATASET, "fraud/tx", io.BytesIO(b"rows"))
    vault.registry.push(ALICE, Kind.MODEL, "fraud-clf", io.BytesIO(b"weights"))
    app, tokens = build_app(vault)
    TOKENS.update(tokens)
    auth = {"Authorization": f"Bearer {tokens['alice']}"}
    try:
        yield schemathesis.openapi.from_asgi("/v1/openapi.json", app, headers=auth)
    finally:
        vault.db.dispose()


def test_no_input_makes_the_server_fail(api_schema: Any) -> None:
    auth = {"Authorization": f"Bearer {TOKENS['alice']}"}
    operations = [result.ok() for result in api_schema.get_all_operations()]
    assert len(operations) >= 20
    statuses: list[int] = []

    for operation in operations:

        @given(case=operation.as_strategy())
        @settings(
            max_examples=15,
            deadline=None,
            derandomize=True,
            database=None,
            suppress_health_check=list(HealthCheck),
        )
        def check(case: Any) -> None:
            response = case.call(headers=auth)
            statuses.append(response.status_code)
            assert response.status_code < 500, (case.method, case.formatted_path, response.text)
            if response.status_code >= 400:
                assert set(response.json()) == {"error", "detail"}, response.text

        check()
    # the run reached the handlers, not only the validators
    assert {200, 201} & set(statuses)
    assert {400, 404, 409, 422} & set(statuses)
