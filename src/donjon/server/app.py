"""The vault's HTTP API: a FastAPI app built from wired services.

Every route but ``GET /health`` (liveness) and ``GET /readyz`` (readiness)
needs a bearer token (exactly one ``Authorization: Bearer <token>`` header),
which the :class:`~donjon.core.ports.Authenticator` turns into a principal; the
registry then authorises each call. A refused credential gets 401 "invalid
credentials" (the reason goes to the ledger only); failures are limited and
aggregated per source address (:mod:`donjon.server.auth_failures`). Errors are
JSON ``{"error": code, "detail": ...}`` with a 4xx status that says what went
wrong; uploads and downloads stream. Each response carries an ``X-Request-Id``.
A request's events are journalled together before its answer starts
(:mod:`donjon.server.recording`).
"""

import logging
import uuid
from collections.abc import AsyncIterator, Callable, Mapping, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import Annotated, Any

import anyio
import anyio.to_thread
from fastapi import Depends, FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.routing import Match
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from donjon import __version__
from donjon.config import VaultSettings
from donjon.core.bus import EventBus
from donjon.core.identity import Principal
from donjon.core.ports import Authenticator
from donjon.errors import (
    AccessDenied,
    AuthenticationError,
    Conflict,
    DonjonError,
    InputError,
    NotFound,
)
from donjon.registry import GateFailed, Gone, Registry, TooLarge
from donjon.server import routes
from donjon.server.attachments import add_attachment_routes
from donjon.server.auth_failures import FailedAuthLimiter, SharedFailures
from donjon.server.callers import Callers, Presented, TooManyFailures
from donjon.server.hot import HotRoutes, serve_hot_routes
from donjon.server.recording import RecordBeforeAnswer
from donjon.server.schemas import HealthOut, ReadyOut, WhoAmIOut

log = logging.getLogger(__name__)

MAX_JSON_BYTES = 1 << 20
SOURCE = "server"


_STATUS: list[tuple[type[DonjonError], int, str]] = [
    (TooManyFailures, 429, "too_many_requests"),
    (AuthenticationError, 401, "unauthenticated"),
    (AccessDenied, 403, "forbidden"),
    (TooLarge, 413, "too_large"),
    (Gone, 410, "gone"),
    (NotFound, 404, "not_found"),
    (GateFailed, 409, "gate_failed"),
    (Conflict, 409, "conflict"),
    (InputError, 400, "bad_request"),
]


@dataclass(frozen=True)
class ServerLimits:
    max_upload_bytes: int = 10 << 30
    max_json_bytes: int = MAX_JSON_BYTES
    upload_idle_seconds: float = 60.0  # a stalled upload is dropped (and its thread freed)
    max_attestation_bytes: int = 16 << 20  # a signature bundle or provenance document
    auth_failure_limit: int = 20  # failures per source and window before 429 (0: none)
    auth_failure_window: float = 60.0  # seconds; 0 ledgers each failure on its own

    @classmethod
    def from_settings(cls, vault: VaultSettings) -> "ServerLimits":
        return cls(
            max_upload_bytes=vault.max_upload_bytes,
            auth_failure_limit=vault.auth_failure_limit,
            auth_failure_window=vault.auth_failure_window,
        )


