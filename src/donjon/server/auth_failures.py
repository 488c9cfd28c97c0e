"""Failed authentications: limited per source address, recorded in aggregate.

Without a bound, anyone could grow the permanent ledger with bad tokens. So,
per source address, in a window of ``window_seconds`` opened by its first
failure:

* the first failure is recorded at once (an ``authentication`` event with the
  reason, the source address and the request id): the SOC sees it immediately;
* later failures in the window are counted, and recorded as one summary event
  when the window closes: how many, the first and last request ids and times,
  how many were refused with 429, and the reasons with their counts;
* past ``limit`` failures, the source gets 429 (``Retry-After``) until the
  window closes, before its credential is even looked at.

So a flood from one address adds at most two ledger entries per window. Windows
are closed by :meth:`FailedAuthLimiter.sweep` (on each request and once a
second while the server runs) and by :meth:`FailedAuthLimiter.flush` at
shutdown. ``window_seconds`` 0 records every failure on its own.

With a :class:`SharedFailures` store (the database: ``donjon server`` wires
one), the limit is counted across every worker and replica: each failure is
added to the source's shared window, and the process that sees the count reach
the limit refuses the source at once; the others learn it within a second
(:meth:`FailedAuthLimiter.sync`) or at their next failure from it. N processes
then let through about ``limit`` failures per window, not N times ``limit``.
The ledger records stay per process (at most two per window and process).
"""

from __future__ import annotations

import logging
import threading
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime
from typing import Protocol

from donjon.core.events import EventKind, Outcome, SecurityEvent, utc_now
from donjon.core.severity import Severity
from donjon.errors import DonjonError

SOURCE = "server"
MAX_REASONS = 10  # distinct reasons kept per window; the rest are counted as "other"

Publish = Callable[[SecurityEvent], object]
log = logging.getLogger(__name__)


class SharedFailures(Protocol):
    """Failure windows per source shared by processes (``donjon.storage.auth_failures``).

    Times are Unix seconds: processes on several machines share them.
    """

    def add(self, source: str, now: float, window: float) -> tuple[int, float]:
        """Count a failure; the source's failures in its window, and when it opened."""
        ...

    def over(self, limit: int, now: float, window: float) -> dict[str, float]:
        """Sources with ``limit`` failures or more in an open window -> when it opened."""
        ...

    def expire(self, now: float, window: float) -> None: ...


@dataclass
class _Window:
    opened: float  # monotonic seconds
    first_id: str
    first_time: datetime
    last_id: str
    last_time: datetime
    failures: int = 1
    refused: int = 0
    reasons: Counter[str] = field(default_factory=Counter)


