"""The reverse-proxy form: Starlette in front, httpx (keep-alive) to the upstream model.

Every request goes through :class:`Pipeline`; admitted requests are forwarded
with the request id and without the caller's credentials; the answer is
hardened and returned with the request id. ``/metrics`` serves Prometheus
metrics; ``/healthz`` says the gateway is up. Any other path that no model
claims is refused (404).
"""

from __future__ import annotations

import socket
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import httpx
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from donjon.gateway.metrics import CONTENT_TYPE_LATEST
from donjon.gateway.pipeline import GatewayRequest, Pipeline
from donjon.gateway.replies import Reply, encode, request_id_of

DROP_HEADERS = frozenset(
    {
        "authorization",
        "x-api-key",
        "host",
        "content-length",
        "connection",
        "keep-alive",
        "transfer-encoding",
        "te",
        "trailer",
        "upgrade",
        "proxy-authorization",
        "cookie",
    }
)
METHODS = ["GET", "POST", "PUT", "PATCH", "DELETE"]


def reply_response(reply: Reply) -> Response:
    headers = {**reply.headers, "x-request-id": reply.request_id}
    return Response(encode(reply.body()), reply.status, headers, "application/json")


async def read_body(request: Request, limit: int) -> bytes | None:
    """The body, or None when it is larger than ``limit`` bytes (read no further)."""
    declared = request.headers.get("content-length")
    if declared is not None and declared.isdigit() and int(declared) > limit:
        return None
    chunks: list[bytes] = []
    size = 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > limit:
            return None
        chunks.append(chunk)
    return b"".join(chunks)


def _transport(limits: httpx.Limits) -> httpx.AsyncBaseTransport:
    """aiohttp under the httpx API when installed (httpx's own pool slows down sharply
    with many concurrent requests, encode/httpx#3215), else httpx's, Nagle off."""
    try:
        from httpx_aiohttp import AiohttpTransport
    except ImportError:
        nodelay = [(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)]
        return httpx.AsyncHTTPTransport(limits=limits, socket_options=nodelay)
    transport: httpx.AsyncBaseTransport = AiohttpTransport(limits=limits, trust_env=False)
    return transport


def create_proxy(
    pipeline: Pipeline,
    upstream: str,
    *,
    timeout: float = 30.0,
    metrics_path: str | None = "/metrics",
    transport: httpx.AsyncBaseTransport | None = None,
) -> Starlette:
    base = upstream.rstrip("/")
    limits = httpx.Limits(max_connections=256, max_keepalive_connections=128)
    state: dict[str, httpx.AsyncClient] = {}

    @asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        upstream_transport = transport or _transport(limits)
        state["client"] = httpx.AsyncClient(
            base_url=base, timeout=timeout, limits=limits, transport=upstream_transport
        )
        try:
            yield
        finally:
            await state["client"].aclose()

    async def metrics(request: Request) -> Response:
        return Response(pipeline.metrics.render(), media_type=CONTENT_TYPE_LATEST)

    async def healthz(request: Request) -> Response:
        return Response(b'{"status":"ok"}', media_type="application/json")

    async def proxy(request: Request) -> Response:
        path = request.url.path
        guard = pipeline.route(path)
        limit = guard.contract.max_body_bytes if guard else 0
        headers = {k.lower(): v for k, v in request.headers.items()}
        body = await read_body(request, limit) if guard else b""
        if body is None:
            reply = Reply(
                413, "invalid_request", f"body exceeds {limit} bytes", request_id_of(headers)
            )
            return reply_response(reply)
        client = request.client.host if request.client else None
        admitted = pipeline.admit(GatewayRequest(request.method, path, headers, body, client))
        if isinstance(admitted, Reply):
            return reply_response(admitted)
        forward = {k: v for k, v in headers.items() if k not in DROP_HEADERS}
        forward["x-request-id"] = admitted.request_id
        url = path + (f"?{request.url.query}" if request.url.query else "")
        try:
            upstream_response = await state["client"].request(
                request.method, url, content=body, headers=forward
            )
        except httpx.HTTPError as e:
            status = 504 if isinstance(e, httpx.ReadTimeout) else 502  # 502: no connection
            reply = Reply(
                status, "upstream_unavailable", "the model did not answer", admitted.request_id
            )
            pipeline.metrics.requests.labels(admitted.guard.name, "error", str(status)).inc()
            return reply_response(reply)
        status, content = pipeline.complete(
            admitted, upstream_response.status_code, upstream_response.content
        )
        return Response(
            content,
            status,
            {"x-request-id": admitted.request_id},
            upstream_response.headers.get("content-type", "application/json")
            if status < 400
            else "application/json",
        )

    routes = [Route("/healthz", healthz, methods=["GET"])]
    if metrics_path:
        routes.append(Route(metrics_path, metrics, methods=["GET"]))
    routes.append(Route("/{path:path}", proxy, methods=METHODS))
    return Starlette(routes=routes, lifespan=lifespan)
