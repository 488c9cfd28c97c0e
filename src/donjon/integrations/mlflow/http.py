"""The webhook receiver's HTTP face (Starlette).

``POST /webhook``   an MLflow delivery: verified, queued (202), or refused (401 / 400 / 503)
``GET /evidence/ID`` the verdict document a ``donjon.evidence`` tag links to
``GET /health``     liveness and the queue's length
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from starlette.applications import Starlette
from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from donjon.core.bus import EventBus
from donjon.core.events import EventKind, Outcome, SecurityEvent
from donjon.core.severity import Severity
from donjon.errors import InputError
from donjon.integrations.mlflow.verdict import SOURCE, activity
from donjon.integrations.mlflow.webhook import Delivery, DeliveryVerifier, WebhookRejected
from donjon.integrations.mlflow.worker import GateWorker

log = logging.getLogger(__name__)


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


def _report_unhandled(bus: EventBus, left: list[Delivery], drain_seconds: float | None) -> None:
    """Say which accepted deliveries a stop left unhandled: on stderr (the log) and as one
    event each, stored in the ledger and the outbox, so that those versions get reviewed."""
    listed = ", ".join(
        f"{d.event} {d.data.get('name')} v{d.data.get('version')} ({d.delivery_id})" for d in left
    )
    log.warning(
        "stopped after the %s s drain deadline with %d accepted MLflow deliveries not handled "
        "(MLflow did not answer in time; nothing re-sends them): %s. Review each version with "
        "`donjon mlflow review NAME VERSION`",
        drain_seconds, len(left), listed,
    )  # fmt: skip
    message = "{} not handled before the service stopped: review the version by hand"
    bus.publish_all([
        activity("delivery_unhandled", message.format(d.event), ok=False,
                 delivery=d.delivery_id, data=dict(d.data))
        for d in left
    ])  # fmt: skip


def webhook_app(
    verifier: DeliveryVerifier, worker: GateWorker, drain_seconds: float | None = None
) -> Starlette:
    """The ASGI application; the worker runs for as long as the application is served and,
    when it stops, works through its queue for at most ``drain_seconds`` (None: all)."""
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
            left = await run_in_threadpool(worker.stop, drain_seconds)
            if left:
                await run_in_threadpool(_report_unhandled, gate.bus, left, drain_seconds)

    return Starlette(
        routes=[
            Route("/webhook", receive, methods=["POST"]),
            Route("/evidence/{uid}", evidence, methods=["GET"]),
            Route("/health", health, methods=["GET"]),
        ],
        lifespan=lifespan,
    )
