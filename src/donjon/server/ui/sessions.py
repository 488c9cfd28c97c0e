"""Console sessions: a short-lived server-side session per login, with its CSRF token.

The browser holds only a random session id (an HttpOnly, SameSite=Strict cookie).
The server keeps, keyed by the id's SHA-256, the credential the user logged in
with, *sealed* (AES-GCM) under a key derived from the id itself: whoever reads
the session rows (a database backup) learns neither the ids nor the credentials.
Every request unseals and re-checks the credential (a revoked token or a disabled
account stops working at once), and the session ends after ``ttl`` seconds
whatever happens, or at logout (its row is deleted). Each session has its own
CSRF token, which every form that changes something carries and which is
compared in constant time.

Where the rows live is a :class:`SessionRows` port: in process
(:class:`MemoryRows`, one server process) or in the vault's database
(``donjon.storage.console_sessions``), shared by every worker and replica.
"""

from __future__ import annotations

import hashlib
import hmac
import os
import secrets
import threading
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import NamedTuple, Protocol

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

from donjon.core.ports import Clock

COOKIE = "donjon_session"
LOGIN_COOKIE = "donjon_login"  # the login form's double-submit CSRF value
MAX_SESSIONS = 10_000  # in process: the oldest is dropped beyond this
_INFO = b"donjon console session credential v1"
_NONCE = 12


@dataclass(frozen=True, slots=True)
class Session:
    credential: str  # the API token or ID token; kept server-side only, never logged
    csrf: str
    expires: datetime
    viewed: frozenset[str] = frozenset()  # pages whose view this session has ledgered


class SessionRow(NamedTuple):
    """What is stored for a session: nothing that opens it without the cookie."""

    sealed: bytes
    csrf: str
    expires: datetime
    viewed: tuple[str, ...] = ()


Row = tuple[bytes, str, datetime, tuple[str, ...]]  # a SessionRow, as storage hands it back


class SessionRows(Protocol):
    """Session rows by key (the SHA-256 of the session id)."""

    def insert(self, key: str, row: Row) -> None: ...

    def get(self, key: str) -> Row | None: ...

    def delete(self, key: str) -> None: ...

    def add_view(self, key: str, page: str) -> None: ...

    def expire(self, now: datetime) -> None: ...


class MemoryRows:
    """Session rows in this process only (``--workers`` then needs sticky sessions)."""

    def __init__(self) -> None:
        self._rows: dict[str, Row] = {}
        self._lock = threading.Lock()

    def insert(self, key: str, row: Row) -> None:
        with self._lock:
            if len(self._rows) >= MAX_SESSIONS:  # drop the oldest rather than grow
                self._rows.pop(next(iter(self._rows)))
            self._rows[key] = row

    def get(self, key: str) -> Row | None:
        with self._lock:
            return self._rows.get(key)

    def delete(self, key: str) -> None:
        with self._lock:
            self._rows.pop(key, None)

    def add_view(self, key: str, page: str) -> None:
        with self._lock:
            found = self._rows.get(key)
            if found is not None and page not in found[3]:
                self._rows[key] = (*found[:3], (*found[3], page))

    def expire(self, now: datetime) -> None:
        with self._lock:
            for key in [k for k, r in self._rows.items() if r[2] <= now]:
                del self._rows[key]


def _key(session_id: str) -> str:
    return hashlib.sha256(session_id.encode("utf-8")).hexdigest()


def _cipher(session_id: str) -> AESGCM:
    hkdf = HKDF(algorithm=hashes.SHA256(), length=32, salt=None, info=_INFO)
    return AESGCM(hkdf.derive(session_id.encode("utf-8")))


def seal(session_id: str, credential: str) -> bytes:
    nonce = os.urandom(_NONCE)
    return nonce + _cipher(session_id).encrypt(nonce, credential.encode("utf-8"), None)


def unseal(session_id: str, sealed: bytes) -> str | None:
    try:
        plain = _cipher(session_id).decrypt(sealed[:_NONCE], sealed[_NONCE:], None)
    except (InvalidTag, ValueError):
        return None
    return plain.decode("utf-8")


def same_secret(presented: str | None, expected: str) -> bool:
    """Constant-time comparison of a presented secret with the expected one."""
    if not presented:
        return False
    return hmac.compare_digest(presented.encode("utf-8"), expected.encode("utf-8"))


class SessionStore:
    """Console sessions on ``rows`` (in process unless given the database's)."""

    def __init__(
        self, clock: Clock, ttl_seconds: float = 900.0, rows: SessionRows | None = None
    ) -> None:
        self.clock = clock
        self.ttl = timedelta(seconds=ttl_seconds)
        self.rows: SessionRows = rows if rows is not None else MemoryRows()

    def open(self, credential: str) -> tuple[str, Session]:
        """A new session for a checked credential: its id (for the cookie) and itself."""
        session_id = secrets.token_urlsafe(32)
        now = self.clock.now()
        session = Session(credential, secrets.token_urlsafe(32), now + self.ttl)
        self.rows.expire(now)
        row = SessionRow(seal(session_id, credential), session.csrf, session.expires)
        self.rows.insert(_key(session_id), row)
        return session_id, session

    def get(self, session_id: str | None) -> Session | None:
        """The live session of ``session_id``; None when unknown or expired (then dropped)."""
        if not session_id or len(session_id) > 100:
            return None
        key = _key(session_id)
        found = self.rows.get(key)
        if found is None:
            return None
        row = SessionRow(*found)
        if row.expires <= self.clock.now():
            self.rows.delete(key)
            return None
        credential = unseal(session_id, row.sealed)
        if credential is None:  # not sealed under this id: refused, never trusted
            return None
        return Session(credential, row.csrf, row.expires, frozenset(row.viewed))

    def viewed(self, session_id: str | None, page: str) -> None:
        """Remember that this session's view of ``page`` is in the ledger."""
        if session_id:
            self.rows.add_view(_key(session_id), page)

    def close(self, session_id: str | None) -> None:
        """End a session (logout, or a credential that no longer authenticates)."""
        if session_id:
            self.rows.delete(_key(session_id))
