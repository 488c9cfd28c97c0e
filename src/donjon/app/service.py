"""Long-running services: the outbox relay runs for as long as the ASGI app is served.

``uvicorn.run(with_delivery(asgi_app, donjon))`` starts the relay at the ASGI
lifespan's startup and stops it (delivering what is left, then giving the relay
lease up) at its shutdown, which uvicorn runs on SIGINT and SIGTERM before the
process exits, so a stopped service leaves nothing undelivered that it could send.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, MutableMapping
from typing import Any

from donjon.app.wiring import Donjon

Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
Asgi = Callable[[MutableMapping[str, Any], Receive, Send], Awaitable[None]]


def with_delivery(app: Asgi, donjon: Donjon) -> Asgi:
    """``app`` with the outbox relay of ``donjon`` bound to its lifespan."""
    dispatcher = donjon.dispatcher
    if dispatcher is None:
        return app
    drain = donjon.settings.soc.drain_on_close

    async def serve(scope: MutableMapping[str, Any], receive: Receive, send: Send) -> None:
        if scope["type"] != "lifespan":
            await app(scope, receive, send)
            return

        async def lifespan_receive() -> Message:
            message = await receive()
            if message["type"] == "lifespan.startup":
                dispatcher.start()
            elif message["type"] == "lifespan.shutdown":
                from anyio import to_thread

                await to_thread.run_sync(dispatcher.stop, drain)
            return message

        await app(scope, lifespan_receive, send)

    return serve
