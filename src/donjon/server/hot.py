"""The vault's hot routes, served without FastAPI's per-request machinery.

``routes.py`` declares every route to FastAPI, which builds the OpenAPI document from
the declarations, and Starlette's router matches requests to them as before. For the
routes under load (push, list versions, read a version, pull, promote) the declared
endpoint is then replaced by a lean ASGI handler (``route.app``): the event loop reads
the headers and a small body, and ONE worker-thread call does all of the request's
blocking work (authentication, the registry's call, the journal of its events,
:func:`donjon.server.routes.recorded`). FastAPI would solve a dependency graph per
request and hop to worker threads twice (the principal, then the endpoint); that was
most of the server's CPU per request (docs/deployment.md, ``benchmarks/vault_cost.py``).

The answers, status codes and their order are the declared ones: 401 before 400 for a
bad version number, 422 (the ``invalid_request`` shape) for a malformed header or
body; errors are raised as before and turned into answers by the app's handlers.
A push's body of at most ``INLINE_BYTES`` (with a Content-Length) is read on the event
loop, after the caller is authenticated, and stored in one more thread call; larger or
chunked bodies stream to the blob store as before. Pulls of at most ``INLINE_BYTES`` are
read and verified whole before the first byte leaves; larger ones stream.
"""

from __future__ import annotations

import asyncio
import contextvars
import io
import json
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import Any, TypeVar

import anyio
import orjson
from fastapi import FastAPI
from fastapi.exceptions import RequestValidationError
from fastapi.responses import StreamingResponse
from fastapi.routing import APIRoute
from pydantic import ValidationError
from starlette.types import ASGIApp, Receive, Scope, Send

from donjon.errors import InputError
from donjon.registry import Kind, Registry, Stage, check_version
from donjon.server.callers import Callers, Presented
from donjon.server.routes import (
    DOWNLOAD_HEADERS,
    MAX_HEADER_JSON,
    attachment_disposition,
    parse_digest,
    parse_lineage,
    parse_metadata,
    recorded,
)
from donjon.server.schemas import PromoteIn
from donjon.server.streams import RequestReader, iterate

INLINE_BYTES = 1 << 20  # bodies and blobs up to this size are handled whole
WORKER_THREADS = 40  # as many as anyio's default limiter: requests blocked on the database
HEADER_LIMITS = {  # the push's headers and their declared maximum lengths
    "x-donjon-digest": 200,
    "x-donjon-metadata": MAX_HEADER_JSON,
    "x-donjon-lineage": 4096,
    "content-type": 200,
    "x-donjon-filename": 255,
}
Result = TypeVar("Result")


