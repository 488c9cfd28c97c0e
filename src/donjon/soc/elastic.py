"""Elasticsearch / OpenSearch ``_bulk`` sink: ECS documents, ``_id`` = event uid.

Each event is a ``create`` action, so a re-delivered event is a 409 conflict,
which counts as delivered: duplicates are idempotent by uid.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import Any

from donjon.core.events import SecurityEvent
from donjon.errors import ExportError
from donjon.soc.ecs import to_ecs
from donjon.soc.http import HttpPoster
from donjon.soc.outbox import SinkUnavailable


def bulk_body(events: Sequence[SecurityEvent], index: str) -> bytes:
    lines: list[str] = []
    for event in events:
        lines.append(json.dumps({"create": {"_index": index, "_id": event.uid}}))
        lines.append(json.dumps(to_ecs(event), separators=(",", ":")))
    return ("\n".join(lines) + "\n").encode("utf-8")


class ElasticSink:
    def __init__(
        self,
        url: str,
        *,
        index: str = "donjon-events",
        name: str = "elastic",
        api_key: str | None = None,
        username: str | None = None,
        password: str | None = None,
        verify: bool | str = True,
        timeout: float = 10.0,
    ) -> None:
        self.name = name
        self.index = index
        headers = {"Content-Type": "application/x-ndjson"}
        if api_key:
            headers["Authorization"] = f"ApiKey {api_key}"
        elif username:
            import base64

            basic = base64.b64encode(f"{username}:{password or ''}".encode()).decode()
            headers["Authorization"] = f"Basic {basic}"
        self._http = HttpPoster(url.rstrip("/") + "/_bulk", headers, timeout=timeout, verify=verify)

    def emit(self, event: SecurityEvent) -> None:
        self.emit_batch([event])

    def emit_batch(self, events: Sequence[SecurityEvent]) -> None:
        response = self._http.post(bulk_body(events, self.index))
        try:
            result: dict[str, Any] = response.json()
        except ValueError as e:
            raise SinkUnavailable(f"_bulk answered something that is not JSON: {e}") from e
        if not result.get("errors"):
            return
        retry: list[dict[str, Any]] = []
        reject: list[dict[str, Any]] = []
        for item in result.get("items", []):
            outcome = next(iter(item.values()))
            status = int(outcome.get("status", 500))
            if status < 300 or status == 409:  # 409: already indexed under this uid
                continue
            (retry if status == 429 or status >= 500 else reject).append(outcome)
        if reject:
            raise ExportError(f"_bulk rejected {len(reject)} event(s): {reject[0].get('error')}")
        if retry:
            raise SinkUnavailable(f"_bulk asked to retry {len(retry)} event(s)")

    def close(self) -> None:
        self._http.close()
