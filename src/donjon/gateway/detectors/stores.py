"""Where each principal's detector state lives: in the process, or in Redis.

:class:`MemoryStates` keeps the states of one process (:class:`~.state.StateTable`,
least recently used evicted). :class:`RedisStates` keeps them in Redis, so that
several workers and replicas see one principal's whole history and detect at the
same query count as one process would:

* ``<prefix><model>:<principal>``: the state (its window of scaled rows as float32,
  the line test's spans, counters, sticky refusals) in one binary value, read and
  written under a per-principal lock (``...:lock``, with a timeout): one round trip
  takes the lock and reads the state (a Lua script), one writes it and releases;
* ``...:labels``: the model's answer (int32) per window slot, written by the
  answering replica with one ``SETRANGE`` per slot, no lock needed;
* ``...:refused``: the sticky refusals (a hash: rule id -> wall-clock end and
  action), read before each request without the lock, expiring with the last.

Memory per principal is bounded by the window: ``window x (features + 2) x 4``
bytes and a few hundred more; the state expires ``ttl`` seconds after the
principal's last query (the in-process table's eviction, by time). Refusal times
are kept as wall-clock times in Redis, so replicas with different monotonic clocks
agree on when a refusal ends.
"""

from __future__ import annotations

import json
import struct
import time
import uuid
from collections.abc import Iterator
from contextlib import AbstractContextManager, contextmanager, suppress
from typing import Any, Protocol

import numpy as np
import numpy.typing as npt

from donjon.errors import GatewayError
from donjon.gateway.detectors import Action
from donjon.gateway.detectors.state import UNKNOWN, PrincipalState, StateTable

_HEADER = struct.Struct("<I")
# take the lock (KEYS[1]) and read the state and labels (KEYS[2], KEYS[3]) at once
_TAKE = """
if redis.call('SET', KEYS[1], ARGV[1], 'NX', 'PX', ARGV[2]) then
  return {1, redis.call('GET', KEYS[2]) or '', redis.call('GET', KEYS[3]) or ''}
end
return {0}
"""
# release the lock only if this session still holds it
_RELEASE = """
if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('DEL', KEYS[1]) end
return 0
"""


class StateStore(Protocol):
    def session(self, key: str) -> AbstractContextManager[PrincipalState]:
        """The principal's state, locked while the context lasts and saved when it exits."""
        ...

    def refusals(self, key: str) -> dict[str, tuple[float, Action]]:
        """The principal's sticky refusals: rule id -> (until, monotonic clock; action)."""
        ...

    def refuse(self, key: str, rule_id: str, until: float, action: Action) -> None:
        """Refuse the principal under ``rule_id`` until ``until`` (monotonic clock)."""
        ...

    def label(self, key: str, slots: list[int], labels: npt.NDArray[np.int64]) -> None:
        """Record the model's answers for the window slots of one request."""
        ...


class MemoryStates:
    """One process's states (bounded by ``max_principals``, LRU)."""

    def __init__(self, *, window: int, features: int, max_principals: int) -> None:
        self.table = StateTable(window=window, features=features, max_principals=max_principals)

    @contextmanager
    def session(self, key: str) -> Iterator[PrincipalState]:
        with self.table.lock:
            state = self.table.get(key)
            yield state
            state.pushed.clear()

    def refusals(self, key: str) -> dict[str, tuple[float, Action]]:
        with self.table.lock:
            return dict(self.table.get(key).blocked_until)

    def refuse(self, key: str, rule_id: str, until: float, action: Action) -> None:
        with self.table.lock:
            self.table.get(key).blocked_until[rule_id] = (until, action)

    def label(self, key: str, slots: list[int], labels: npt.NDArray[np.int64]) -> None:
        with self.table.lock:
            state = self.table.get(key)
            for slot, value in zip(slots, labels, strict=False):
                if slot >= 0:
                    state.label(slot, int(value))


