"""Bounded waits for what is delivered in the background (outbox relay, threads, servers).

A test that reads a result once, right after the action, races with the delivery: on a
loaded machine the relay, the thread or the server is a moment late. These helpers poll
until the result is there or a generous deadline passes; the deadline only bounds a
failing test, a passing one returns as soon as the result arrives.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import TypeVar

T = TypeVar("T")

DEADLINE = 30.0


def wait_for(
    probe: Callable[[], T | None], timeout: float = DEADLINE, what: str = "the result"
) -> T:
    """Call ``probe`` until it returns something other than None; return that."""
    deadline = time.monotonic() + timeout
    while True:
        value = probe()
        if value is not None:
            return value
        if time.monotonic() >= deadline:
            raise AssertionError(f"timed out after {timeout:g} s waiting for {what}")
        time.sleep(0.05)


def wait_until(
    condition: Callable[[], bool], timeout: float = DEADLINE, what: str = "the condition"
) -> None:
    """Call ``condition`` until it is true; fail the test if ``timeout`` passes first."""
    wait_for(lambda: True if condition() else None, timeout, what)
