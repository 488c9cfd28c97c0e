"""The in-process forms: ``GuardedModel(predict_fn, ...)`` and an ASGI middleware.

Both run the same :class:`Pipeline` as the reverse proxy.

``GuardedModel`` wraps a Python prediction function (rows in, scores or labels
out) for models served in-process::

    guarded = GuardedModel(model.predict_proba, pipeline, path="/predict")
    scores = guarded.predict([[0.0, 3.0, ...]], headers={"authorization": "Bearer djk_..."})

``FirewallMiddleware`` wraps any ASGI app: requests to a guarded model's routes
go through the pipeline, the app's answer is hardened; paths listed in
``passthrough`` reach the app unguarded, every other path is refused (404).
"""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import numpy as np
import numpy.typing as npt

from donjon.errors import GatewayError
from donjon.gateway.pipeline import GatewayRequest, Pipeline
from donjon.gateway.replies import Reply, encode, request_id_of

PredictFn = Callable[[npt.NDArray[np.float64]], Any]
Scope = dict[str, Any]
Message = dict[str, Any]
Receive = Callable[[], Any]
Send = Callable[[Message], Any]
ASGIApp = Callable[[Scope, Receive, Send], Any]
_REWRITTEN = frozenset(
    {b"content-length", b"content-type", b"content-encoding", b"transfer-encoding"}
)


class Refused(GatewayError):
    """The firewall refused a call to a :class:`GuardedModel`."""

    def __init__(self, reply: Reply) -> None:
        super().__init__(f"{reply.status} {reply.code}: {reply.message}")
        self.reply = reply

    @property
    def status(self) -> int:
        return self.reply.status


class GuardedModel:
    """A prediction function behind the firewall pipeline."""

    def __init__(self, predict_fn: PredictFn, pipeline: Pipeline, *, path: str) -> None:
        if pipeline.route(path) is None:
            raise GatewayError(f"no model of the pipeline is served at {path!r}")
        self._predict = predict_fn
        self.pipeline = pipeline
        self.path = path

    def predict(
        self, inputs: Sequence[Sequence[float]] | npt.NDArray[Any], *, headers: Mapping[str, str]
    ) -> Any:
        """Scores (or labels) for ``inputs``, hardened; :class:`Refused` when denied."""
        rows = np.asarray(inputs, dtype=np.float64).tolist()
        status, doc = self.handle(encode({"inputs": rows}), headers)
        if status != 200:
            raise Refused(
                Reply(
                    status,
                    doc["error"]["code"],
                    doc["error"]["message"],
                    doc["error"]["request_id"],
                    rule=doc["error"].get("rule"),
                )
            )
        return doc["outputs"]

    def handle(self, body: bytes, headers: Mapping[str, str]) -> tuple[int, dict[str, Any]]:
        """One JSON request (generic ``inputs`` body) to status and JSON answer."""
        lowered = {k.lower(): v for k, v in headers.items()}
        admitted = self.pipeline.admit(GatewayRequest("POST", self.path, lowered, body))
        if isinstance(admitted, Reply):
            return admitted.status, admitted.body()
        try:
            rows = admitted.inputs  # exactly the rows the pipeline checked
            outputs = np.asarray(self._predict(rows), dtype=np.float64)
            answer = encode({"outputs": outputs.tolist()})
            code = 200
        except (ValueError, TypeError, KeyError) as e:  # the model itself failed
            answer, code = encode({"error": {"code": "model_error", "message": str(e)}}), 500
        status, content = self.pipeline.complete(admitted, code, answer)
        doc: dict[str, Any] = json.loads(content)
        return status, doc


class FirewallMiddleware:
    """ASGI middleware running the pipeline in front of an in-process app."""

    def __init__(
        self, app: ASGIApp, pipeline: Pipeline, *, passthrough: Sequence[str] = ()
    ) -> None:
        self.app = app
        self.pipeline = pipeline
        self.passthrough = frozenset(passthrough)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        path: str = scope["path"]
        headers = {k.decode("latin-1").lower(): v.decode("latin-1") for k, v in scope["headers"]}
        if path in self.passthrough:
            await self.app(scope, receive, send)
            return
        guard = self.pipeline.route(path)
        if guard is None:
            await _send_reply(
                send,
                Reply(404, "not_found", "no model is served at this path", request_id_of(headers)),
            )
            return
        body = await _read(receive, guard.contract.max_body_bytes)
        if body is None:
            reply = Reply(413, "invalid_request", "body too large", request_id_of(headers))
            await _send_reply(send, reply)
            return
        client = scope.get("client")
        where = client[0] if client else None
        request = GatewayRequest(scope["method"], path, headers, body, where)
        admitted = await self.pipeline.admit_async(request)
        if isinstance(admitted, Reply):
            await _send_reply(send, admitted)
            return
        # the app gets the canonical body of the rows checked, not the caller's bytes
        forward = admitted.body
        headers_out = [(k, v) for k, v in scope["headers"] if k.lower() not in _REWRITTEN] + [
            (b"content-type", b"application/json"),
            (b"content-length", str(len(forward)).encode()),
        ]
        status, content = await _call(self.app, {**scope, "headers": headers_out}, forward)
        status, content = await self.pipeline.complete_async(admitted, status, content)
        await _send(send, status, content, admitted.request_id)


async def _read(receive: Receive, limit: int) -> bytes | None:
    chunks: list[bytes] = []
    size = 0
    while True:
        message = await receive()
        if message["type"] == "http.disconnect":
            return None
        chunk = message.get("body", b"")
        size += len(chunk)
        if size > limit:
            return None
        chunks.append(chunk)
        if not message.get("more_body"):
            return b"".join(chunks)


async def _call(app: ASGIApp, scope: Scope, body: bytes) -> tuple[int, bytes]:
    sent = False
    status = 500
    parts: list[bytes] = []

    async def receive() -> Message:
        nonlocal sent
        if sent:
            return {"type": "http.disconnect"}
        sent = True
        return {"type": "http.request", "body": body, "more_body": False}

    async def send(message: Message) -> None:
        nonlocal status
        if message["type"] == "http.response.start":
            status = int(message["status"])
        elif message["type"] == "http.response.body":
            parts.append(message.get("body", b""))

    await app(scope, receive, send)
    return status, b"".join(parts)


async def _send_reply(send: Send, reply: Reply) -> None:
    await _send(send, reply.status, encode(reply.body()), reply.request_id, reply.headers)


async def _send(
    send: Send, status: int, content: bytes, request_id: str, extra: Mapping[str, str] = {}
) -> None:
    headers = [
        (b"content-type", b"application/json"),
        (b"content-length", str(len(content)).encode()),
        (b"x-request-id", request_id.encode()),
        *[(k.encode(), v.encode()) for k, v in extra.items()],
    ]
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": content})
