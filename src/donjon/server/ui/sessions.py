"""Console sessions: a short-lived server-side session per login, with its CSRF token.

The browser holds only a random session id (an HttpOnly, SameSite=Strict cookie);
the server keeps, keyed by the id's SHA-256, the API credential the user logged in
with, so every request re-checks it (a revoked token or a disabled account stops
working at once) and expires the session after ``ttl`` seconds, whatever happens.
Each session has its own CSRF token, which every form that changes something
carries and which is compared in constant time.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
import threading
from dataclasses import dataclass
from datetime import datetime, timedelta

from donjon.core.ports import Clock

COOKIE = "donjon_session"
LOGIN_COOKIE = "donjon_login"  # the login form's double-submit CSRF value
MAX_SESSIONS = 10_000


@dataclass(frozen=True, slots=True)
class Session:
    credential: str  # the API token or JWT; kept server-side only, never logged
    csrf: str
    expires: datetime


def _key(session_id: str) -> str:
    return hashlib.sha256(session_id.encode("utf-8")).hexdigest()


def same_secret(presented: str | None, expected: str) -> bool:
    """Constant-time comparison of a presented secret with the expected one."""
    if not presented:
        return False
    return hmac.compare_digest(presented.encode("utf-8"), expected.encode("utf-8"))


class SessionStore:
    """In-process sessions (one server process; see docs/console.md for workers)."""

    def __init__(self, clock: Clock, ttl_seconds: float = 900.0) -> None:
        self.clock = clock
        self.ttl = timedelta(seconds=ttl_seconds)
        self._sessions: dict[str, Session] = {}
        self._lock = threading.Lock()

    def open(self, credential: str) -> tuple[str, Session]:
        """A new session for a checked credential: its id (for the cookie) and itself."""
        session_id = secrets.token_urlsafe(32)
        now = self.clock.now()
        session = Session(credential, secrets.token_urlsafe(32), now + self.ttl)
        with self._lock:
            self._sweep(now)
            if len(self._sessions) >= MAX_SESSIONS:  # drop the oldest rather than grow
                self._sessions.pop(next(iter(self._sessions)))
            self._sessions[_key(session_id)] = session
        return session_id, session

    def get(self, session_id: str | None) -> Session | None:
        """The live session of ``session_id``; None when unknown or expired (then dropped)."""
        if not session_id:
            return None
        key = _key(session_id)
        with self._lock:
            session = self._sessions.get(key)
            if session is not None and session.expires <= self.clock.now():
                del self._sessions[key]
                return None
            return session

    def close(self, session_id: str | None) -> None:
        if session_id:
            with self._lock:
                self._sessions.pop(_key(session_id), None)

    def _sweep(self, now: datetime) -> None:
        expired = [k for k, s in self._sessions.items() if s.expires <= now]
        for key in expired:
            del self._sessions[key]