class HotRoutes:
    """The lean handlers, bound to one app's registry and callers."""

    def __init__(self, registry: Registry, callers: Callers, upload_idle_seconds: float) -> None:
        self.registry = registry
        self.callers = callers
        self.upload_idle_seconds = upload_idle_seconds
        self._pool = ThreadPoolExecutor(WORKER_THREADS, thread_name_prefix="donjon-vault")

    def close(self) -> None:
        self._pool.shutdown(wait=True)

    async def run(self, work: Callable[[], Result], *, journal: bool = True) -> Result:
        """``work`` in a worker thread, in a copy of this context (the request's deferred
        events), journalling what it published before it returns unless ``journal`` is
        False (a push's authentication: its event goes with the version row)."""
        context = contextvars.copy_context()
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(
            self._pool, context.run, recorded(work) if journal else work
        )

    # -- handlers (ASGI apps taking Starlette's matched scope) --------------------------

    def list_versions(self, kind: Kind) -> ASGIApp:
        async def handle(scope: Scope, receive: Receive, send: Send) -> None:
            presented, name = Presented.of(scope), scope["path_params"]["name"]

            def work() -> list[dict[str, Any]]:
                principal = self.callers.principal(presented)
                return [v.to_dict() for v in self.registry.versions(principal, kind, name)]

            await send_json(send, 200, {"versions": await self.run(work)})

        return handle

    def get_version(self, kind: Kind) -> ASGIApp:
        async def handle(scope: Scope, receive: Receive, send: Send) -> None:
            presented, params = Presented.of(scope), scope["path_params"]

            def work() -> dict[str, Any]:
                principal = self.callers.principal(presented)
                number = check_version(params["number"])
                return self.registry.get(principal, kind, params["name"], number).to_dict()

            await send_json(send, 200, await self.run(work))

        return handle

    def pull(self, kind: Kind) -> ASGIApp:
        async def handle(scope: Scope, receive: Receive, send: Send) -> None:
            presented, params = Presented.of(scope), scope["path_params"]
            name = params["name"]

            def work() -> tuple[Any, bytes | None, Any]:
                principal = self.callers.principal(presented)
                number = check_version(params["number"])
                version, stream = self.registry.open(principal, kind, name, number)
                if version.size > INLINE_BYTES:
                    return version, None, stream
                with stream:  # read to the end: a blob that changed raises here, not later
                    return version, stream.read(), None

            version, data, stream = await self.run(work)
            headers = {
                "Content-Length": str(version.size),
                "X-Donjon-Digest": str(version.digest),
                "ETag": f'"{version.digest}"',
                "Content-Disposition": attachment_disposition(name, version.number),
                **DOWNLOAD_HEADERS,
            }
            if data is None:
                streamed = StreamingResponse(
                    iterate(stream), media_type="application/octet-stream", headers=headers
                )
                await streamed(scope, receive, send)
                return
            headers["Content-Type"] = "application/octet-stream"
            await send_body(send, 200, data, headers)

        return handle

    def push(self, kind: Kind) -> ASGIApp:
        async def handle(scope: Scope, receive: Receive, send: Send) -> None:
            presented, name = Presented.of(scope), scope["path_params"]["name"]
            principal = await self.run(lambda: self.callers.principal(presented), journal=False)
            headers = _push_headers(scope)
            expected = parse_digest(headers.get("x-donjon-digest"))
            metadata = parse_metadata(headers.get("x-donjon-metadata"))
            lineage = parse_lineage(headers.get("x-donjon-lineage"))
            content_type = headers.get("content-type") or "application/octet-stream"
            media_type = content_type.split(";")[0].strip() or "application/octet-stream"

            def store(stream: io.RawIOBase | io.BytesIO) -> dict[str, Any]:
                version = self.registry.push(
                    principal,
                    kind,
                    name,
                    stream,  # type: ignore[arg-type]
                    expected=expected,
                    media_type=media_type,
                    metadata=metadata,
                    lineage=lineage,
                    filename=headers.get("x-donjon-filename"),
                )
                return version.to_dict()

            length = headers.get("content-length", "")
            if length.isdigit() and int(length) <= INLINE_BYTES:
                body = await self._read_body(receive)
                stored = await self.run(lambda: store(io.BytesIO(body)))
            else:
                stored = await self._push_streamed(receive, store)
            await send_json(send, 201, stored)

        return handle

    def promote(self) -> ASGIApp:
        async def handle(scope: Scope, receive: Receive, send: Send) -> None:
            presented, params = Presented.of(scope), scope["path_params"]
            content_type = _header(scope, b"content-type")
            body = await self._read_body(receive)

            def work() -> dict[str, Any]:
                principal = self.callers.principal(presented)
                number = check_version(params["number"])
                stage = Stage(_promote_body(body, content_type).stage)
                return self.registry.promote(principal, params["name"], number, stage).to_dict()

            await send_json(send, 200, await self.run(work))

        return handle

    # -- bodies ---------------------------------------------------------------------------

    async def _read_body(self, receive: Receive) -> bytes:
        """A small body, whole; a client silent for the upload idle time fails it."""
        parts: list[bytes] = []
        while True:
            try:
                with anyio.fail_after(self.upload_idle_seconds):
                    message = await receive()
            except TimeoutError:
                raise InputError(
                    f"the upload stalled for {self.upload_idle_seconds:g} s; nothing was stored"
                ) from None
            if message["type"] == "http.disconnect":
                raise InputError("the client went away during the upload")
            parts.append(message.get("body", b""))
            if not message.get("more_body", False):
                return b"".join(parts)

    async def _push_streamed(
        self, receive: Receive, store: Callable[[RequestReader], dict[str, Any]]
    ) -> dict[str, Any]:
        """A large or chunked body, streamed to the blob store from a worker thread while
        the event loop receives it (bounded buffer, backpressure)."""

        async def chunks() -> Any:
            while True:
                message = await receive()
                if message["type"] == "http.disconnect":
                    from starlette.requests import ClientDisconnect

                    raise ClientDisconnect()
                yield message.get("body", b"")
                if not message.get("more_body", False):
                    return

        reader = RequestReader(chunks().__aiter__(), self.upload_idle_seconds)
        failure: BaseException | None = None
        stored: dict[str, Any] = {}
        try:
            async with anyio.create_task_group() as tasks:
                tasks.start_soon(reader.pump)
                try:
                    stored = await anyio.to_thread.run_sync(recorded(lambda: store(reader)))
                except Exception as e:  # noqa: BLE001 - re-raised below, outside the task group
                    failure = e
                finally:
                    tasks.cancel_scope.cancel()  # stop the pump: done, or the push failed early
        finally:
            reader.close()
        if failure is not None:
            raise failure
        return stored


