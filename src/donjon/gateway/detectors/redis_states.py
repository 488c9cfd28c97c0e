"""Detector state shared by every worker and replica through Redis.

Several workers and replicas see one principal's whole history and detect at the
same query count as one process would. A principal's requests in one process form
*batches*: the first opens the state at once; those that arrive while it is open
queue behind it, and when it ends they open the state together, at most ``batch``
of them. A batch costs two round trips however many requests it holds: one Lua
script (:mod:`.redis_layout`) checks the principal's refusals, takes every
request's quota buckets (when the quotas are in Redis on the same URL), takes the
lock and reads the state; the requests then run the detectors on that one state in
turn, in arrival order, exactly as in-process state would see them (a refusal one
of them earns refuses those after it); the last one's close saves what they all
changed, records their refusals and unlocks, and the next batch's open leaves in
the same write. Every request of a batch waits for that save before it is
answered, so an answer never runs ahead of the state that says it was seen, and a
failed save refuses them all (503). The models' answers are written as they come
(``BITFIELD``, one a request, no lock), and applied to the batch still open too.

Why batches, and not one script that saves a request's state and opens the next
one's (or a save pipelined with the next open): those still pay a round trip and
two or three event-loop wake-ups a request, and the measurements said that is what
the one-principal case costs (CPU per request about twice in-process, most of it
the loop's own turns); a batch pays them once for all the requests that queued
while the one before it was open, so the more requests queue, the less each pays.
The save is not deferred past the answers, so a crash loses nothing that was
answered, and other replicas see every answered query.

Replicas stay fair: a process that finds the state locked takes the *next turn*
(``...:next``, renewed by each try); the holder's next batch then leaves the lock
to it, so a process with requests always ready cannot keep another's out.

Each process keeps the states it saved last (least recently used evicted, at most
``max_cached``): every save writes a fresh random tag at the head of the state,
and an open whose cached tag is still the one in Redis (no other process saved
since) reads only the labels (``window x 4`` bytes), not the window's rows. Keys:

* ``<prefix><model>:<principal>``: the tag, then the counters, the bisection flags
  and the line test's spans (packed, about 700 bytes), rewritten by each save;
* ``...:rows``: the window of scaled rows (float32), each save writing only the
  rows it added (``SETRANGE``);
* ``...:lock``: the per-principal lock (the batch's tag, with a timeout);
* ``...:next``: the request of another process waiting for the lock, next in line;
* ``...:labels``: the model's answer + 1 (big-endian int32, 0: not known yet) per
  window slot, written by the answering replica (``BITFIELD``), no lock needed;
* ``...:refused``: the sticky refusals (a hash: rule id -> end and action), the end
  in Redis's own clock, so replicas with different clocks agree on it.

Memory per principal is bounded by the window: ``window x (features + 2) x 4``
bytes and a few hundred more; every key expires ``ttl`` seconds after the
principal's last query (the in-process table's eviction, by time). Redis failing
raises :class:`~donjon.gateway.redis_link.StateUnavailable`: the request is refused.
"""

from __future__ import annotations

import asyncio
import os
import time
from collections import OrderedDict, deque
from collections.abc import Sequence
from contextlib import suppress
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import numpy.typing as npt

from donjon.gateway.detectors import Action
from donjon.gateway.detectors.redis_layout import (
    CLOSE,
    OPEN,
    REFUSALS,
    RELEASE,
    TAG,
    decode,
    encode,
    read_labels,
)
from donjon.gateway.detectors.state import PrincipalState
from donjon.gateway.detectors.stores import Charge, Opened, Refusal
from donjon.gateway.quotas import QuotaResult, QuotaStore, RedisQuotas
from donjon.gateway.redis_link import RedisLink, StateUnavailable

__all__ = ["TAG", "RedisStates"]

_PAUSE = 0.002  # seconds: the longest pause between two tries of a locked state


@dataclass(eq=False)
class _Request:
    """One request of a batch; ``turn`` resolves when the request before it closed."""

    charges: Sequence[Charge]
    now: float
    turn: asyncio.Future[Opened]