class RedisStates:
    """States shared by every worker and replica through Redis."""

    def __init__(
        self,
        client: Any,
        *,
        window: int,
        features: int,
        prefix: str,
        ttl: float = 86_400.0,
        lock_timeout: float = 5.0,
    ) -> None:
        self.client = client
        self.window = window
        self.features = features
        self.prefix = prefix
        self.ttl = max(1, int(ttl))
        self.lock_timeout = lock_timeout
        self._take = client.register_script(_TAKE)
        self._release = client.register_script(_RELEASE)

    @classmethod
    def from_url(cls, url: str, **kwargs: Any) -> RedisStates:
        import redis

        return cls(redis.Redis.from_url(url, socket_timeout=2.0), **kwargs)

    @contextmanager
    def session(self, key: str) -> Iterator[PrincipalState]:
        import redis

        name = self.prefix + key
        token = uuid.uuid4().hex
        try:
            blob, labels = self._acquire(name, token)
            state = self._decode(blob, labels)
        except redis.RedisError as e:
            raise GatewayError(f"detector state store unavailable: {e}") from e
        saved = False
        try:
            yield state
            self._save(name, state, fresh=blob is None, token=token)
            saved = True
        except redis.RedisError as e:
            raise GatewayError(f"detector state store unavailable: {e}") from e
        finally:
            if not saved:
                with suppress(redis.RedisError):  # else it expires (lock_timeout)
                    self._release(keys=[name + ":lock"], args=[token])

    def _acquire(self, name: str, token: str) -> tuple[bytes | None, bytes | None]:
        """Take the principal's lock and read its state in one round trip (retrying
        while another replica holds the lock, up to ``lock_timeout``)."""
        deadline = time.monotonic() + self.lock_timeout
        millis = int(self.lock_timeout * 1000)
        keys = [name + ":lock", name, name + ":labels"]
        while True:
            got = self._take(keys=keys, args=[token, millis])
            if int(got[0]) == 1:
                return got[1] or None, got[2] or None
            if time.monotonic() > deadline:
                raise GatewayError(f"detector state of {name!r} stays locked by another replica")
            time.sleep(0.001)

    def refusals(self, key: str) -> dict[str, tuple[float, Action]]:
        import redis

        try:
            raw = self.client.hgetall(self.prefix + key + ":refused")
        except redis.RedisError as e:
            raise GatewayError(f"detector state store unavailable: {e}") from e
        now_wall, now_mono = time.time(), time.monotonic()
        out = {}
        for rule, value in raw.items():
            until, _, action = value.decode().partition("|")
            out[rule.decode()] = (float(until) - now_wall + now_mono, Action(action))
        return out

    def refuse(self, key: str, rule_id: str, until: float, action: Action) -> None:
        import redis

        name = self.prefix + key + ":refused"
        seconds = until - time.monotonic()
        wall = time.time() + seconds
        pipe = self.client.pipeline(transaction=False)
        pipe.hset(name, rule_id, f"{wall!r}|{action.value}")
        pipe.expire(name, max(1, int(seconds) + 1))
        try:
            pipe.execute()
        except redis.RedisError as e:
            raise GatewayError(f"detector state store unavailable: {e}") from e

    def label(self, key: str, slots: list[int], labels: npt.NDArray[np.int64]) -> None:
        import redis

        name = self.prefix + key + ":labels"
        pipe = self.client.pipeline(transaction=False)
        for slot, value in zip(slots, labels, strict=False):
            if 0 <= slot < self.window:
                pipe.setrange(name, slot * 4, struct.pack("<i", int(value)))
        try:
            pipe.execute()
        except redis.RedisError as e:
            raise GatewayError(f"detector state store unavailable: {e}") from e

    # -- encoding ---------------------------------------------------------------

    def _save(self, name: str, state: PrincipalState, *, fresh: bool, token: str) -> None:
        """Write the state and release the lock, in one round trip."""
        pipe = self.client.pipeline(transaction=False)
        pipe.set(name, self._encode(state), ex=self.ttl)
        unknown = struct.pack("<i", UNKNOWN)
        if fresh:  # every slot unanswered (SETRANGE on a missing key would pad with zeros)
            pipe.set(name + ":labels", unknown * self.window, ex=self.ttl)
        for slot in state.pushed:  # new rows have no answer yet
            pipe.setrange(name + ":labels", slot * 4, unknown)
        pipe.expire(name + ":labels", self.ttl)
        self._release(keys=[name + ":lock"], args=[token], client=pipe)
        pipe.execute()
        state.pushed.clear()

    def _encode(self, state: PrincipalState) -> bytes:
        last = state.spans
        header = {
            "v": 1,
            "walk": state.walk,
            "size": state.size,
            "cursor": state.cursor,
            "queries": state.queries,
            "ood": state.ood,
            "tested": state.tested,
            "synthetic": state.synthetic,
            "cusum": state.cusum,
            "grid_seen": state.grid_seen,
            "grid_off": state.grid_off,
            "last": -1 if last is None else len(last),
        }
        head = json.dumps(header, separators=(",", ":")).encode()
        body = state.rows.tobytes() + state.bisecting.tobytes()
        if last is not None:
            body += np.asarray(last, dtype=np.float32).tobytes()
        return _HEADER.pack(len(head)) + head + body

    def _decode(self, blob: bytes | None, labels: bytes | None) -> PrincipalState:
        state = PrincipalState(self.window, self.features)
        if blob is None:
            return state
        try:
            (size,) = _HEADER.unpack_from(blob)
            header = json.loads(blob[4 : 4 + size])
            body = memoryview(blob)[4 + size :]
            cells = self.window * self.features * 4
            state.rows = (
                np.frombuffer(body[:cells], dtype=np.float32)
                .reshape(self.window, self.features)
                .copy()
            )
            state.bisecting = np.frombuffer(
                body[cells : cells + self.window], dtype=np.bool_
            ).copy()
            last = int(header["last"])
            if last >= 0:
                start = cells + self.window
                state.spans = np.frombuffer(body[start : start + 4 * last], dtype=np.float32).copy()
        except (ValueError, KeyError, struct.error) as e:
            raise GatewayError(f"malformed detector state in Redis: {e}") from e
        for name in ("walk", "size", "cursor", "queries", "ood", "tested", "synthetic"):
            setattr(state, name, int(header[name]))
        state.cusum = float(header["cusum"])
        state.grid_seen, state.grid_off = int(header["grid_seen"]), int(header["grid_off"])
        if labels is not None and len(labels) >= 4 * self.window:
            state.labels = np.frombuffer(labels[: 4 * self.window], dtype="<i4").astype(np.int32)
        return state
