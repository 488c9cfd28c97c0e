"""The webhook receiver's HTTP face (Starlette).

``POST /webhook``   an MLflow delivery: verified, queued (202), or refused (401 / 400 / 503)
``GET /evidence/ID`` the verdict document a ``donjon.evidence`` tag links to
``GET /health``     liveness and the queue's length
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from starlette.applications import Starlette
from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from donjon.core.events import EventKind, Outcome, SecurityEvent
from donjon.core.severity import Severity
from donjon.errors import InputError
from donjon.integrations.mlflow.verdict import SOURCE
from donjon.integrations.mlflow.webhook import DeliveryVerifier, WebhookRejected
from donjon.integrations.mlflow.worker import GateWorker


def _rejected(reason: str, client: str | None) -> SecurityEvent:
    return SecurityEvent(
        kind=EventKind.AUTHENTICATION,
        source=SOURCE,
        action="mlflow.webhook",
        message=f"MLflow webhook delivery refused: {reason}",
        severity=Severity.LOW,
        outcome=Outcome.FAILURE,
        attributes={"reason": reason, "client": client},
    )


def webhook_app(verifier: DeliveryVerifier, worker: GateWorker) -> Starlette:
    """The ASGI application; the worker runs for as long as the application is served."""
    gate = worker.gate

    async def receive(request: Request) -> Response:
        body = await request.body()
        client = request.client.host if request.client else None
        try:
            delivery = verifier.verify(request.headers, body)
        except WebhookRejected as e:
            await run_in_threadpool(gate.bus.publish, _rejected(str(e), client))
            return JSONResponse({"error": str(e)}, status_code=401)
        except InputError as e:
            return JSONResponse({"error": str(e)}, status_code=400)
        if not worker.submit(delivery):
            verifier.forget(delivery.delivery_id)  # MLflow retries the same delivery
            return JSONResponse({"error": "busy: try again"}, status_code=503)
        return JSONResponse({"accepted": delivery.delivery_id, "event": delivery.event}, 202)

    async def evidence(request: Request) -> Response:
        document = gate.evidence.read(request.path_params["uid"])
        if document is None:
            return JSONResponse({"error": "no such evidence"}, status_code=404)
        return Response(document, media_type="application/json")

    async def health(request: Request) -> Response:
        return JSONResponse({"status": "ok", "pending": worker.pending})

    @asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        await run_in_threadpool(gate.warm_up)  # before the first delivery is accepted
        worker.start()
        try:
            yield
        finally:
            await run_in_threadpool(worker.stop)

    return Starlette(
        routes=[
            Route("/webhook", receive, methods=["POST"]),
            Route("/evidence/{uid}", evidence, methods=["GET"]),
            Route("/health", health, methods=["GET"]),
        ],
        lifespan=lifespan,
    )
