"""The floor: a bare ASGI app under uvicorn (uvloop, httptools) answering a small JSON
body, for ``vault_cost.py --floor``: what the HTTP stack alone costs per request here."""

from __future__ import annotations

from typing import Any

BODY = b'{"versions":[]}'


async def app(scope: dict[str, Any], receive: Any, send: Any) -> None:
    if scope["type"] != "http":
        return
    headers = [(b"content-type", b"application/json"), (b"content-length", b"%d" % len(BODY))]
    await send({"type": "http.response.start", "status": 200, "headers": headers})
    await send({"type": "http.response.body", "body": BODY})
