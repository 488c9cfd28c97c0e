"""Splunk HTTP Event Collector sink (``/services/collector/event``)."""

from __future__ import annotations

import json
import socket
from collections.abc import Sequence
from typing import Any, Literal

from donjon.core.events import SecurityEvent
from donjon.errors import ExportError
from donjon.soc.ecs import to_ecs
from donjon.soc.http import HttpPoster
from donjon.soc.ocsf import to_ocsf

Format = Literal["ocsf", "ecs"]


def hec_envelope(
    event: SecurityEvent,
    *,
    fmt: Format = "ocsf",
    host: str,
    index: str | None = None,
    sourcetype: str = "donjon:ocsf",
) -> dict[str, Any]:
    """One HEC event object: ``time`` in epoch seconds (ms precision) and the event."""
    body = to_ocsf(event) if fmt == "ocsf" else to_ecs(event)
    envelope: dict[str, Any] = {
        "time": round(event.time.timestamp(), 3),
        "host": host,
        "source": f"donjon:{event.source}",
        "sourcetype": sourcetype,
        "event": body,
        "fields": {"donjon_uid": event.uid, "donjon_kind": event.kind.value},
    }
    if index:
        envelope["index"] = index
    return envelope


class HecSink:
    """Batches events as concatenated JSON objects, ``Authorization: Splunk <token>``."""

    def __init__(
        self,
        url: str,
        token: str,
        *,
        name: str = "hec",
        fmt: Format = "ocsf",
        index: str | None = None,
        sourcetype: str | None = None,
        verify: bool | str = True,
        timeout: float = 10.0,
    ) -> None:
        self.name = name
        self._fmt: Format = fmt
        self._index = index
        self._sourcetype = sourcetype or f"donjon:{fmt}"
        self._host = socket.gethostname()
        endpoint = url.rstrip("/")
        if not endpoint.endswith("/services/collector/event"):
            endpoint += "/services/collector/event"
        self._http = HttpPoster(
            endpoint,
            {"Authorization": f"Splunk {token}", "Content-Type": "application/json"},
            timeout=timeout,
            verify=verify,
        )

    def emit(self, event: SecurityEvent) -> None:
        self.emit_batch([event])

    def emit_batch(self, events: Sequence[SecurityEvent]) -> None:
        body = "".join(
            json.dumps(
                hec_envelope(
                    e, fmt=self._fmt, host=self._host, index=self._index,
                    sourcetype=self._sourcetype,
                ),
                separators=(",", ":"),
            )
            for e in events
        )  # fmt: skip
        response = self._http.post(body.encode("utf-8"))
        try:
            code = response.json().get("code", 0)
        except ValueError:
            code = 0
        if code != 0:
            raise ExportError(f"HEC refused the batch: {response.text[:300]}")

    def close(self) -> None:
        self._http.close()
