"""The reverse-proxy form: a plain ASGI app in front, a keep-alive pool to the upstream model.

Every request goes through :class:`Pipeline`; admitted requests are forwarded
with the request id and without the caller's credentials, their body replaced
by the pipeline's canonical form of the rows it checked; the answer is
hardened and returned with the request id. ``/metrics`` serves Prometheus
metrics; ``/healthz`` says the gateway is up. Any other path that no model
claims is refused (404), and so is a path with dot segments, backslashes or
control characters (what the gateway routes on is exactly what it forwards).

The app is raw ASGI rather than a Starlette app: on a proxied request the
framework's middleware stack, request and response objects cost more than the
rules themselves. The upstream client is :mod:`.upstream`'s pool (httpx when
``httptools`` is missing or an httpx ``transport`` is given).
"""

from __future__ import annotations

import re
from collections.abc import Awaitable, Callable, MutableMapping
from typing import Any
from urllib.parse import quote

import httpx

from donjon.errors import GatewayError
from donjon.gateway.metrics import CONTENT_TYPE_LATEST
from donjon.gateway.pipeline import GatewayRequest, Pipeline
from donjon.gateway.replies import Reply, encode, request_id_of
from donjon.gateway.upstream import (
    Upstream,
    UpstreamTimeout,
    UpstreamUnavailable,
    make_upstream,
)

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]

DROP_HEADERS = frozenset(
    {
        b"authorization",
        b"x-api-key",
        b"host",
        b"content-length",
        b"connection",
        b"keep-alive",
        b"transfer-encoding",
        b"te",
        b"trailer",
        b"upgrade",
        b"proxy-authorization",
        b"cookie",
        b"x-request-id",
        b"expect",
        # the gateway forwards its own canonical JSON body, never the caller's encoding
        b"content-type",
        b"content-encoding",
        b"inference-header-content-length",
    }
)
METHODS = frozenset({"GET", "POST", "PUT", "PATCH", "DELETE"})
_SAFE_PATH = "/:@!$&'()*+,;=-._~"
_PLAIN_PATH = re.compile(r"[A-Za-z0-9/_.~-]*")  # needs no percent-encoding
_BAD_PATH_CHARS = re.compile(r"[\x00-\x1f\x7f\\]")  # control characters, backslashes
_JSON = b"application/json"


class _Disconnected(Exception):
    """The caller went away before its body was read."""


def _bad_path(path: str) -> bool:
    if _BAD_PATH_CHARS.search(path):
        return True
    return "." in path and any(part in (".", "..") for part in path.split("/"))


def _bad_bytes(value: bytes) -> bool:
    return b"\r" in value or b"\n" in value or b"\x00" in value