def create_app(
    registry: Registry,
    authenticator: Authenticator,
    bus: EventBus,
    *,
    limits: ServerLimits | None = None,
    readiness: Mapping[str, Callable[[], object]] | None = None,
    on_startup: Sequence[Callable[[], None]] = (),
    on_shutdown: Sequence[Callable[[], None]] = (),
    shared_failures: SharedFailures | None = None,
) -> FastAPI:
    """The FastAPI app of the vault; serve it with uvicorn.

    ``readiness``: named checks ``GET /readyz`` runs (each raises when its
    dependency is unavailable). ``on_startup``: run before the first request (start
    the outbox relay). ``on_shutdown``: run in order once the server has
    stopped taking requests and the in-flight ones have finished (close the
    services, drain the outbox). ``shared_failures``: where every worker and replica
    counts failed authentications (the database), so the limit is theirs together.
    """
    limits = limits or ServerLimits()
    checks = dict(readiness or {})
    starters, closers = tuple(on_startup), tuple(on_shutdown)
    failures = FailedAuthLimiter(
        bus.publish,
        limit=limits.auth_failure_limit,
        window_seconds=limits.auth_failure_window,
        shared=shared_failures,
    )

    @asynccontextmanager
    async def lifespan(_: FastAPI) -> AsyncIterator[None]:
        for start in starters:
            start()
        async with anyio.create_task_group() as tasks:
            tasks.start_soon(_sweep_every_second, failures)
            try:
                yield
            finally:
                tasks.cancel_scope.cancel()
        await anyio.to_thread.run_sync(failures.flush)  # before the closers drain the outbox
        await anyio.to_thread.run_sync(hot.close)
        for close in closers:
            try:
                close()
            except Exception:  # one failed close must not skip the others
                log.exception("closing %r failed on shutdown", close)

    app = FastAPI(
        lifespan=lifespan,
        title="Donjon vault",
        version=__version__,
        description="Zero-trust registry of datasets and models. Every route but /health "
        "and /readyz needs a bearer token; every call is authorised and recorded.",
        openapi_url=None,  # published at /v1/openapi.json, behind authentication
        docs_url=None,
        redoc_url=None,
    )
    bearer = HTTPBearer(auto_error=False, description="A Donjon API token or an OIDC JWT.")

    callers = Callers(authenticator, failures)
    hot = HotRoutes(registry, callers, limits.upload_idle_seconds)

    def current_principal(
        request: Request,
        credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(bearer)],
    ) -> Principal:
        # ``credentials`` puts the bearer scheme in the OpenAPI schema; Presented reads
        # the same header (and the client certificate) itself.
        return callers.principal(Presented.of(request.scope))

    app.state.registry = registry
    app.state.current_principal = current_principal
    app.state.callers = callers
    app.state.limits = limits
    app.state.auth_failures = failures

    @app.get("/health", response_model=HealthOut, tags=["meta"], operation_id="health")
    def health() -> dict[str, str]:
        """Liveness: the only route that needs no token."""
        return {"status": "ok"}

    @app.get(
        "/readyz",
        response_model=ReadyOut,
        responses={503: {"model": ReadyOut}},
        tags=["meta"],
        operation_id="ready",
    )
    def ready() -> JSONResponse:
        """Readiness: the database and the blob store answer (no token: for load balancers)."""
        results: dict[str, str] = {}
        for name, check in checks.items():
            try:
                check()
            except Exception as e:  # noqa: BLE001 - any failure means not ready
                log.warning("readiness check %s failed: %s: %s", name, type(e).__name__, e)
                results[name] = "unavailable"
            else:
                results[name] = "ok"
        ok = all(v == "ok" for v in results.values())
        body = {"status": "ready" if ok else "unavailable", "checks": results}
        return JSONResponse(body, status_code=200 if ok else 503)

    @app.get("/v1/whoami", response_model=WhoAmIOut, tags=["meta"], operation_id="whoami")
    def whoami(principal: Annotated[Principal, Depends(current_principal)]) -> dict[str, Any]:
        """The principal the token stands for."""
        return {
            "id": principal.id,
            "kind": principal.kind.value,
            "display_name": principal.display_name,
            "groups": list(principal.groups),
        }

    @app.get("/v1/openapi.json", tags=["meta"], operation_id="openapi", include_in_schema=False)
    def openapi(_: Annotated[Principal, Depends(current_principal)]) -> dict[str, Any]:
        return app.openapi()

    add_attachment_routes(app, current_principal)  # before the catch-all name routes
    routes.add_vault_routes(app, current_principal)
    serve_hot_routes(app, hot)  # the routes under load, without FastAPI's per-request work
    _add_error_handlers(app)
    app.add_middleware(RecordBeforeAnswer, bus=bus)
    app.add_middleware(BodyLimit, limits=limits)
    app.add_middleware(RequestId)
    return app


async def _sweep_every_second(failures: FailedAuthLimiter) -> None:
    while True:
        await anyio.sleep(1.0)
        await anyio.to_thread.run_sync(failures.sweep)
        await anyio.to_thread.run_sync(failures.sync)