def serve_hot_routes(app: FastAPI, hot: HotRoutes) -> None:
    """Replace the declared endpoints of the hot operations by the lean handlers."""
    handlers: dict[str, ASGIApp] = {"promote_model_version": hot.promote()}
    for kind in Kind:
        handlers[f"list_{kind.value}_versions"] = hot.list_versions(kind)
        handlers[f"get_{kind.value}_version"] = hot.get_version(kind)
        handlers[f"pull_{kind.value}"] = hot.pull(kind)
        handlers[f"push_{kind.value}"] = hot.push(kind)
    for route in app.router.routes:
        if isinstance(route, APIRoute) and route.operation_id in handlers:
            route.app = handlers.pop(route.operation_id)
    if handlers:  # a renamed operation would silently fall back to a declaration
        raise RuntimeError(f"hot routes not declared: {sorted(handlers)}")


# -- answers ------------------------------------------------------------------------------


async def send_json(send: Send, status: int, body: Any) -> None:
    try:
        data = orjson.dumps(body)
    except TypeError:  # an integer beyond 64 bits in metadata: the standard library's JSON
        data = json.dumps(body, separators=(",", ":"), allow_nan=False).encode()
    await send_body(send, status, data, {"Content-Type": "application/json"})


async def send_body(send: Send, status: int, body: bytes, headers: dict[str, str]) -> None:
    raw = [(k.lower().encode("latin-1"), v.encode("latin-1")) for k, v in headers.items()]
    if "Content-Length" not in headers:
        raw.append((b"content-length", str(len(body)).encode("ascii")))
    await send({"type": "http.response.start", "status": status, "headers": raw})
    await send({"type": "http.response.body", "body": body})


# -- request parts ------------------------------------------------------------------------


def _header(scope: Scope, name: bytes) -> str | None:
    for key, value in scope["headers"]:
        if key == name:
            return str(value.decode("latin-1"))
    return None


def _push_headers(scope: Scope) -> dict[str, str]:
    """The push's headers (the first of each), checked against their declared lengths."""
    found: dict[str, str] = {}
    for key, value in scope["headers"]:
        name = key.decode("latin-1")
        if (name in HEADER_LIMITS or name == "content-length") and name not in found:
            found[name] = value.decode("latin-1")
    errors = [
        {
            "loc": ("header", name),
            "msg": f"String should have at most {limit} characters",
            "type": "string_too_long",
        }
        for name, limit in HEADER_LIMITS.items()
        if len(found.get(name, "")) > limit
    ]
    if errors:
        raise RequestValidationError(errors)
    return found


def _promote_body(body: bytes, content_type: str | None) -> PromoteIn:
    """The promotion's JSON body, as FastAPI would validate it (422 otherwise)."""
    if not body:
        raise RequestValidationError([_body_error("Field required", "missing")])
    if content_type and not _is_json(content_type):
        raise RequestValidationError(
            [_body_error("Input should be a valid dictionary", "model_attributes_type")]
        )
    try:
        return PromoteIn.model_validate_json(body)
    except ValidationError as e:
        raise RequestValidationError(_body_errors(e.errors())) from None


def _is_json(content_type: str) -> bool:
    media = content_type.split(";")[0].strip().lower()
    return media.startswith("application/") and (
        media == "application/json" or media.endswith("+json")
    )


def _body_error(msg: str, kind: str) -> dict[str, Any]:
    return {"loc": ("body",), "msg": msg, "type": kind}


def _body_errors(errors: Sequence[Any]) -> list[dict[str, Any]]:
    return [
        {"loc": ("body", *e.get("loc", ())), "msg": e.get("msg", ""), "type": e.get("type", "")}
        for e in errors
    ]
