"""Fixtures of the gateway tests: one trained victim per session, a gateway per test."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.gateway.harness import (
    Gateway,
    Victim,
    serve_gateway,
    serve_victim,
    train_victim,
    write_setup,
)

PRINCIPALS = ["alice", "bob", "mallory", "eve", "trudy", "oscar"]


@pytest.fixture(scope="session")
def victim() -> Victim:
    return train_victim()


@pytest.fixture(scope="session")
def upstream(victim: Victim) -> Iterator[str]:
    with serve_victim(victim.model) as url:
        yield url


@pytest.fixture
def make_gateway(tmp_path: Path, victim: Victim, upstream: str) -> Iterator[Any]:
    stack: list[Any] = []

    def make(model_extra: dict[str, Any] | None = None, **top: Any) -> Gateway:
        settings, keys = write_setup(tmp_path, victim, PRINCIPALS, model_extra)
        if top:
            settings = settings.model_copy(update=top)
        context = serve_gateway(settings, keys, upstream)
        gateway = context.__enter__()
        stack.append(context)
        return gateway

    yield make
    for context in reversed(stack):
        context.__exit__(None, None, None)