def request_id_of(request: Request) -> str:
    found = request.scope.get("state", {}).get("request_id")
    return str(found) if found else uuid.uuid4().hex


def error_response(status: int, code: str, detail: Any, **headers: str) -> JSONResponse:
    return JSONResponse({"error": code, "detail": detail}, status_code=status, headers=headers)


def _add_error_handlers(app: FastAPI) -> None:
    async def donjon_error(request: Request, exc: Exception) -> JSONResponse:
        for cls, status, code in _STATUS:
            if isinstance(exc, cls):
                headers = {"WWW-Authenticate": "Bearer"} if status == 401 else {}
                if isinstance(exc, TooManyFailures):
                    headers = {"Retry-After": str(max(1, round(exc.retry_after)))}
                return error_response(status, code, str(exc), **headers)
        log.error("request failed: %s: %s", type(exc).__name__, exc)
        return error_response(503, "unavailable", "the server could not complete the request")

    async def validation_error(request: Request, exc: Exception) -> JSONResponse:
        errors = exc.errors() if isinstance(exc, RequestValidationError) else []
        detail = [
            {"loc": list(e.get("loc", ())), "msg": e.get("msg", ""), "type": e.get("type", "")}
            for e in errors
        ]
        return error_response(422, "invalid_request", detail)

    async def http_error(request: Request, exc: Exception) -> JSONResponse:
        status = exc.status_code if isinstance(exc, StarletteHTTPException) else 400
        code = {404: "not_found", 405: "method_not_allowed"}.get(status, "http_error")
        detail = exc.detail if isinstance(exc, StarletteHTTPException) else str(exc)
        headers = {}
        if status == 405:
            headers["Allow"] = ", ".join(allowed_methods(request))
        return error_response(status, code, detail, **headers)

    app.add_exception_handler(DonjonError, donjon_error)
    app.add_exception_handler(RequestValidationError, validation_error)
    app.add_exception_handler(StarletteHTTPException, http_error)


def allowed_methods(request: Request) -> list[str]:
    """Every method some route takes on this path (one path can have several routes)."""
    methods: set[str] = set()
    for route in request.app.router.routes:
        match, _ = route.matches(request.scope)
        if match is not Match.NONE:
            methods.update(getattr(route, "methods", None) or ())
    return sorted(methods)


class RequestId:
    """Gives each request an id (``X-Request-Id`` on the response, and in its events)."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        request_id = uuid.uuid4().hex
        scope.setdefault("state", {})["request_id"] = request_id

        async def send_with_id(message: Message) -> None:
            if message["type"] == "http.response.start":
                headers = list(message.get("headers", []))
                headers.append((b"x-request-id", request_id.encode("ascii")))
                message = {**message, "headers": headers}
            await send(message)

        await self.app(scope, receive, send_with_id)


class BodyLimit:
    """Caps request bodies: uploads at ``max_upload_bytes``, anything else at ``max_json_bytes``.

    A declared Content-Length over the cap is refused before a byte is read;
    a chunked body is counted as it arrives.
    """

    def __init__(self, app: ASGIApp, limits: ServerLimits) -> None:
        self.app = app
        self.limits = limits

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        upload = scope["method"] == "POST" and scope["path"].endswith("/versions")
        limit = self.limits.max_upload_bytes if upload else self.limits.max_json_bytes
        if scope["method"] == "POST" and scope["path"].endswith("/attestations"):
            limit = self.limits.max_attestation_bytes
        length = dict(scope["headers"]).get(b"content-length")
        if length is not None and (not length.isdigit() or int(length) > limit):
            detail = f"request body is larger than the limit of {limit} bytes"
            if not length.isdigit():
                detail = "malformed Content-Length"
            response = error_response(413 if length.isdigit() else 400, "too_large", detail)
            await response(scope, receive, send)
            return
        seen = 0

        async def counting_receive() -> Message:
            nonlocal seen
            message = await receive()
            if message["type"] == "http.request":
                seen += len(message.get("body", b""))
                if seen > limit:
                    raise TooLarge(f"request body is larger than the limit of {limit} bytes")
            return message

        await self.app(scope, counting_receive, send)
