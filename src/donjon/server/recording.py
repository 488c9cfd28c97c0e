"""Every event of a request journalled in one transaction, before the request is answered.

:class:`RecordBeforeAnswer` opens the bus's deferring scope
(:meth:`donjon.core.bus.EventBus.deferring`) around each HTTP request: the
authentication, the decisions, a scan's findings and the action's own event
are held, and a write journals them in its own transaction (the registry's
stores do). What is still held when the response starts is journalled then, in
one transaction that concurrent requests share (group commit), and only then
does the first byte of the answer leave. If that fails the client gets 503
instead of the answer: nothing is acknowledged before it is stored.

One journal transaction per request instead of one per event is most of what
the vault gains under load (docs/deployment.md, benchmarks/vault_scale.py).
"""

from __future__ import annotations

import json
import logging

import anyio.to_thread
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from donjon.core.bus import Deferred, EventBus

log = logging.getLogger(__name__)

_UNRECORDED = json.dumps(
    {"error": "unavailable", "detail": "the server could not record the request"}
).encode()


class Unrecorded(Exception):
    """The request's events could not be journalled: its answer was replaced by a 503."""


class RecordBeforeAnswer:
    """ASGI middleware: hold a request's events, journal them before its response starts."""

    def __init__(self, app: ASGIApp, bus: EventBus) -> None:
        self.app = app
        self.bus = bus

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        with self.bus.deferring() as held:

            async def send_recorded(message: Message) -> None:
                if message["type"] == "http.response.start" and held.open:
                    try:
                        await _commit(held)
                    except Exception as e:
                        log.error("the request's events were not recorded: %s", e)
                        await _refuse(send)
                        raise Unrecorded from e
                await send(message)

            try:
                await self.app(scope, receive, send_recorded)
            except Exception as e:
                if not _is_unrecorded(e):
                    raise
            finally:
                if held.open:  # the app failed before it answered: keep what it did
                    try:
                        await _commit(held)
                    except Exception:
                        log.exception("the events of a failed request were not recorded")


async def _commit(held: Deferred) -> None:
    if held.pending():
        await anyio.to_thread.run_sync(held.commit)
    else:
        held.commit()  # nothing held: close the scope without a thread hop


async def _refuse(send: Send) -> None:
    length = str(len(_UNRECORDED)).encode()
    headers = [(b"content-type", b"application/json"), (b"content-length", length)]
    await send({"type": "http.response.start", "status": 503, "headers": headers})
    await send({"type": "http.response.body", "body": _UNRECORDED})


def _is_unrecorded(error: BaseException) -> bool:
    if isinstance(error, Unrecorded):
        return True
    if isinstance(error, BaseExceptionGroup):
        rest = error.subgroup(lambda e: not isinstance(e, (Unrecorded, BaseExceptionGroup)))
        return rest is None
    return False
