"""The failed-authentication limiter on its own, with a settable clock."""

from __future__ import annotations

from donjon.core.events import SecurityEvent
from donjon.server.auth_failures import FailedAuthLimiter


class Clock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def test_windows_close_in_order_and_memory_stays_bounded() -> None:
    published: list[SecurityEvent] = []
    clock = Clock()
    limiter = FailedAuthLimiter(
        published.append, limit=3, window_seconds=10, max_sources=100, clock=clock
    )
    for i in range(250):  # a spray from 250 addresses, two failures each
        clock.now = i * 0.01
        limiter.failed(f"10.0.{i // 256}.{i % 256}", f"r{i}a", "unknown API token")
        limiter.failed(f"10.0.{i // 256}.{i % 256}", f"r{i}b", "unknown API token")
    assert len(limiter._windows) <= 100  # the oldest windows were closed early
    firsts = [e for e in published if not e.attributes.get("aggregated")]
    summaries = [e for e in published if e.attributes.get("aggregated")]
    assert len(firsts) == 250
    assert len(summaries) == 150  # the evicted ones, each counting its two failures
    assert all(e.attributes["failures"] == 2 for e in summaries)
    clock.now = 100.0
    limiter.sweep()
    assert limiter._windows == {}
    assert len([e for e in published if e.attributes.get("aggregated")]) == 250


def test_the_limit_holds_until_the_window_ends() -> None:
    published: list[SecurityEvent] = []
    clock = Clock()
    limiter = FailedAuthLimiter(published.append, limit=2, window_seconds=5, clock=clock)
    assert limiter.retry_after("a", "r0") is None
    limiter.failed("a", "r1", "bad")
    limiter.failed("a", "r2", "bad")
    clock.now = 1.0
    assert limiter.retry_after("a", "r3") == 4.0
    assert limiter.retry_after("b", "r4") is None  # another source is free
    clock.now = 5.0
    assert limiter.retry_after("a", "r5") is None  # the window closed: its summary is out
    (summary,) = [e for e in published if e.attributes.get("aggregated")]
    assert (summary.attributes["failures"], summary.attributes["refused"]) == (2, 1)
    assert summary.attributes["last_request_id"] == "r3"