class FailedAuthLimiter:
    """Counts failed authentications per source; answers how long a source must wait."""

    def __init__(
        self,
        publish: Publish,
        *,
        limit: int = 20,
        window_seconds: float = 60.0,
        max_sources: int = 10_000,
        clock: Callable[[], float] = time.monotonic,
        shared: SharedFailures | None = None,
        wall_clock: Callable[[], float] = time.time,
    ) -> None:
        self._publish = publish
        self.limit = limit  # 0: never refuse with 429 (still aggregated)
        self.window = window_seconds
        self._max_sources = max_sources
        self._clock = clock
        self._windows: dict[str, _Window] = {}
        self._lock = threading.Lock()
        self._shared = shared if limit > 0 and window_seconds > 0 else None
        self._wall = wall_clock
        self._blocked: dict[str, float] = {}  # over the shared limit: until (Unix time)
        self._expired_at = 0.0

    def retry_after(self, source: str, request_id: str) -> float | None:
        """Seconds ``source`` must wait when it is over the limit (the refusal is counted)."""
        if self.limit <= 0:
            return None
        self.sweep()
        with self._lock:
            found = self._windows.get(source)
            wait = self._shared_wait(source)
            if wait is None and (found is None or found.failures < self.limit):
                return None
            now = utc_now()
            if found is None:  # refused for failures other processes counted
                found = self._windows[source] = _Window(
                    self._clock(), request_id, now, request_id, now, failures=0
                )
            found.refused += 1
            found.last_id, found.last_time = request_id, now
            local = max(0.0, found.opened + self.window - self._clock())
            return max(local, wait or 0.0)

    def _shared_wait(self, source: str) -> float | None:
        until = self._blocked.get(source)
        if until is None:
            return None
        left = until - self._wall()
        if left <= 0:
            del self._blocked[source]
            return None
        return left

    def sync(self) -> None:
        """Learn the sources other processes took over the shared limit (once a second)."""
        if self._shared is None:
            return
        now = self._wall()
        try:
            over = self._shared.over(self.limit, now, self.window)
            if now - self._expired_at >= self.window:
                self._shared.expire(now, self.window)
                self._expired_at = now
        except DonjonError as e:  # the local limit still holds meanwhile
            log.warning("cannot read the shared failed-authentication counts: %s", e)
            return
        with self._lock:
            self._blocked = {source: opened + self.window for source, opened in over.items()}

    def _count_shared(self, source: str) -> None:
        if self._shared is None:
            return
        try:
            failures, opened = self._shared.add(source, self._wall(), self.window)
        except DonjonError as e:  # the local limit still holds
            log.warning("cannot count a failed authentication in the database: %s", e)
            return
        if failures >= self.limit:
            with self._lock:
                self._blocked[source] = opened + self.window

    def failed(self, source: str, request_id: str, reason: str) -> None:
        """Count one failed authentication from ``source``; the first of a window is published."""
        self.sweep()
        self._count_shared(source)
        now = utc_now()
        evicted: tuple[str, _Window] | None = None
        with self._lock:
            found = self._windows.get(source)
            if found is not None and found.failures:
                found.failures += 1
                found.last_id, found.last_time = request_id, now
                _count(found.reasons, reason)
                return
            if found is not None:  # refused so far for others' failures: this is its first
                found.failures = 1
                found.first_id, found.first_time = request_id, now
                found.last_id, found.last_time = request_id, now
                _count(found.reasons, reason)
            else:
                if len(self._windows) >= self._max_sources:  # bounded memory: close the oldest
                    oldest = next(iter(self._windows))
                    evicted = (oldest, self._windows.pop(oldest))
                window = _Window(self._clock(), request_id, now, request_id, now)
                _count(window.reasons, reason)
                self._windows[source] = window
        if evicted is not None:
            self._close(*evicted)
        self._publish(_first_event(source, request_id, reason))

    def sweep(self) -> None:
        """Close the windows that have run their time, publishing their summaries."""
        now = self._clock()
        expired: list[tuple[str, _Window]] = []
        with self._lock:
            # Windows are kept in the order they opened, all of the same length:
            # the expired ones are at the front, so stop at the first open one.
            for source, window in self._windows.items():
                if now - window.opened < self.window:
                    break
                expired.append((source, window))
            for source, _ in expired:
                del self._windows[source]
        for source, window in expired:
            self._close(source, window)

    def flush(self) -> None:
        """Close every window now (at shutdown)."""
        with self._lock:
            closing = list(self._windows.items())
            self._windows.clear()
        for source, window in closing:
            self._close(source, window)

    def _close(self, source: str, window: _Window) -> None:
        if window.failures > 1 or window.refused:
            self._publish(_summary_event(source, window, self.window))


def _count(reasons: Counter[str], reason: str) -> None:
    if reason in reasons or len(reasons) < MAX_REASONS:
        reasons[reason] += 1
    else:
        reasons["other"] += 1


def _first_event(source: str, request_id: str, reason: str) -> SecurityEvent:
    return SecurityEvent(
        kind=EventKind.AUTHENTICATION,
        source=SOURCE,
        action="authenticate",
        message=f"authentication refused from {source}: {reason}",
        severity=Severity.LOW,
        outcome=Outcome.FAILURE,
        attributes={
            "src_ip": source,
            "request_id": request_id,
            "reason": reason,
            "failures": 1,
            "first_request_id": request_id,
            "last_request_id": request_id,
        },
    )


def _summary_event(source: str, window: _Window, seconds: float) -> SecurityEvent:
    refused = f", {window.refused} refused with 429" if window.refused else ""
    return SecurityEvent(
        kind=EventKind.AUTHENTICATION,
        source=SOURCE,
        action="authenticate",
        message=f"{window.failures} authentication failures from {source} "
        f"in {seconds:g} s (first {window.first_id}, last {window.last_id}){refused}",
        severity=Severity.MEDIUM if window.refused else Severity.LOW,
        outcome=Outcome.FAILURE,
        attributes={
            "src_ip": source,
            "aggregated": True,
            "failures": window.failures,
            "refused": window.refused,
            "first_request_id": window.first_id,
            "last_request_id": window.last_id,
            "first_time": window.first_time.isoformat(),
            "last_time": window.last_time.isoformat(),
            "window_seconds": seconds,
            "reasons": dict(window.reasons),
        },
    )