@dataclass(eq=False)
class _Batch:
    """Requests of one principal in this process sharing one lock, one read, one save."""

    key: str
    token: str  # the lock's, and the tag of the state it saves
    quotas: QuotaStore
    inline: bool  # the quota buckets are taken by the open script
    requests: list[_Request] = field(default_factory=list)
    at: int = -1  # the request whose turn it is
    sent: asyncio.Future[Any] | None = None  # its open script, queued as it started
    keys: list[str] = field(default_factory=list)
    args: list[Any] = field(default_factory=list)
    charged: list[Charge] = field(default_factory=list)  # the script's, in order
    cached: PrincipalState | None = None  # the state saved under the cached tag
    state: PrincipalState | None = None
    locked: bool = False
    refused: tuple[str, Action] | None = None  # a refusal in force, read from Redis
    denied: dict[int, tuple[str, QuotaResult]] = field(default_factory=dict)
    blocked: dict[str, tuple[float, Action]] = field(default_factory=dict)  # its own
    refusals: list[Refusal] = field(default_factory=list)
    used: bool = False  # a request closed: save
    waiting: list[asyncio.Future[None]] = field(default_factory=list)  # for the save


class RedisStates:
    """States shared by every worker and replica through Redis, the last saved cached."""

    def __init__(
        self,
        link: RedisLink,
        *,
        window: int,
        features: int,
        prefix: str,
        ttl: float = 86_400.0,
        lock_timeout: float = 5.0,
        max_cached: int = 2000,
        batch: int = 32,
    ) -> None:
        self.link = link
        self.window = window
        self.features = features
        self.prefix = prefix
        self.ttl = max(1, int(ttl))
        self.lock_timeout = lock_timeout
        self.max_cached = max_cached
        self.batch = max(1, batch)
        self._open: dict[str, _Batch] = {}  # the batch holding each principal in this process
        self._queued: dict[str, deque[_Batch]] = {}  # the batches waiting for it
        self._cache: OrderedDict[str, tuple[str, PrincipalState]] = OrderedDict()
        self.reads = {"same": 0, "open": 0}  # cache hits and full reads
        self._background: set[asyncio.Future[None]] = set()

    @classmethod
    def from_url(cls, url: str, **kwargs: Any) -> RedisStates:
        return cls(RedisLink(url), **kwargs)

    async def open(
        self, key: str, quotas: QuotaStore, charges: Sequence[Charge], now: float
    ) -> Opened:
        request = _Request(charges, now, asyncio.get_running_loop().create_future())
        batch = self._open.get(key)
        if batch is None:  # no request of this process holds the principal: open it now
            batch = self._open[key] = self._batch(key, quotas)
            batch.requests.append(request)
            self._start(batch)
            try:
                await self._read(batch)
            except BaseException:
                self._end(batch)
                raise
        else:  # queue for the next batch (opened by the request that ends this one)
            queue = self._queued.setdefault(key, deque())
            if not queue or len(queue[-1].requests) >= self.batch:
                queue.append(self._batch(key, quotas))
            batch = queue[-1]
            batch.requests.append(request)
        try:
            opened = await request.turn
            if opened.state is not None and not batch.inline:
                for charge in charges:  # buckets elsewhere: taken now, in the request's turn
                    result = await quotas.take(charge.key, charge.bucket, charge.cost)
                    if not result.allowed:
                        opened.state = None
                        self._pass(batch)
                        return Opened(key, denied=(charge.key, result), now=now)
        except BaseException:
            turn = request.turn
            if turn.done() and not turn.cancelled() and turn.exception() is None:
                opened = turn.result()
                if opened.state is not None:  # its turn came: pass it on
                    opened.state = None
                    self._pass(batch)
            raise
        return opened

    def _batch(self, key: str, quotas: QuotaStore) -> _Batch:
        # the quota buckets in the same script when they live in the same Redis
        inline = isinstance(quotas, RedisQuotas) and quotas.link is self.link
        return _Batch(key, os.urandom(TAG // 2).hex(), quotas, inline)

    def _start(self, batch: _Batch) -> None:
        """Queue the batch's open script now: after the previous batch's save, in the
        same write (a request that fails after this leaves no cache behind)."""
        name = self.prefix + batch.key
        batch.keys = [name + ":refused", name + ":lock", name, name + ":labels", name + ":rows"]
        batch.keys.append(name + ":next")
        cached_tag, batch.cached = self._cache.pop(batch.key, ("", None))
        millis = int(self.lock_timeout * 1000)
        live = [r for r in batch.requests if not r.turn.done()]
        batch.args = [batch.token, millis, cached_tag, 0, max(len(live), 1)]
        for i, request in enumerate(batch.requests):
            for charge in request.charges if batch.inline and not request.turn.done() else ():
                batch.keys.append(f"{batch.quotas.prefix}{charge.key}")  # type: ignore[attr-defined]
                batch.args += [charge.bucket.burst, charge.bucket.rate, charge.cost, i]
                batch.charged.append(charge)
        batch.args[3] = len(batch.charged)
        batch.sent = self.link.submit(OPEN, batch.keys, batch.args)

    async def _read(self, batch: _Batch) -> None:
        """Read the open script's answer (trying again while another process holds the
        lock), then give the first request its turn."""
        name = self.prefix + batch.key
        try:
            got = await self.link.run(OPEN, batch.keys, batch.args, batch.sent)
            # the quota buckets that refused, taken by this first try alone
            denied = got[2] if got[0] in (b"same", b"open") else got[1]
            deadline = time.monotonic() + self.lock_timeout
            pause = 0.0005
            while got[0] == b"locked":  # another process serves this principal now
                if time.monotonic() > deadline:
                    raise StateUnavailable(f"detector state of {name!r} stays locked")
                await asyncio.sleep(pause)
                pause = min(pause * 2, _PAUSE)
                got = await self.link.run(OPEN, batch.keys[:6], [*batch.args[:3], 0, 1])
        except BaseException:
            # the script may have taken the lock and only its answer been lost: release
            # it now rather than leave the principal's other requests waiting for it
            # to expire (in the background: Redis may be the problem)
            self._later(self._unlock(name, batch.token))
            raise
        status = got[0]
        if status == b"refused":
            batch.refused = (got[1].decode(), Action(got[2].decode()))
        else:
            for i in range(0, len(denied), 3):
                charge = batch.charged[int(denied[i + 1]) - 1]
                result = QuotaResult(False, float(denied[i + 2]))
                batch.denied[int(denied[i])] = (charge.key, result)
        if status in (b"same", b"open"):
            batch.locked = True
            if status == b"same" and batch.cached is not None:
                self.reads["same"] += 1
                batch.state = batch.cached
            else:
                self.reads["open"] += 1
                batch.state = decode(got[3], got[4], self.window, self.features)
            batch.state.labels = read_labels(got[1], self.window)
        elif batch.cached is not None:  # nothing was saved: the cache is still current
            self._cache[batch.key] = (batch.args[2], batch.cached)
        self._pass(batch)

    def _pass(self, batch: _Batch) -> bool:
        """Give the next request of the batch its turn (True), or end the batch (False:
        its save, or its release, queued now, its outcome read in the background)."""
        if self._next(batch):
            return True
        self._later(self._finish(batch))
        return False

    def _next(self, batch: _Batch) -> bool:
        """Give the next request waiting in the batch its turn; False: none is left."""
        while True:
            batch.at += 1
            if batch.at >= len(batch.requests):
                return False
            request = batch.requests[batch.at]
            if request.turn.done():  # cancelled while it waited
                continue
            opened = self._opened(batch, request)
            request.turn.set_result(opened)
            if opened.state is not None:
                return True

    def _opened(self, batch: _Batch, request: _Request) -> Opened:
        key, now = batch.key, request.now
        if batch.refused is not None:
            return Opened(key, refused=batch.refused, now=now)
        for rule_id, (until, action) in batch.blocked.items():  # earned in this batch
            if until > now:
                return Opened(key, refused=(rule_id, action), now=now)
        denial = batch.denied.get(batch.at)
        if denial is not None or batch.state is None:
            return Opened(key, denied=denial, now=now)
        return Opened(key, state=batch.state, now=now, token=batch.token)

    async def close(self, opened: Opened, refusals: Sequence[Refusal]) -> None:
        if opened.state is None:
            return
        opened.state = None
        batch = self._open[opened.key]
        batch.used = True
        for refusal in refusals:
            batch.refusals.append(refusal)
            batch.blocked[refusal.rule_id] = (opened.now + refusal.seconds, refusal.action)
        await self._done(batch)

    async def abort(self, opened: Opened) -> None:
        """Pass the turn on; what the request changed is saved only if another request
        of its batch closes (as the in-process table keeps it)."""
        if opened.state is None:
            return
        opened.state = None
        with suppress(StateUnavailable):
            await self._done(self._open[opened.key])

    async def _done(self, batch: _Batch) -> None:
        """Pass the turn on, then wait for the batch's save (the last request saves)."""
        if self._next(batch):
            done = asyncio.get_running_loop().create_future()
            batch.waiting.append(done)
            await done
        else:
            await self._finish(batch)

    async def _finish(self, batch: _Batch) -> None:
        """Save the batch (or unlock), start the next one in the same write, and tell
        the batch's waiting requests how the save went."""
        name = self.prefix + batch.key
        release: tuple[str, list[str], list[Any]] = (
            RELEASE, [name + ":lock", name + ":next"], [batch.token]
        )  # fmt: skip
        (script, keys, args), state = release, batch.state
        error: StateUnavailable | None = None
        if batch.used and state is not None:
            try:
                keys, args = self._saved(name, batch, state)
                script = CLOSE
            except (ValueError, TypeError) as e:  # a state that cannot be packed: unlock
                error = StateUnavailable(f"the state of {name!r} could not be saved: {e}")
        if script is CLOSE and state is not None:
            state.pushed.clear()
            # cached before the save is known: the tag says whether it was (a later batch
            # uses this state only if Redis holds this tag)
            self._cache[batch.key] = (batch.token, state)
            while len(self._cache) > self.max_cached:
                self._cache.popitem(last=False)
        sent = self.link.submit(script, keys, args) if batch.locked else None
        self._end(batch)  # the next batch's open leaves in this write
        try:
            if batch.locked:
                saved = await self.link.run(script, keys, args, sent)
                if script is CLOSE and int(saved) != 1:
                    error = StateUnavailable(f"the lock on {name!r} expired before the save")
        except StateUnavailable as e:
            error = error or (e if script is CLOSE else None)  # an unlock: it expires
        except BaseException:
            error = error or StateUnavailable(f"the save of {name!r} was cancelled")
            raise
        finally:
            for done in batch.waiting:
                if done.done():
                    continue
                if error is None:
                    done.set_result(None)
                else:
                    done.set_exception(error)
        if error is not None:
            raise error

    def _saved(
        self, name: str, batch: _Batch, state: PrincipalState
    ) -> tuple[list[str], list[Any]]:
        """The close script's keys and args: the state, the rows added, the refusals."""
        keys = [name + ":lock", name, name + ":labels", name + ":refused", name + ":rows"]
        args: list[Any] = [batch.token, self.ttl, encode(state), self.features * 4]
        pushed = list(dict.fromkeys(state.pushed))  # a slot written twice: its last row
        args.append(len(pushed))
        for slot in pushed:
            args += [slot, state.rows[slot].astype("<f4").tobytes()]
        args.append(len(batch.refusals))
        for refusal in batch.refusals:
            args += [refusal.rule_id, max(refusal.seconds, 0.001), refusal.action.value]
        return keys, args

    def _end(self, batch: _Batch) -> None:
        """The principal leaves ``batch``: open the next batch that has a live request."""
        key = batch.key
        if self._open.get(key) is batch:
            del self._open[key]
        queue = self._queued.get(key)
        while queue:
            following = queue.popleft()
            if all(r.turn.done() for r in following.requests):
                continue  # every request of it was cancelled
            self._open[key] = following
            self._start(following)
            self._later(self._read_queued(following))
            break
        if queue is not None and not queue:
            del self._queued[key]

    async def _read_queued(self, batch: _Batch) -> None:
        try:
            await self._read(batch)
        except BaseException as e:
            error = e if isinstance(e, StateUnavailable) else StateUnavailable(str(e))
            for request in batch.requests:
                if not request.turn.done():
                    request.turn.set_exception(error)
            self._end(batch)
            if not isinstance(e, Exception):
                raise

    async def _unlock(self, name: str, token: str) -> None:
        with suppress(StateUnavailable):  # else it expires (lock_timeout)
            await self.link.run(RELEASE, [name + ":lock", name + ":next"], [token])

    def _later(self, work: Any) -> None:
        """Run ``work`` (a coroutine) in the background, kept until it ends."""
        task: asyncio.Future[None] = asyncio.ensure_future(work)
        self._background.add(task)
        task.add_done_callback(self._settled)

    def _settled(self, task: asyncio.Future[None]) -> None:
        self._background.discard(task)
        if not task.cancelled():
            task.exception()  # a failure is the requests' to report, not asyncio's

    async def aclose(self) -> None:
        """Wait (a second at most) for the saves and unlocks still in flight."""
        if self._background:
            await asyncio.wait(list(self._background), timeout=1.0)

    async def refusals(self, key: str, now: float) -> dict[str, tuple[float, Action]]:
        raw = await self.link.run(REFUSALS, [self.prefix + key + ":refused"], [])
        out = {}
        for i in range(0, len(raw), 3):
            out[raw[i].decode()] = (now + float(raw[i + 1]), Action(raw[i + 2].decode()))
        return out

    async def label(self, key: str, slots: list[int], labels: npt.NDArray[np.int64]) -> None:
        command: list[Any] = ["BITFIELD", self.prefix + key + ":labels"]
        batch = self._open.get(key)
        state = batch.state if batch is not None else None  # a batch still open sees it too
        for slot, value in zip(slots, labels, strict=False):
            if 0 <= slot < self.window:
                command += ["SET", "i32", f"#{slot}", int(value) + 1]
                if state is not None:
                    state.label(slot, int(value))
        if len(command) > 2:
            await self.link.command(*command)