class Proxy:
    """The ASGI reverse proxy (build it with :func:`create_proxy`)."""

    def __init__(
        self,
        pipeline: Pipeline,
        upstream: str,
        *,
        timeout: float = 30.0,
        metrics_path: str | None = "/metrics",
        transport: httpx.AsyncBaseTransport | None = None,
        client: str = "auto",
    ) -> None:
        self.pipeline = pipeline
        self.upstream_url = upstream.rstrip("/")
        self.timeout = timeout
        self.metrics_path = metrics_path
        self._transport = transport
        self._client_kind = client
        self._upstream: Upstream | None = None

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        kind = scope["type"]
        if kind == "http":
            await self._http(scope, receive, send)
        elif kind == "lifespan":
            await self._lifespan(receive, send)
        # websockets are not proxied: returning without accepting closes them

    # -- lifespan ----------------------------------------------------------------

    async def _lifespan(self, receive: Receive, send: Send) -> None:
        while True:
            message = await receive()
            if message["type"] == "lifespan.startup":
                try:
                    await self.start()
                except GatewayError as e:
                    await send({"type": "lifespan.startup.failed", "message": str(e)})
                    return
                await send({"type": "lifespan.startup.complete"})
            elif message["type"] == "lifespan.shutdown":
                await self.stop()
                await send({"type": "lifespan.shutdown.complete"})
                return

    async def start(self) -> None:
        if self._upstream is None:
            self._upstream = make_upstream(
                self.upstream_url,
                timeout=self.timeout,
                transport=self._transport,
                client=self._client_kind,
            )

    async def stop(self) -> None:
        upstream, self._upstream = self._upstream, None
        if upstream is not None:
            await upstream.aclose()
        await self.pipeline.aclose()

    # -- requests -------------------------------------------------------------------

    async def _http(self, scope: Scope, receive: Receive, send: Send) -> None:
        path: str = scope["path"]
        method: str = scope["method"]
        if path == "/healthz" or path == self.metrics_path:
            if method not in ("GET", "HEAD"):  # uvicorn sends no body for HEAD
                await _send(send, 405, b'{"error":{"code":"method_not_allowed"}}', _JSON)
            elif path == "/healthz":
                await _send(send, 200, b'{"status":"ok"}', _JSON)
            else:
                body = self.pipeline.metrics.render()
                await _send(send, 200, body, CONTENT_TYPE_LATEST.encode())
            return
        raw_headers: list[tuple[bytes, bytes]] = scope["headers"]
        headers = {k.decode("latin-1"): v.decode("latin-1") for k, v in raw_headers}
        if method not in METHODS:
            message = f"{method} is not proxied"
            await _reply(send, Reply(405, "method_not_allowed", message, request_id_of(headers)))
            return
        if _bad_path(path):
            message = "no model is served at this path"
            await _reply(send, Reply(404, "not_found", message, request_id_of(headers)))
            return
        pipeline = self.pipeline
        guard = pipeline.route(path)
        body = b""
        if guard is not None:
            limit = guard.contract.max_body_bytes
            try:
                read = await _read_body(receive, headers, limit)
            except _Disconnected:
                return  # the caller left: nobody to answer
            if read is None:
                message = f"body exceeds {limit} bytes"
                await _reply(send, Reply(413, "invalid_request", message, request_id_of(headers)))
                return
            body = read
        client = scope.get("client")
        request = GatewayRequest(method, path, headers, body, client[0] if client else None)
        admitted = await pipeline.admit_async(request)
        if isinstance(admitted, Reply):
            await _reply(send, admitted)
            return
        forward = [(k, v) for k, v in raw_headers if k not in DROP_HEADERS]
        if any(_bad_bytes(k) or _bad_bytes(v) for k, v in forward):
            reply = Reply(400, "invalid_request", "malformed header", admitted.request_id)
            await _reply(send, reply)
            return
        forward.append((b"content-type", _JSON))
        forward.append((b"x-request-id", admitted.request_id.encode("ascii")))
        plain = _PLAIN_PATH.fullmatch(path)
        target = (path if plain else quote(path, safe=_SAFE_PATH)).encode("ascii")
        query: bytes = scope.get("query_string", b"")
        if query:
            if any(c <= 0x20 or c >= 0x7F for c in query):
                reply = Reply(400, "invalid_request", "malformed query", admitted.request_id)
                await _reply(send, reply)
                return
            target += b"?" + query
        if self._upstream is None:
            await self.start()  # served without a lifespan (some test clients)
        assert self._upstream is not None  # noqa: S101 - set just above
        try:
            answer = await self._upstream.request(method, target, forward, admitted.body)
        except UpstreamUnavailable as e:
            status = 504 if isinstance(e, UpstreamTimeout) else 502
            reply = Reply(
                status, "upstream_unavailable", "the model did not answer", admitted.request_id
            )
            admitted.metrics.requests("error", status).inc()
            await _reply(send, reply)
            return
        status, content = await pipeline.complete_async(admitted, answer.status, answer.body)
        content_type = answer.content_type if status < 400 and answer.content_type else _JSON
        await _send(send, status, content, content_type, admitted.request_id)


def create_proxy(
    pipeline: Pipeline,
    upstream: str,
    *,
    timeout: float = 30.0,
    metrics_path: str | None = "/metrics",
    transport: httpx.AsyncBaseTransport | None = None,
    client: str = "auto",
) -> Proxy:
    """The reverse proxy as an ASGI app (serve it with uvicorn, lifespan on)."""
    return Proxy(
        pipeline,
        upstream,
        timeout=timeout,
        metrics_path=metrics_path,
        transport=transport,
        client=client,
    )


async def _read_body(receive: Receive, headers: dict[str, str], limit: int) -> bytes | None:
    """The body, or None when it is larger than ``limit`` bytes (read no further)."""
    declared = headers.get("content-length")
    if declared is not None and declared.isdigit() and int(declared) > limit:
        return None
    chunks: list[bytes] = []
    size = 0
    while True:
        message = await receive()
        if message["type"] == "http.disconnect":
            raise _Disconnected
        chunk: bytes = message.get("body", b"")
        size += len(chunk)
        if size > limit:
            return None
        chunks.append(chunk)
        if not message.get("more_body", False):
            return chunks[0] if len(chunks) == 1 else b"".join(chunks)


async def _reply(send: Send, reply: Reply) -> None:
    extra = [(k.encode("latin-1"), v.encode("latin-1")) for k, v in reply.headers.items()]
    await _send(send, reply.status, encode(reply.body()), _JSON, reply.request_id, extra)


async def _send(
    send: Send,
    status: int,
    content: bytes,
    content_type: bytes,
    request_id: str | None = None,
    extra: list[tuple[bytes, bytes]] | None = None,
) -> None:
    headers = [
        (b"content-type", content_type),
        (b"content-length", str(len(content)).encode()),
    ]
    if request_id:
        headers.append((b"x-request-id", request_id.encode("ascii")))
    if extra:
        headers += extra
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": content})
